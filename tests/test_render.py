"""Diagrams: the structure of the drawn graph against torchvision / closed forms, determinism,
every example at every level and format, and the message when Graphviz's dot is missing.

The dot text is read back by Graphviz itself (`dot -Tjson0`), not by our own parser, so node
kinds, clusters and edge labels are what a reader of the picture sees.
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import graphviz
import pytest

import resdsl
from resdsl import ops
from resdsl.diagnostics import ResdslError
from resdsl.render import GraphvizNotFound, diagram, render, to_dot, to_svg
from resdsl.render.labels import RULES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(glob.glob(str(ROOT / "examples" / "*.res")))
PY = sys.executable


def read_back(dot_text: str) -> dict:
    """Graphviz's own parse of our dot text: nodes by name, edges as (tail, head, attrs), clusters."""
    j = json.loads(graphviz.Source(dot_text).pipe(format="json0"))
    objs = {o["_gvid"]: o for o in j["objects"]}
    nodes = {o["name"]: o for o in j["objects"] if not o["name"].startswith("cluster") and "nodes" not in o}
    clusters = {o["name"]: o for o in j["objects"] if o["name"].startswith("cluster")}
    edges = [(objs[e["tail"]]["name"], objs[e["head"]]["name"], e) for e in j.get("edges", [])]
    return {"nodes": nodes, "edges": edges, "clusters": clusters, "objs": objs}


def shape_text(shape) -> str:
    return "×".join(str(d) for d in shape)


def torch_shapes(model, x) -> dict[str, tuple]:
    """Output shape (no batch dim) of every named module, from torch's own forward pass."""
    import torch

    out: dict[str, tuple] = {}
    def hook(name):
        def record(module, inputs, output) -> None:  # returns None: the output is left alone
            out.setdefault(name, tuple(output.shape[1:]))
        return record

    hooks = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return out


@pytest.fixture(scope="module")
def r18():
    return resdsl.load(ROOT / "examples" / "resnet.res", depth=18)


@pytest.fixture(scope="module")
def tv18():
    import torch
    import torchvision

    torch.set_num_threads(1)
    return torchvision.models.resnet18()


# ---------------------------------------------------------------- structure vs torchvision


def test_resnet18_layer_level_matches_torchvision(r18, tv18):
    import torch
    from torchvision.models.resnet import BasicBlock

    g = read_back(to_dot(r18, level="layer"))
    blocks = [n for n, m in tv18.named_modules() if isinstance(m, BasicBlock)]
    with_down = [n for n in blocks if tv18.get_submodule(n).downsample is not None]
    adds = [n for n, o in g["nodes"].items() if o.get("shape") == "circle" and o["label"] == "+"]
    assert len(adds) == len(blocks) == 8
    # one cluster per stage, block and downsample branch (torchvision's module tree)
    stages = [n for n, _ in tv18.named_children() if n.startswith("layer")]
    assert len(g["clusters"]) == len(stages) + len(blocks) + len(with_down) == 15
    # identity shortcuts dashed, one per block without a downsample
    dashed = [e for e in g["edges"] if e[2].get("style") == "dashed"]
    assert len(dashed) == len(blocks) - len(with_down) == 5
    assert all(e[1] in adds for e in dashed)
    # every edge label is the output shape of its tail module, as torch computes it
    shapes = torch_shapes(tv18, torch.zeros(1, 3, 224, 224))
    checked = 0
    for tail, head, e in g["edges"]:
        name = g["nodes"][tail].get("tooltip")
        if name in shapes:
            assert e["label"].strip() == shape_text(shapes[name]), (tail, name)
            checked += 1
    assert checked >= 40  # convs, bns, downsamples, maxpool, avgpool, fc
    # paper-style op text (He et al. 2016, figure 3: "7x7 conv, 64, /2", "3x3 conv, 128, /2")
    labels = [o["label"] for o in g["nodes"].values()]
    assert any(lb.startswith("7×7 conv, 64, /2") for lb in labels)
    assert sum(lb.startswith("3×3 conv, 128, /2") for lb in labels) == 1


