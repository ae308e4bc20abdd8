"""The cost pass's shortcuts change nothing: MACs computed once per distinct (rule, attrs, shapes) and rows
built on first use give, node by node, what each op's definition says when asked afresh (no torch here:
tests/test_cost.py checks the definitions themselves against the counting packages)."""
from __future__ import annotations

import dataclasses
import math

import pytest

import resdsl
from resdsl.analysis.cost import CONVENTIONS, analyze
from resdsl.models import get_network
from resdsl.ops import OPS, Saves

CHAIN = """
network chain(K = 10, D = 16) {
  input x: [D]
  for i in range(K) { residual { relu; linear(D) } }
  output y
}"""

# Equal input and output shapes, equal parameter-free ops around them: only the attributes tell the convs
# apart (kernel 3 / 5 / 3 dilated / grouped), and a block repeated in a loop shares its attribute objects.
SAME_SHAPES = """
network same(K = 3) {
  input x: [8, 16, 16]
  for i in range(K) {
    conv(8, 3, padding=1)
    relu
    conv(8, 5, padding=2)
    relu
    conv(8, 3, padding=2, dilation=2)
    conv(8, 3, padding=1, groups=4)
    conv(8, 3, padding=1, bias=false)
  }
  output y
}"""


def fresh_macs(net, convention: str) -> list[int]:
    """Every node's MACs asked of its op definition directly, one call per node."""
    g = net.graph
    return [OPS[n.op].mac(convention, n.attrs, [g.nodes[i].shape for i in n.inputs], n.shape, n.params)
            for n in g.nodes]


