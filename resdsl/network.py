"""The public object: a checked network (IR + shapes + counts) and its summaries.

`resdsl.load(path, **params)` / `resdsl.loads(text, **params)` return a
`Network`.  Backends and analyses hang off it (`to_torch()`, `paths()`,
`render()`) but are imported lazily, so loading a file never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .contracts import check_contracts
from .diagnostics import ResdslError
from .elaborate import elaborate
from .ir import Graph, Node
from .limits import DEFAULT, Limits
from .loader import load_file, load_program


@dataclass
class Network:
    graph: Graph
    source: str  # file name the network came from
    limits: Limits = DEFAULT  # the resource limits it was loaded with (compile honours max_params)
    symbols: dict = field(default_factory=dict)  # (input, dim) -> sizes.Symbol for --input x=3,H,W
    size_vars: list = field(default_factory=list)  # sizes.SizeVar: named sizes and their ties (input x: [3, H, W])

    # ---------------------------------------------------------------- facts
    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def params(self) -> dict[str, object]:
        """The network parameters after defaults and overrides."""
        return dict(self.graph.params)

    @property
    def inputs(self) -> dict[str, tuple[int, ...]]:
        return {k: self.graph.nodes[i].shape for k, i in self.graph.inputs.items()}

    @property
    def outputs(self) -> dict[str, tuple[int, ...]]:
        return {k: self.graph.nodes[i].shape for k, i in self.graph.outputs.items()}

    @property
    def nodes(self) -> list[Node]:
        return self.graph.nodes

    @property
    def param_count(self) -> int:
        return self.graph.param_count

    @property
    def trainable_param_count(self) -> int:
        return self.graph.param_count  # every parameter resdsl creates is trainable

    @property
    def buffer_count(self) -> int:
        return self.graph.buffer_count

    def layers(self) -> list[dict]:
        return [{"name": n.name, "op": n.op, "shape": list(n.shape), "params": n.params, "buffers": n.buffers,
                 "source": f"{n.span.file}:{n.span.line}"} for n in self.graph.nodes]

    def to_json(self, convention: str = "torchvision") -> dict:
        cost = self.costs(convention)  # static MACs (resdsl/analysis/cost.py)
        layers = [{**row, "macs": c.macs, "receptive_field": c.rf_size and list(c.rf_size),
                   "rf_stride": c.rf_jump and list(c.rf_jump)} for row, c in zip(self.layers(), cost.layers)]
        return {
            "network": self.name,
            "source": self.source,
            "params_set": {k: _jsonable(v) for k, v in self.params.items()},
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": {k: list(v) for k, v in self.outputs.items()},
            "params": self.param_count,
            "trainable_params": self.trainable_param_count,
            "buffers": self.buffer_count,
            "macs": cost.total,
            "macs_convention": convention,
            "layers": layers,
            **(self._symbolic_json(layers) if self.symbols else {}),
        }

    def _symbolic_json(self, layers: list[dict]) -> dict:
        from .analysis.sizes import dim_json
        for row, shape in zip(layers, self.symbolic_shapes()):
            row["symbolic_shape"] = list(shape)
        return {"symbols": {f"{k}[{d}]": str(s) for (k, d), s in self.symbols.items()},
                "valid_sizes": [dim_json(d) for d in self.valid_sizes().dims]}

    def summary(self, depth: int | None = None) -> str:
        from .summary import summary_table
        return summary_table(self, depth)

    def expand(self) -> str:
        from .expand import expand
        return expand(self.graph)

    def to_networkx(self):
        return self.graph.to_networkx()

    # ---------------------------------------------------------------- backends and analyses (lazy imports)
    def to_torch(self, seed: int | None = None):
        """A `torch.nn.Module` built from generated straight-line code."""
        from .backends.pytorch import build
        return build(self, seed=seed)

    def torch_source(self) -> str:
        """Standalone PyTorch source (imports only torch) for this network."""
        from .backends.pytorch import generate
        return generate(self)

    def costs(self, convention: str = "torchvision"):
        """MACs per layer and in total, memory and receptive fields (static)."""
        from .analysis.cost import analyze
        return analyze(self.graph, convention)

    def paths(self, length: str = "blocks"):
        """Exact input->output path counts and the path-length histogram."""
        from .analysis.paths import count_paths
        return count_paths(self.graph, length)

    def valid_sizes(self):
        """Exact sets of input sizes at which the network runs, and runs without rounding (analysis/sizes.py).

        Covers the symbolic dims (`input_shapes={"x": (3, "H", "W")}`), or every spatial dim when there are none.
        """
        from .analysis.sizes import valid_sizes
        if getattr(self, "_sizes", None) is None:
            self._sizes = valid_sizes(self, self.symbols or None, self.size_vars or None)
        return self._sizes

    def symbolic_shapes(self) -> list[tuple]:
        """Every node's shape with the symbolic dims as formulas (strings) and the rest as ints."""
        from .analysis.sizes import combined_formulas
        return combined_formulas(self.graph, self.valid_sizes())

    def render(self, path: str | None = None, **options):
        """A Graphviz diagram (see `resdsl render --help` for the options)."""
        from .render import render
        return render(self, path, **options)

    def _repr_svg_(self) -> str | None:
        from .notebook import svg_or_none
        return svg_or_none(self)  # None (nothing shown) rather than an error cell when Graphviz is missing

    def _repr_html_(self) -> str:
        """In a notebook: the summary table (two levels) next to the block diagram."""
        from .notebook import network_html
        return network_html(self)

    def show(self, level: str = "block", depth: int | None = 2, convention: str = "torchvision"):
        """Display the table and the diagram at `level` (network, block, layer, unraveled) in a notebook;
        outside one, return the view (its repr is the text summary)."""
        from .notebook import View
        from .render import LEVELS
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        view = View(self, level, depth, convention)
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return view
        if get_ipython() is None:
            return view
        display(view)
        return None

    def __repr__(self) -> str:
        ins = ", ".join(f"{k}: {list(v)}" for k, v in self.inputs.items())
        outs = ", ".join(f"{k}: {list(v)}" for k, v in self.outputs.items())
        return f"<Network {self.name}({ins}) -> ({outs}), {self.param_count:,} params, {len(self.nodes)} ops>"


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def load(path: str | Path, network: str | None = None, limits: Limits = DEFAULT,
         input_shapes: dict[str, tuple[int, ...]] | None = None, **params) -> Network:
    """Load, elaborate and check a .res file. Raises `ResdslError`.

    `params` override network parameters; `input_shapes` ({"x": (3, 450, 600)}) replace declared input shapes.
    """
    return load_with(path, params, network, limits, input_shapes)