def test_resnet18_block_level_projection_edges(r18, tv18):
    from torchvision.models.resnet import BasicBlock

    g = read_back(to_dot(r18, level="block"))
    downs = [m.downsample for m in tv18.modules() if isinstance(m, BasicBlock) and m.downsample is not None]
    proj = [e for e in g["edges"] if "conv" in e[2].get("label", "")]
    assert len(proj) == len(downs) == 3
    want = sorted(f"1×1 conv, {d[0].out_channels}, /{d[0].stride[0]} + BN" for d in downs)
    assert sorted(e[2]["label"].strip() for e in proj) == want
    assert all(g["nodes"][e[1]]["label"] == "+" for e in proj)


def test_resnet50_block_level_collapses_repeats():
    import torchvision
    from torchvision.models.resnet import Bottleneck

    tv = torchvision.models.resnet50()
    net = resdsl.load(ROOT / "examples" / "resnet.res", depth=50)
    d = diagram(net, "block")
    g = read_back(to_dot(net, level="block"))
    adds = [n for n, o in g["nodes"].items() if o["label"] == "+"]
    stages = [getattr(tv, f"layer{i}") for i in range(1, 5)]
    # first block of each stage changes shape, the rest collapse into one "×N" unit
    assert len(adds) == 2 * len(stages)
    reps = [n.repeat for n in d.nodes if n.kind == "box"]
    assert sorted(reps) == sorted([1] * 4 + [len(s) - 1 for s in stages])
    assert sum(reps) == sum(isinstance(m, Bottleneck) for m in tv.modules()) == 16
    unit_labels = [c["label"] for name, c in g["clusters"].items() if name.startswith("cluster_u")]
    assert "layer3.1–5 · bottleneck ×5" in unit_labels


def test_network_level_edges_are_stage_outputs(r18, tv18):
    import torch

    g = read_back(to_dot(r18, level="network"))
    shapes = torch_shapes(tv18, torch.zeros(1, 3, 224, 224))
    titles = {n: re.sub(r"<[^>]+>", " ", o["label"]).split()[0] for n, o in g["nodes"].items() if n != "legend"}
    for tail, head, e in g["edges"]:
        if titles.get(tail, "").startswith("layer"):
            assert e["label"].strip() == shape_text(shapes[titles[tail]])
    assert [t for t in titles.values() if t.startswith("layer")] == ["layer1", "layer2", "layer3", "layer4"]
    assert not g["clusters"]


def test_unet_concats_and_long_skips():
    net = resdsl.load(ROOT / "examples" / "unet.res")
    g = read_back(to_dot(net, level="layer"))
    concats = [n for n, o in g["nodes"].items() if o.get("shape") == "circle" and o["label"] == "C"]
    assert len(concats) == 4  # Ronneberger et al. 2015, figure 1: four copy-and-crop arrows
    skips = [e for e in g["edges"] if e[2].get("constraint") == "false"]
    assert len(skips) == 4 and {e[1] for e in skips} == set(concats)
    # the skip carries the encoder feature map: 64×568×568 at the top level of the paper's figure
    assert sorted(e[2]["label"].strip() for e in skips)[-1] == "64×568×568"
    gb = read_back(to_dot(net, level="block"))
    assert len([e for e in gb["edges"] if e[2].get("constraint") == "false"]) == 4
    # drawn as a U: each skip's two ends are laid out side by side (same height)
    for level in ("network", "block", "layer"):
        g = read_back(to_dot(net, level=level))
        skips = [e for e in g["edges"] if e[2].get("constraint") == "false"]
        ys = [(float(g["nodes"][t]["pos"].split(",")[1]), float(g["nodes"][h]["pos"].split(",")[1]))
              for t, h, _ in skips]
        assert len(ys) == 4 and all(abs(a - b) < 1 for a, b in ys), (level, ys)


