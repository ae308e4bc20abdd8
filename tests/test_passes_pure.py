"""Every pass reads the IR and leaves it as it was: lint() holds before and after each,
and the graph's full content (nodes, regions, scopes, structure) is unchanged."""
import glob
from pathlib import Path

import pytest

import resdsl
from resdsl.loader import load_file

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = [(p, n) for p in sorted(glob.glob(str(ROOT / "examples" / "*.res"))) for n in load_file(p).networks]


def _snapshot(g):
    return (
        [(n.id, n.op, n.inputs, dict(n.attrs), n.shape, n.params, n.buffers, n.name, n.region) for n in g.nodes],
        [(r.id, r.kind, r.input, r.merge, r.branches, r.shortcut, dict(r.attrs), r.name) for r in g.regions],
        [(s.id, s.parent, s.label, s.name) for s in g.scopes],
        list(g.structure), dict(g.inputs), dict(g.outputs),
    )


PASSES = {
    "costs": lambda net: net.costs(),
    "costs-fvcore": lambda net: net.costs("fvcore"),
    "paths-blocks": lambda net: net.paths(),
    "paths-layers": lambda net: net.paths("layers"),
    "expand": lambda net: net.expand(),
    "summary": lambda net: net.summary(),
    "json": lambda net: net.to_json(),
    "render-block": lambda net: net.render(level="block"),
    "render-layer": lambda net: net.render(level="layer"),
    "torch-source": lambda net: net.torch_source(),
}


@pytest.mark.parametrize("path,network", NETWORKS, ids=[f"{Path(p).name}:{n}" for p, n in NETWORKS])
def test_passes_keep_the_ir_valid_and_unchanged(path, network):
    net = resdsl.load(path, network=network)
    net.graph.lint()
    before = _snapshot(net.graph)
    for name, run in PASSES.items():
        run(net)
        net.graph.lint()
        assert _snapshot(net.graph) == before, f"pass {name} changed the IR"
