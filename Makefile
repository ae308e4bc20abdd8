# The two commands of the README:  `make demo`  and  `make test`.
# Both set up .venv (and Graphviz's dot) first when they are missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup demo test fuzz bench clean

$(STAMP): pyproject.toml
	@echo "setup: first run only -- Graphviz, a virtual environment in $(VENV), resdsl and its dependencies"
	@command -v dot >/dev/null 2>&1 || { echo "setup: installing Graphviz (dot) with the system package manager"; \
	  (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) 2>/dev/null || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq graphviz >/dev/null) 2>/dev/null || \
	  (brew install graphviz) 2>/dev/null || \
	  echo "warning: could not install Graphviz; .dot output still works, .svg/.png need dot"; }
	@echo "setup: creating $(VENV)"
	$(PY) -m venv $(VENV)
	@echo "setup: pip install -e '.[test,lsp]' (torch, torchvision, lark, networkx, hypothesis, ...; a few minutes" \
	  "the first time -- each package is listed as it is collected)"
	$(BIN)/pip install --disable-pip-version-check --progress-bar off -e '.[test,lsp]' 2>&1 \
	  | grep --line-buffered -E "^(Collecting|Successfully|ERROR|error)" || true
	@echo "setup: checking the installation"
	$(BIN)/python -c "import resdsl, torch, torchvision, lark, networkx"
	touch $(STAMP)
	@echo "setup: done"

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/resdsl check examples/resnet.res --set depth=50
	$(BIN)/resdsl summary examples/resnet.res --set depth=50 --depth 2
	mkdir -p out
	$(BIN)/resdsl render examples/resnet.res --set depth=18 -o out/resnet18.svg

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# The long fuzz run: FUZZ_N inputs from every fuzzer of tests/fuzzgen.py, each measured against its budget,
# fresh seed each run (printed; FUZZ_ARGS="--seed S" repeats one); prints a table of outcomes per fuzzer.
FUZZ_N ?= 2000
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py $(FUZZ_N) $(FUZZ_ARGS)

bench: $(STAMP)
	for f in bench/bench_*.py; do $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) out build dist *.egg-info