DENSE = """
block dense_layer(growth) {
    dense { batchnorm(); relu; conv(4 * growth, 1, bias=false); batchnorm(); relu
            conv(growth, 3, padding=1, bias=false) }
}
network tiny_densenet(layers = 3, growth = 8) {
    input x: [3, 32, 32]
    conv(16, 3, padding=1)
    for b in range(2) {
        block{b + 1}: group { for i in range(layers) { {i}: dense_layer(growth) } }
        if b == 0 { transition: group { batchnorm(); relu; conv(in_channels // 2, 1); avgpool(2) } }
    }
    global_avgpool
    linear(10)
    output y
}
"""


def test_dense_concat_count():
    net = resdsl.loads(DENSE, layers=3)
    g = read_back(to_dot(net, level="layer"))
    concats = [n for n, o in g["nodes"].items() if o["label"] == "C"]
    assert len(concats) == 2 * 3
    # each concatenation's carried input is a dashed side edge
    carried = [e for e in g["edges"] if e[1] in concats and e[2].get("style") == "dashed"]
    assert len(carried) == len(concats)
    # channels grow by `growth` per layer: 16 + 3*8 = 40 after block 1
    assert any(e[2].get("label", "").strip() == "40×32×32" for e in g["edges"])


def test_densenet121_concats_match_torchvision():
    import torchvision
    from torchvision.models.densenet import _DenseBlock, _DenseLayer

    tv = torchvision.models.densenet121()
    layers = sum(isinstance(m, _DenseLayer) for m in tv.modules())
    blocks = [len(m) for m in tv.modules() if isinstance(m, _DenseBlock)]
    net = resdsl.load(ROOT / "examples" / "densenet.res", depth=121)
    layer = diagram(net, "layer")
    assert sum(n.kind == "concat" for n in layer.nodes) == layers == 58
    # block level: one "×N" unit per dense block, N = its number of layers
    g = read_back(to_dot(net, level="block"))
    assert sum(o["label"] == "C" for o in g["nodes"].values()) == len(blocks) == 4
    reps = [n.repeat for n in diagram(net, "block").nodes if n.kind == "box" and n.repeat > 1]
    assert reps == blocks == [6, 12, 24, 16]


# ---------------------------------------------------------------- unraveled view


def test_unraveled_lanes_are_binomial():
    net = resdsl.load(ROOT / "examples" / "unravel4.res")
    d = diagram(net, "unraveled")
    g = read_back(to_dot(net, level="unraveled"))
    lanes = {c["label"]: c for name, c in g["clusters"].items() if name.startswith("cluster_len")}
    assert sorted(lanes) == [f"length {k}: {math.comb(4, k)} path{'s' if math.comb(4, k) != 1 else ''}"
                             for k in range(5)]
    branch_nodes = [n for n in d.nodes if n.kind == "lane"]
    assert len(branch_nodes) == sum(k * math.comb(4, k) for k in range(5)) == 32
    into_sum = [e for e in g["edges"] if e[1] == "sum"]
    assert len(into_sum) == 2 ** 4