NETS = {
    "chain": lambda: resdsl.loads(CHAIN, K=12),
    "same_shapes": lambda: resdsl.loads(SAME_SHAPES),
    "resnet50": lambda: get_network("resnet50"),
    "densenet121": lambda: get_network("densenet121"),
    "vit": lambda: get_network("vit"),
    "unet": lambda: get_network("unet"),
    "mobilenet_v2": lambda: get_network("mobilenet_v2"),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_rows_equal_the_op_definitions_asked_afresh(name):
    net = NETS[name]()
    g = net.graph
    for conv in CONVENTIONS:
        r = analyze(g, conv)
        want = fresh_macs(net, conv)
        assert [l.macs for l in r.layers] == want
        assert r.total == sum(want)
        by_class: dict[str, int] = {}
        for n, m in zip(g.nodes, want):
            cls = OPS[n.op].family.cost_class
            by_class[cls] = by_class.get(cls, 0) + m
        assert r.by_class == by_class and list(r.by_class) == list(by_class)  # same classes, same order
        assert [l.out_elems for l in r.layers] == [math.prod(n.shape) for n in g.nodes]
        assert r.activation_elems == sum(math.prod(n.shape) for n in g.nodes)
        saved = [False] * len(g.nodes)
        for n in g.nodes:
            if OPS[n.op].saves is Saves.INPUT:
                for i in n.inputs:
                    saved[i] = True
            elif OPS[n.op].saves is Saves.OUTPUT:
                saved[n.id] = True
        assert [l.saved for l in r.layers] == saved
        assert r.saved_elems == sum(math.prod(n.shape) for n, s in zip(g.nodes, saved) if s)
        assert [(l.id, l.name, l.op, l.params) for l in r.layers] == [(n.id, n.name, n.op, n.params) for n in g.nodes]
        assert (r.params, r.buffers) == (g.param_count, g.buffer_count)


def test_convs_with_equal_shapes_and_different_attributes_are_counted_apart():
    net = resdsl.loads(SAME_SHAPES)
    convs = [l for l in net.costs().layers if l.op == "conv"]
    positions = 16 * 16 * 8  # output positions x C_out
    per_block = [positions * 8 * 9, positions * 8 * 25, positions * 8 * 9, positions * 2 * 9, positions * 8 * 9]
    assert [l.macs for l in convs] == per_block * 3
    with_bias = [l.macs for l in net.costs("resdsl").layers if l.op == "conv"]
    assert with_bias == [m + b * positions for m, b in zip(per_block, [1, 1, 1, 1, 0])] * 3  # + bias per element


def _counting_rule(monkeypatch, op: str, convention: str) -> list[int]:
    """Replace `op`'s MAC rule for `convention` by one that records each call."""
    calls: list[int] = []
    spec = OPS[op]
    rule = spec.macs[convention]

    def counted(a, xs, y, p):
        calls.append(1)
        return rule(a, xs, y, p)
    monkeypatch.setitem(OPS, op, dataclasses.replace(spec, macs={**spec.macs, convention: counted}))
    return calls


@pytest.mark.parametrize("K", [1, 10, 300])
def test_mac_rule_runs_once_per_distinct_node_not_once_per_block(monkeypatch, K):
    calls = _counting_rule(monkeypatch, "linear", "torchvision")
    r = analyze(resdsl.loads(CHAIN, K=K).graph)
    assert r.total == K * 16 * 16
    # the first block is elaborated, the second records, the rest replay the recording (resdsl/replay.py):
    # their nodes share attribute and shape objects, so at most two distinct linear nodes are ever asked
    assert len(calls) <= 2


def test_rows_are_built_once_and_compare_equal():
    g = resdsl.loads(SAME_SHAPES).graph
    r = analyze(g, "resdsl")
    assert r.layers is r.layers
    assert r == analyze(g, "resdsl") and r != analyze(g, "torchvision")


def test_memo_key_holds_every_input_of_a_rule(monkeypatch):
    """A hand-made graph whose nodes share attribute and shape objects where the elaborator never makes
    them share (it shares them only between a replayed node and its recording), each pair differing in one
    input of the MAC rule only: each node must still get its own rule's answer for its own inputs."""
    from resdsl.ir import Graph, Node, freeze
    from resdsl.ops.base import numel

    relu = OPS["relu"]  # a rule that reads an attribute and the parameter count, as a rule may
    monkeypatch.setitem(OPS, "relu", dataclasses.replace(
        relu, macs={**relu.macs, "resdsl": lambda a, xs, y, p: a.get("k", 1) * numel(y) + p}))
    span = resdsl.loads(CHAIN, K=1).graph.nodes[0].span
    s8, s6, s4 = (8,), (6,), (4,)
    lin = freeze({"out_features": 4, "bias": True, "init": "default", "init_gain": 1.0, "pointwise": False,
                  "tie": None})
    k2, empty = freeze({"k": 2}), freeze({})
    rows = [  # (op, inputs, attrs, shape, params); each node differs from the one before it that has the same
        # attrs object in one rule input only
        ("input", (), freeze({"shape": s8}), s8, 0),
        ("input", (), freeze({"shape": s6}), s6, 0),
        ("linear", (0,), lin, s4, 36),
        ("linear", (1,), lin, s4, 36),  # another input width only
        ("relu", (2,), k2, s4, 0),
        ("relu", (2,), k2, s6, 0),  # another output shape only
        ("relu", (2,), k2, s4, 0),  # (and back)
        ("relu", (2,), k2, s4, 5),  # another parameter count only
        ("relu", (2,), freeze({"k": 3}), s4, 0),  # another attribute only
        ("relu", (3,), empty, s4, 0),
        ("silu", (3,), empty, s4, 0),  # another op only
        ("relu", (4, 6), k2, s4, 0),  # two inputs: the same four variations
        ("relu", (4, 6), freeze({"k": 3}), s4, 0),
        ("relu", (4, 6), k2, s6, 0),
        ("relu", (4, 6), k2, s4, 5),
        ("add", (4, 6), k2, s4, 0),
        ("add", (4, 6), empty, s4, 0),
        ("add", (4, 5, 6, 7, 8, 9), empty, s4, 0),  # more inputs only
    ]
    nodes = [Node(k, op, ins, a, shape, p, 0, 0, None, span, name=f"n{k}") for k, (op, ins, a, shape, p) in
             enumerate(rows)]
    g = Graph("handmade", nodes=nodes, inputs={"x": 0, "z": 1}, outputs={"y": len(nodes) - 1})
    for conv in CONVENTIONS:
        want = [OPS[n.op].mac(conv, n.attrs, [nodes[i].shape for i in n.inputs], n.shape, n.params) for n in nodes]
        assert [l.macs for l in analyze(g, conv).layers] == want, conv
    assert [l.macs for l in analyze(g, "torchvision").layers][2:4] == [32, 24]
    assert [l.macs for l in analyze(g, "resdsl").layers][4:] == [8, 12, 8, 13, 12, 4, 4, 8, 12, 12, 13, 4, 4, 20]
    assert [l.macs for l in analyze(g, "ptflops").layers][9:11] == [8, 4]  # ReLU counts 2 per element, SiLU 1
