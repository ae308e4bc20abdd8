"""The op registry: every op has every facet, and every facet is exercised.

A new op is one `register(OpDef(...))` in resdsl/ops/<family>.py plus its torch case in
tests/test_ops_torch.py; this file fails until both exist and every pass can handle it.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import resdsl
from resdsl import ops
from resdsl.analysis import cost
from resdsl.backends import pytorch
from resdsl.ops.base import CONVENTIONS, Display, Family, Saves, Spatial
from resdsl.render import labels

ROOT = Path(__file__).resolve().parent.parent
USER_OPS = sorted(n for n, o in ops.OPS.items() if o.user)
# one small example per user op (input shape, layer text): the facets are run on it below
EXAMPLE = {
    "conv": ("[3, 9, 9]", "conv(4, 3)"), "conv1d": ("[3, 9]", "conv1d(4, 3)"), "conv2d": ("[3, 9, 9]", "conv2d(4, 3)"),
    "conv3d": ("[3, 5, 5, 5]", "conv3d(4, 3)"), "conv_transpose": ("[3, 5, 5]", "conv_transpose(4, 2, stride=2)"),
    "conv_transpose1d": ("[3, 5]", "conv_transpose1d(4, 2)"), "conv_transpose2d": ("[3, 5, 5]", "conv_transpose2d(4, 2)"),
    "conv_transpose3d": ("[3, 4, 4, 4]", "conv_transpose3d(4, 2)"), "linear": ("[7]", "linear(5)"),
    "maxpool": ("[3, 9, 9]", "maxpool(2)"), "avgpool": ("[3, 9, 9]", "avgpool(2)"),
    "adaptive_avgpool": ("[3, 9, 9]", "adaptive_avgpool(2)"), "adaptive_maxpool": ("[3, 9, 9]", "adaptive_maxpool(2)"),
    "global_avgpool": ("[3, 9, 9]", "global_avgpool"), "global_maxpool": ("[3, 9, 9]", "global_maxpool"),
    "upsample": ("[3, 4, 4]", "upsample(scale_factor=2)"), "identity": ("[3, 4]", "identity"),
    "flatten": ("[3, 4, 4]", "flatten"), "unflatten": ("[6]", "unflatten(0, [2, 3])"),
    "reshape": ("[3, 4]", "reshape([12])"), "permute": ("[3, 4, 5]", "permute([1, 2, 0])"),
    "transpose": ("[3, 4, 5]", "transpose(0, 1)"), "slice": ("[6, 4]", "slice(1, 3)"),
    "crop": ("[3, 9, 9]", "crop(5)"), "zeropad": ("[3, 8, 8]", "zeropad(6, stride=2)"),
    "dropout": ("[3, 4]", "dropout(0.1)"), "drop_path": ("[3, 4]", "drop_path(0.1)"),
    "batchnorm": ("[3, 4, 4]", "batchnorm()"), "ghost_batchnorm": ("[3, 4, 4]", "ghost_batchnorm(2)"),
    "layernorm": ("[3, 4, 4]", "layernorm()"), "layernorm2d": ("[3, 4, 4]", "layernorm2d()"),
    "groupnorm": ("[4, 4, 4]", "groupnorm(2)"), "instancenorm": ("[3, 4, 4]", "instancenorm()"),
    "scale": ("[3, 4]", "scale(0.5)"), "scalar_scale": ("[3, 4]", "scalar_scale()"),
    "scalar_bias": ("[3, 4]", "scalar_bias()"), "layer_scale": ("[3, 4, 4]", "layer_scale()"),
    "add": ("[3, 4]", "-> a\n relu\n add(a)"), "concat": ("[3, 4, 4]", "-> a\n relu\n concat(a)"),
    "mul": ("[3, 4, 4]", "-> a\n global_avgpool\n sigmoid\n mul(a)"),
    "sample": ("[3]", "-> a\n relu\n sample(a)"),
}
EXAMPLE.update({a: ("[3, 4, 4]", a) for a in ops.ACTIVATIONS})
EXAMPLE["softmax"] = ("[3, 4]", "softmax()")
EXAMPLE["leaky_relu"] = ("[3, 4]", "leaky_relu(0.1)")


def _node(op: str):
    shape, body = EXAMPLE[op]
    net = resdsl.loads(f"network t() {{\n input x: {shape}\n {body}\n output y\n}}\n")
    n = next(n for n in reversed(net.graph.nodes) if n.op == op)
    return net, n


def test_every_user_op_has_an_example_here():
    assert sorted(EXAMPLE) == USER_OPS


@pytest.mark.parametrize("name", sorted(ops.OPS))
def test_every_facet_is_declared(name):
    op = ops.OPS[name]
    assert op.name == name and isinstance(op.family, Family) and isinstance(op.family.display, Display)
    assert op.family.cost_class and op.family.title
    assert isinstance(op.saves, Saves) and isinstance(op.spatial, Spatial)
    assert set(op.macs) == set(CONVENTIONS)
    assert callable(op.infer) and callable(op.count) and callable(op.label)
    assert op.doc and not op.doc.endswith(".")
    assert (op.lower is None) == (name == "input")
    assert op.merge == (op.family is Family.MERGE) and op.merge == (op.spatial is Spatial.MERGE)
    assert op.transposed == (op.spatial is Spatial.TRANSPOSED)
    assert all(isinstance(p, ops.Param) for p in op.params)


@pytest.mark.parametrize("name", USER_OPS)
def test_every_pass_handles_every_op(name):
    """Shape rule, counts, every MAC convention, memory, receptive field, lowering and label all run."""
    net, n = _node(name)
    op = n.spec
    xs = [net.graph.nodes[i].shape for i in n.inputs]
    shape, attrs = op.elaborate(n.attrs, xs)  # pure: the stored attributes are a fixed point
    assert shape == n.shape and attrs == dict(n.attrs)
    assert set(attrs) <= {p.name for p in op.params} | set(op.derived)
    for convention in CONVENTIONS:
        report = cost.analyze(net.graph, convention)
        assert report.layers[n.id].macs >= 0
    low = pytorch.lower(n, xs)
    assert low.call("m" if low.ctor else None, ["a", "b"][:len(xs)])
    assert isinstance(labels.describe(n), str) and labels.family(n.op) in labels.FAMILIES


def test_a_pass_meeting_an_op_without_a_facet_names_both():
    net, n = _node("relu")
    broken = dataclasses.replace(ops.OPS["relu"], macs={})
    with pytest.raises(ops.MissingFacet, match="cost pass.*'relu'.*macs\\[thop\\]"):
        broken.mac("thop", n.attrs, [n.shape], n.shape, 0)
    with pytest.raises(ops.MissingFacet, match="registry.*'bogus'.*macs"):
        ops.register(dataclasses.replace(ops.OPS["relu"], name="bogus", macs={}))
    assert "bogus" not in ops.OPS


def test_derived_attributes_must_be_declared():
    op = dataclasses.replace(ops.OPS["conv"], derived=("kernel_size",))
    with pytest.raises(ops.MissingFacet, match="derived"):
        op.elaborate({"out_channels": 4, "kernel_size": 3}, [(3, 9, 9)])


def test_shape_rules_are_pure():
    attrs = {"out_channels": 4, "kernel_size": 3}
    shape, out = ops.OPS["conv"].elaborate(attrs, [(3, 9, 9)])
    assert attrs == {"out_channels": 4, "kernel_size": 3}  # the caller's dict is not touched
    assert out["kernel_size"] == (3, 3) and shape == (4, 7, 7)


def test_every_user_op_has_a_torch_case():
    import test_ops_torch as t
    shapes = {c[0].split("(")[0] for c in t.CASES}
    values = {c[0] for c in t.VALUE_CASES}
    import test_backend as b
    lowered = {c[2].split(":")[-1].split("(")[0].split("\n")[-1].strip() for c in b.OP_CASES}
    missing = set(USER_OPS) - shapes - {"add", "concat", "zeropad", "mul", "sample"}
    assert not missing, f"ops without a torch shape/count case: {sorted(missing)}"
    missing = set(USER_OPS) - values - lowered - {"conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                                  "conv_transpose2d", "conv_transpose3d"}
    assert not missing, f"ops without a torch value case: {sorted(missing)}"


def test_passes_never_name_an_op():
    """The passes reach ops only through their facets (the registry is the one place that names them)."""
    names = set(ops.OPS) - {"input"}
    for path in ("resdsl/analysis/cost.py", "resdsl/analysis/sizes.py", "resdsl/render/labels.py",
                 "resdsl/ir.py"):
        text = re.sub(r'(get\(|\[)"\w+"', "", (ROOT / path).read_text())  # attribute reads, e.g. a.get("crop")
        named = sorted(o for o in names if f'"{o}"' in text or f"'{o}'" in text)
        assert not named, f"{path} names ops {named}"


def test_every_user_op_has_an_oracle_generator():
    import test_oracle
    assert set(USER_OPS) <= set(test_oracle.GENERATORS)
