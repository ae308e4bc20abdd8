"""The public object: a checked network (IR + shapes + counts) and its summaries.

`resdsl.load(path, **params)` / `resdsl.loads(text, **params)` return a
`Network`.  Backends and analyses hang off it (`to_torch()`, `paths()`,
`render()`) but are imported lazily, so loading a file never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .contracts import check_contracts
from .elaborate import elaborate
from .ir import Graph, Node
from .limits import DEFAULT, Limits
from .loader import load_file, load_program


@dataclass
class Network:
    graph: Graph
    source: str  # file name the network came from
    limits: Limits = DEFAULT  # the resource limits it was loaded with (compile honours max_params)

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
        }

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

    def render(self, path: str | None = None, **options):
        """A Graphviz diagram (see `resdsl render --help` for the options)."""
        from .render import render
        return render(self, path, **options)

    def _repr_svg_(self) -> str:
        from .render import to_svg
        return to_svg(self)

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
    program = load_file(path, limits)
    graph = elaborate(program, network, params, limits, input_shapes)
    check_contracts(graph)  # asserts on params / buffers / macs
    return Network(graph, str(path), limits)


def loads(text: str, network: str | None = None, limits: Limits = DEFAULT, name: str = "<string>",
          input_shapes: dict[str, tuple[int, ...]] | None = None, **params) -> Network:
    """Like `load`, from a string."""
    program = load_program(text, name, limits)
    graph = elaborate(program, network, params, limits, input_shapes)
    check_contracts(graph)
    return Network(graph, name, limits)
