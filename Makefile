# The two commands of the README:  `make demo`  and  `make test`.
# Both set up .venv (and Graphviz's dot) first when they are missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup demo test fuzz bench clean

$(STAMP): pyproject.toml
	@command -v dot >/dev/null 2>&1 || { echo "installing Graphviz (dot)"; \
	  (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) 2>/dev/null || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq graphviz >/dev/null) 2>/dev/null || \
	  (brew install graphviz) 2>/dev/null || \
	  echo "warning: could not install Graphviz; .dot output still works, .svg/.png need dot"; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import resdsl, torch, torchvision, lark, networkx" 
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/resdsl check examples/resnet.res --set depth=50
	$(BIN)/resdsl summary examples/resnet.res --set depth=50 --depth 2
	@if [ -f resdsl/commands/render.py ]; then mkdir -p out && $(BIN)/resdsl render examples/resnet.res --set depth=18 -o out/resnet18.svg && echo "diagram: out/resnet18.svg"; fi

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

fuzz: $(STAMP)
	RESDSL_FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q tests -k fuzz

bench: $(STAMP)
	for f in bench/bench_*.py; do $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) out build dist *.egg-info