def test_unraveled_big_networks_fan_out_by_length(r18):
    # more paths than lanes: one lane per length, standing for all paths of that length (render/unravel.py)
    d = diagram(r18, "unraveled")
    lanes = [n for n in d.nodes if n.cluster == "cluster_lengths"]
    assert [n.repeat for n in lanes] == [math.comb(8, k) for k in range(9)]
    r = subprocess.run([PY, "-m", "resdsl", "render", str(ROOT / "examples" / "resnet.res"), "--level", "unraveled"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "70 paths" in r.stdout, r.stderr


def test_unraveled_projection_shortcut_lane():
    net = resdsl.load(ROOT / "examples" / "cifar_resnet.res", depth=8, shortcut="B")  # 3 blocks, 2 projections
    d = diagram(net, "unraveled")
    assert sum(1 for n in d.nodes if n.title.endswith("shortcut")) == 2 * 2 ** 2  # half the 8 lanes each
    assert len([e for e in d.edges if e.dst == "sum"]) == 2 ** 3


# ---------------------------------------------------------------- options, API, determinism


def test_no_shapes_no_params(r18):
    g = read_back(to_dot(r18, level="layer", shapes=False, params=False))
    assert not [e for e in g["edges"] if e[2].get("label")]
    assert not any("params" in o.get("label", "") for o in g["nodes"].values())
    lr = to_dot(r18, rankdir="LR")
    assert "rankdir=LR" in lr


def test_render_returns_or_writes(r18, tmp_path):
    text = render(r18)
    assert text == to_dot(r18, level="block")
    render(r18, tmp_path / "a.dot", level="network")
    assert (tmp_path / "a.dot").read_text() == to_dot(r18, level="network")
    with pytest.raises(ValueError):
        render(r18, tmp_path / "a.jpg")
    svg = r18._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "layer4" in svg


def test_every_op_has_a_label_rule():
    assert set(ops.OPS) <= set(RULES)


def test_dot_is_deterministic_across_hash_seeds(tmp_path):
    args = [str(ROOT / "examples" / "unet.res")]
    outs = []
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = tmp_path / f"u{seed}.dot"
        r = subprocess.run([PY, "-m", "resdsl", "render", *args, "--level", "layer", "-o", str(out)],
                           env=env, capture_output=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    here = to_dot(resdsl.load(args[0]), level="layer").encode()
    assert outs[0] == outs[1] == here


# ---------------------------------------------------------------- every example, every level


def _example_networks() -> list[tuple[str, str]]:
    from resdsl.loader import load_file

    return [(p, name) for p in EXAMPLES for name in load_file(p).networks]


@pytest.mark.parametrize("path,name", _example_networks(),
                         ids=[f"{Path(p).stem}:{n}" for p, n in _example_networks()])
def test_every_example_every_level(path, name, tmp_path):
    net = resdsl.load(path, network=name)
    for level in ("network", "block", "layer", "unraveled"):
        text = to_dot(net, level=level)
        assert text.startswith("digraph") and text.endswith("}\n")
        d = diagram(net, level)
        ids = [n.id for n in d.nodes]
        assert len(ids) == len(set(ids))
        assert all(e.src in ids and e.dst in ids for e in d.edges)
    # pictures: layout at block level (the big layer-level ones are covered by the dot text above)
    for fmt in ("svg", "png", "pdf"):
        out = tmp_path / f"x.{fmt}"
        render(net, out, level="block")
        data = out.read_bytes()
        assert data[:8] in (b"\x89PNG\r\n\x1a\n",) or data.startswith(b"%PDF") or b"<svg" in data[:400]


# ---------------------------------------------------------------- Graphviz missing


def test_missing_dot_message(r18, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot`
    with pytest.raises(GraphvizNotFound) as e:
        to_svg(r18)
    msg = str(e.value)
    for needle in ("apt-get install graphviz", "brew install graphviz", "conda", ".dot"):
        assert needle in msg
    # .dot output needs no Graphviz
    render(r18, tmp_path / "ok.dot")
    assert (tmp_path / "ok.dot").read_text().startswith("digraph")


def test_missing_dot_cli_exit_code(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    src = str(ROOT / "examples" / "unravel4.res")
    r = subprocess.run([PY, "-m", "resdsl", "render", src, "-o", str(tmp_path / "a.svg")],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 3
    assert "apt-get install graphviz" in r.stderr and "brew install graphviz" in r.stderr
    r = subprocess.run([PY, "-m", "resdsl", "render", src, "-o", str(tmp_path / "a.dot")],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and (tmp_path / "a.dot").exists()
    r = subprocess.run([PY, "-m", "resdsl", "render", src, "-o", str(tmp_path / "a.jpg")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2


# ---------------------------------------------------------------- bounded work (issue 10)

def lines_run(fn) -> int:
    """Python lines executed by fn() (a deterministic measure of work: no clocks)."""
    count = [0]

    def tracer(frame, event, arg):
        if event == "line":
            count[0] += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count[0]


# Residual units of two kinds, alternating, so that no two neighbours collapse into one "×N" unit;
# groups of units for the network level's stage summaries.
UNITS = ("    for i in range({n}) {{\n        if i % 2 == 0 {{\n            residual {{\n"
         "                conv(8, 3, padding=1)\n            }}\n        }} else {{\n"
         "            residual(shortcut=\"project\") {{\n                relu\n            }}\n        }}\n    }}\n")
GROUPS = "    for i in range({n}) {{\n        group {{\n            residual {{\n                relu\n            }}\n            relu\n        }}\n    }}\n"


def _units_net(body: str, n: int):
    return resdsl.loads("network n() {\n    input x: [8, 4, 4]\n" + body.format(n=n) + "}\n",
                        limits=resdsl.Limits(max_nodes=10**6))


@pytest.mark.parametrize("level", ["network", "block", "layer"])
@pytest.mark.parametrize("body", [UNITS, GROUPS], ids=["units", "groups"])
def test_diagram_and_dot_text_are_linear(level, body):
    """Doubling the network doubles the work of building the diagram and its dot text (it was
    quadratic: every unit scanned every region, every drawn run every shortcut edge)."""
    small, big = _units_net(body, 100), _units_net(body, 200)
    to_dot(small, level=level)  # warm up caches
    work = [lines_run(lambda net=net: to_dot(net, level=level)) for net in (small, big)]
    assert work[1] / work[0] < 2.1, work


def test_graphviz_is_refused_above_the_diagram_budget_and_the_hint_works(tmp_path):
    limits = resdsl.Limits(max_diagram_size=60)
    net = resdsl.loads("network n() {\n    input x: [8, 4, 4]\n" + UNITS.format(n=30) + "}\n", limits=limits)
    sizes = {lv: len(diagram(net, lv).nodes) + len(diagram(net, lv).edges) for lv in ("network", "block", "layer")}
    assert sizes["layer"] > 60 and sizes["block"] > 60  # (the network level's 61 nodes+edges too)
    for level in ("layer", "block"):
        with pytest.raises(ResdslError) as e:
            render(net, tmp_path / "n.svg", level=level)
        d = e.value.first
        assert d.code == "E040" and d.span.line == 1
        assert f"the {level}-level diagram has" in d.message and "-o net.dot" in d.hint
        assert not (tmp_path / "n.svg").exists()
    # applied literally, each way the hint names works: a .dot file needs no layout
    render(net, tmp_path / "net.dot", level="layer")
    assert (tmp_path / "net.dot").read_text().startswith("digraph")
    roomy = resdsl.loads("network n() {\n    input x: [8, 4, 4]\n" + UNITS.format(n=30) + "}\n",
                         limits=resdsl.Limits(max_diagram_size=100))
    with pytest.raises(ResdslError) as e:
        render(roomy, tmp_path / "n.svg", level="layer")
    assert "--level network" in e.value.first.hint  # it fits the budget, so it is offered ...
    from resdsl.render import check_size
    check_size(roomy, diagram(roomy, "network"), roomy.limits)  # ... and passes it


def test_dot_that_hangs_is_stopped(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dot").write_text("#!/bin/sh\nexec /bin/sleep 60\n")
    (fake / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    net = resdsl.loads("network n() {\n    input x: [3, 8, 8]\n    relu\n}\n", limits=resdsl.Limits(max_layout_seconds=1))
    with pytest.raises(ResdslError) as e:
        render(net, tmp_path / "n.png")
    assert e.value.first.code == "E040" and "within 1 s" in e.value.first.message
    assert (e.value.first.span.line, e.value.first.span.col) == (1, 1)  # the network
    assert "-o net.dot" in e.value.first.hint and "max_layout_seconds" in e.value.first.hint