def load_with(path: str | Path, params: dict | None = None, network: str | None = None, limits: Limits = DEFAULT,
              input_shapes: dict[str, tuple[int, ...]] | None = None) -> Network:
    """Like `load`, with the parameter overrides as a dict: any name, `network` or `limits` too, is a
    network parameter (the command line's --set goes through here, so `--set network=x` is the file's business)."""
    return _build(load_file(path, limits), network, dict(params or {}), limits, input_shapes, str(path))


def loads(text: str, network: str | None = None, limits: Limits = DEFAULT, name: str = "<string>",
          input_shapes: dict[str, tuple[int, ...]] | None = None, **params) -> Network:
    """Like `load`, from a string."""
    return _build(load_program(text, name, limits), network, params, limits, input_shapes, name)


def _build(program, network, params, limits, input_shapes, source: str) -> Network:
    """Elaborate; symbolic input dims (strings such as "H" or "H%32", or names in the file's
    `input x: [3, H, W]`) are built at a representative size and analysed as symbols."""
    from .analysis.sizes import SIZE_CODES, concrete_for_symbols, explain_invalid_size, from_declared

    elab = _Elab(program, network, params, limits)
    try:
        if not any(isinstance(d, str) or not isinstance(d, int) for s in (input_shapes or {}).values() for d in s):
            graph, symbols = _named(elab, input_shapes), {}
        else:
            graph, symbols = concrete_for_symbols(elab, input_shapes)
        check_contracts(graph)  # asserts on params / buffers / macs, once the whole network is built
        size_vars, named = from_declared(graph)
        net = Network(graph, source, limits, {**named, **symbols}, size_vars)
        net._rebuild = elab  # the size analysis builds other sizes when the structure reads a named size
        return net
    except ResdslError as e:
        sizes = getattr(e, "partial_sizes", None)
        if sizes is not None and e.first.code in SIZE_CODES and sizes.symbolic_roots():
            raise _at_example(e, sizes) from None  # _named already tried larger examples
        raise explain_invalid_size(e, elab, input_shapes) from None


class _Elab:
    """Elaborate this program's network at other input shapes (a class, not a closure: a Network
    keeps one for the size analysis, and a Network must pickle)."""

    def __init__(self, program, network, params, limits):
        self.program, self.network, self.params, self.limits = program, network, params, limits

    def __call__(self, shapes, scale: int = 1):
        return elaborate(self.program, self.network, self.params, self.limits, shapes, scale)


def _at_example(e: ResdslError, sizes) -> ResdslError:
    """Say that the sizes in the message are the example values of named sizes, and how to pick others."""
    from dataclasses import replace

    from .sizevars import EXAMPLE

    at = ", ".join(f"{n} = {sizes.values[n]}" for n in sizes.symbolic_roots())
    first = e.first
    note = (f"the named sizes were built at the example {at} (and at {2 * EXAMPLE}, {4 * EXAMPLE} and "
            f"{8 * EXAMPLE}): give sizes that fit with --input (e.g. --input {sizes.roots[0][1]}=...), "
            f"or tie the sizes with `where` (e.g. where H2 == 2 * H)")
    return ResdslError((replace(first, hint=f"{first.hint}; {note}" if first.hint else note),) + e.diagnostics[1:])


def _named(elab, input_shapes):
    """Elaborate; when named sizes at the example size (224) do not fit, try 448, 896, ... (bounded)."""
    from .analysis.sizes import SIZE_CODES, TRIAL_SCALES

    try:
        return elab(input_shapes)
    except ResdslError as e:
        if getattr(e, "partial_sizes", None) is None or e.first.code not in SIZE_CODES:
            raise
        first = e
    for scale in TRIAL_SCALES:
        try:
            return elab(input_shapes, scale)
        except ResdslError:
            continue
    raise first
