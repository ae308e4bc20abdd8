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


def _examples() -> dict[str, tuple[str, str]]:
    """One (input shape, body) per op, taken from the op's own torch tests: nothing to add here for a new op."""
    import test_backend
    import test_ops_torch
    found: dict[str, tuple[str, str]] = {}
    for layer, shape, _ in test_ops_torch.CASES:
        found.setdefault(layer.split("(")[0], (str(shape), layer))
    for op, shape, body, _, _ in test_ops_torch.VALUE_CASES:
        found.setdefault(op, (shape, body))
    for _, shape, body, _, _ in test_backend.OP_CASES:
        op = body.split(":")[-1].split("(")[0].split("\n")[-1].strip()
        found.setdefault(op, (shape, body))
    return found


EXAMPLE = _examples()


def _node(op: str):
    shape, body = EXAMPLE[op]
    net = resdsl.loads(f"network t() {{\n input x: {shape}\n {body}\n output y\n}}\n")
    n = next(n for n in reversed(net.graph.nodes) if n.op == op)
    return net, n


def test_every_user_op_has_an_example():
    assert set(USER_OPS) <= set(EXAMPLE)


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
    # the rounding facet (ops/rounding.py): every op that windows, crops, resamples or subsamples says where
    # it rounds; only position-wise, global and transposed ops and plain merges may have none
    may_skip = op.spatial in (Spatial.POINT, Spatial.GLOBAL, Spatial.TRANSPOSED) or \
        (op.spatial is Spatial.MERGE and "crop" not in {p.name for p in op.params})
    assert callable(op.rounding) or (op.rounding is None and may_skip), f"{name} has no rounding facet"


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
    for path in ("resdsl/analysis/cost.py", "resdsl/analysis/sizes.py", "resdsl/analysis/symbolic.py",
                 "resdsl/render/labels.py", "resdsl/ir.py"):
        text = re.sub(r'(get\(|\[)"\w+"', "", (ROOT / path).read_text())  # attribute reads, e.g. a.get("crop")
        named = sorted(o for o in names if f'"{o}"' in text or f"'{o}'" in text)
        assert not named, f"{path} names ops {named}"


def test_every_user_op_has_an_oracle_generator():
    import test_oracle
    assert set(USER_OPS) <= set(test_oracle.GENERATORS)
