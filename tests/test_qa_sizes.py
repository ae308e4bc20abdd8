"""Named input sizes attacked as a demanding user would (bugs found by the qa pass, each pinned here).

Every expectation comes from an independent source: building the network at each concrete size (the
ordinary elaboration path), Python's own `%`, or torch's shapes."""
from __future__ import annotations

import pytest

import resdsl
from resdsl.diagnostics import ResdslError

NET = """network n() {{
    input x: [3, H, W] where {where}
    conv(8, 3, stride=2, padding=1)
    output y
}}
"""


def _error(src: str, **kw) -> "resdsl.diagnostics.Diagnostic":
    with pytest.raises(ResdslError) as e:
        resdsl.loads(src, name="q.res", **kw)
    return e.value.first


@pytest.mark.parametrize("where", ["H % 10**18 == 3", "H % 1000000 == 3, H % 999999 == 5",
                                   "W == H, H % 65536 == 0, W % 65537 == 0"])
def test_huge_moduli_are_refused_not_enumerated(where):
    """Residues are listed one by one: a modulus of 10**18 (or an lcm of 10**12) used to hang `check`."""
    d = _error(NET.format(where=where))
    assert d.code == "E040" and "at most 65536" in d.message and d.span.line == 2
    assert "least common multiple" in d.hint


def test_largest_modulus_still_works():
    net = resdsl.loads(NET.format(where="H % 65536 == 3"), name="q.res")
    assert net.inputs["x"][1] % 65536 == 3


@pytest.mark.parametrize("m, r", [(4, 7), (4, -1), (32, 32), (2, 5)])
def test_a_remainder_out_of_range_never_holds(m, r):
    """`H % 4 == 7` is false for every H in Python (and in the docs' own semantics); it was taken as 3 mod 4."""
    assert not any(h % m == r for h in range(1, 1000))  # the independent fact
    d = _error(NET.format(where=f"H % {m} == {r}"))
    assert d.code == "E042" and f"0 to {m - 1}" in d.message and d.span.line == 2
    # the hint works when applied: the suggested remainder elaborates, at a size with that remainder
    fixed = NET.format(where=f"H % {m} == {r % m}")
    assert resdsl.loads(fixed, name="q.res").inputs["x"][1] % m == r % m
    assert f"e.g. {r % m}" in d.hint


READS = """network r() {
    input x: [3, H, W] where H % 4 == 0
    if H > 64 {
        conv(8, 3, stride=2, padding=1)
    } else {
        conv(8, 3, padding=1)
    }
    conv(H // 16, 1)
    output y
}
"""


def _builds(src: str, h: int, w: int) -> bool:
    try:
        resdsl.loads(src, name="r.res", input_shapes={"x": (3, h, w)})
        return True
    except ResdslError:
        return False


@pytest.mark.parametrize("shape", [(3, "H", "H"), (3, "H%16", "W"), (3, "A", "A")])
def test_structure_that_reads_a_size_under_command_line_names(shape):
    """With --input names the body's `if H > 64` and `conv(H // 16, 1)` were ignored: `check` claimed
    "runs for any size" with one formula, though conv(0, 1) fails below 16 and the layers change at 64."""
    net = resdsl.loads(READS, name="r.res", input_shapes={"x": shape})
    rep = net.valid_sizes()
    d = rep.dims[0]
    assert not d.exact and any("read by the network body" in n for n in rep.notes)
    mod = 16 if shape[1] == "H%16" else 1
    for h in range(1, 129):
        w = h if shape[1] == shape[2] else 224
        assert (h in d.valid) == (h % mod == 0 and _builds(READS, h, w)), h


FLIP = """network fuzz() {
    input x: [3, H, W] where H % 8 == 4
    -> s0
    conv(2, 3, stride=2, padding=1)
    upsample(scale_factor=2)
    concat(s0, crop=true)
    output y
}
"""


@pytest.mark.xfail(strict=True, reason="open bug (qa report): the compiled crop picks the smaller input at the "
                   "compiled size; a run-time min breaks test_export's traced U-Nets, not fixed in time")
def test_cropped_concat_when_the_smaller_input_changes_with_the_size():
    """2*ceil(W/2) equals W at even W (the compiled size) and is W + 1 at odd W: the skip is then the
    smaller one.  The module compiled at 224 cropped the skip to the branch's size always and failed
    (torch.cat: sizes must match) at odd W, which `check` reports valid; also through torch.fx."""
    import torch

    net = resdsl.loads(FLIP, name="f.res")
    assert 5 in net.valid_sizes().dims[1].valid
    model = net.to_torch(seed=0).eval()
    traced = torch.fx.symbolic_trace(model)
    for w in (1, 2, 5, 7, 9, 224):
        want = resdsl.loads(FLIP, name="f.res", input_shapes={"x": (3, 228, w)}).outputs["y"]
        x = torch.randn(1, 3, 228, w)
        with torch.no_grad():
            y = model(x)
            assert tuple(y.shape[1:]) == want == (5, 228, w)
            assert torch.equal(traced(x), y)
            assert torch.equal(y[:, 2:], x)  # the skip is kept whole: it is the smaller (or equal) one
