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


def test_the_flip_net_crops_the_branch_to_the_skip_in_straight_line_code():
    """The skip is the smaller or equal input at every valid W (W vs 2*ceil(W/2)), but equal at even W and
    smaller at odd W: a slice that is a no-op at the compiled size makes torch.export guard on it, so the W
    crop is done at run time; H (even at every valid size, H % 8 == 4) keeps its straight-line slicing."""
    from resdsl.analysis.sizes import smallest_inputs

    net = resdsl.loads(FLIP, name="f.res")
    (cat,) = [n for n in net.graph.nodes if n.op == "concat"]
    assert smallest_inputs(net, cat.id) == (0, None)
    code = net.torch_source()
    assert code.count("crop_to_smallest(") == 2  # the helper's definition and its one use, on dim 3
    assert "crop_to_smallest([h, x[:, :, (x.shape[2] - h.shape[2]) // 2:(x.shape[2] + h.shape[2]) // 2, :]], 3)" in code


def _signs_by_building(src: str, dims: dict, sizes, op: str = "concat") -> list[dict]:
    """For each cropped concat, per spatial dim: the signs of size_p - size_q seen at every valid size in
    `sizes`, by building the network at each (the ordinary elaboration path)."""
    seen: list[dict] = []
    for s in sizes:
        try:
            net = resdsl.loads(src, name="f.res", input_shapes={"x": dims(s)})
        except ResdslError:
            continue
        cats = [n for n in net.graph.nodes if n.op == op]
        seen += [{} for _ in cats[len(seen):]]
        for k, n in enumerate(cats):
            xs = [net.graph.nodes[i].shape for i in n.inputs]
            for d in range(1, len(xs[0])):
                for p in range(len(xs)):
                    for q in range(len(xs)):
                        if p != q:
                            seen[k].setdefault((d, p, q), set()).add((xs[p][d] > xs[q][d]) - (xs[p][d] < xs[q][d]))
    return seen


def _fixed(seen: dict, rank: int, count: int) -> list:
    """The first input whose difference to every other keeps one sign <= 0 (the rule smallest_inputs states)."""
    out = []
    for d in range(1, rank):
        ok = [p for p in range(count) if all(len(seen[d, p, q]) == 1 and 1 not in seen[d, p, q]
                                             for q in range(count) if q != p)]
        out.append(ok)
    return out


HFLIP = """network hflip() {
    input x: [3, H, W]
    -> s
    conv(2, kernel_size=3, stride=[2, 1], padding=1)
    upsample(scale_factor=[2, 1])
    -> a
    from s
    maxpool(kernel_size=[2, 1], stride=[2, 1])
    upsample(scale_factor=[2, 1])
    conv(3, kernel_size=[2, 1], padding=[1, 0])
    concat(a, crop=true)
    output y
}
"""
# three inputs, W fixed: 2*floor(H/2) + 1 (H at odd, H + 1 at even), 2*ceil(H/2) (H + 1 at odd, H at even), H + 2
HFLIP3 = """network hflip3() {
    input x: [3, H, 9]
    -> s
    conv(2, kernel_size=3, stride=[2, 1], padding=1)
    upsample(scale_factor=[2, 1])
    -> a
    from s
    conv(1, kernel_size=[1, 1], padding=[1, 0])
    -> b
    from s
    maxpool(kernel_size=[2, 1], stride=[2, 1])
    upsample(scale_factor=[2, 1])
    conv(3, kernel_size=[2, 1], padding=[1, 0])
    concat(a, b, crop=true)
    output y
}
"""


@pytest.mark.parametrize("src,want", [(FLIP, [(0, None)]), (HFLIP, [(None, 0)]), (HFLIP3, [(None, 0)])])
def test_smallest_inputs_agree_with_building_every_size(src, want):
    """smallest_inputs (exact: affine shapes from the threshold on) against building the network at every
    size from 1 to 90 of each named dim, the other at its compiled size, and reading the concat's inputs."""
    from resdsl.analysis.sizes import smallest_inputs

    net = resdsl.loads(src, name="f.res")
    cats = [n for n in net.graph.nodes if n.op == "concat"]
    got = [smallest_inputs(net, n.id) for n in cats]
    assert got == want
    x = net.inputs["x"]
    seen: list[dict] = [{} for _ in cats]
    for d in (1, 2):
        for k, found in enumerate(_signs_by_building(src, lambda s: x[:d] + (s,) + x[d + 1:], range(1, 91))):
            for key, signs in found.items():
                seen[k].setdefault(key, set()).update(signs)
    for k, n in enumerate(cats):
        fixed = _fixed(seen[k], len(n.shape), len(n.inputs))
        assert [ok[0] if ok else None for ok in fixed] == list(got[k])


def _hflip_by_hand(p, x):
    """HFLIP in plain torch ops, the crop with Python's min of the two heights, weights by name."""
    import torch
    import torch.nn.functional as F

    a = F.interpolate(F.conv2d(x, p["conv.weight"], p["conv.bias"], stride=(2, 1), padding=1), scale_factor=(2.0, 1.0))
    c = F.interpolate(F.max_pool2d(x, (2, 1), (2, 1)), scale_factor=(2.0, 1.0))
    c = F.conv2d(c, p["conv_1.weight"], p["conv_1.bias"], padding=(1, 0))
    m = min(a.shape[2], c.shape[2])
    a = a[:, :, (a.shape[2] - m) // 2:(a.shape[2] - m) // 2 + m]
    c = c[:, :, (c.shape[2] - m) // 2:(c.shape[2] - m) // 2 + m]
    return torch.cat([c, a], 1)


HSIZES = [(224, 224), (225, 7), (9, 10), (10, 9), (13, 224), (6, 6), (4, 5)]


@pytest.fixture(scope="module")
def hflip():
    import torch

    net = resdsl.loads(HFLIP, name="h.res")
    m = net.to_torch(seed=0).eval()
    with torch.no_grad():  # biases start at 0: draw them too
        for w in m.parameters():
            w.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(w.numel()))
    return net, m


def test_a_crop_whose_smaller_input_flips_in_h_runs_at_every_size(hflip):
    """2*floor(H/2) + 1 vs 2*ceil(H/2): the first is smaller at odd H, the second at even H.  Compiled at 224,
    the module equals a hand-written torch version (crop by Python's min) at every size, eager and FX,
    and its output is what elaboration at that size says: [5, H, W]."""
    import torch

    net, m = hflip
    assert "crop_to_smallest([h1, h[:, :, :, (h.shape[3] - h1.shape[3]) // 2:(h.shape[3] + h1.shape[3]) // 2]], 2)" \
        in net.torch_source()
    p = dict(m.state_dict())
    traced = torch.fx.symbolic_trace(m)
    for h, w in HSIZES + [(s, 3) for s in range(2, 12)]:
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
        with torch.no_grad():
            y = m(x)
            assert torch.equal(y, _hflip_by_hand(p, x))
            assert torch.equal(traced(x), y)
        assert tuple(y.shape[1:]) == resdsl.loads(HFLIP, name="h.res", input_shapes={"x": (3, h, w)}).outputs["y"] \
            == (5, h, w)


def test_the_run_time_crop_has_gradients_as_slicing_has(hflip):
    """Input and weight gradients of the eager module (slices) and of its torch.fx trace (the traced form:
    index_select of an arange) against the hand-written slicing's."""
    import torch

    net, _ = hflip
    m = net.to_torch(seed=0).train()
    p = dict(m.named_parameters())
    traced = torch.fx.symbolic_trace(m)
    assert any("index_select" in str(n.target) for n in traced.graph.nodes)
    for h in (9, 10):
        x = torch.randn(1, 3, h, 5, requires_grad=True, generator=torch.Generator().manual_seed(h))
        want = torch.autograd.grad(_hflip_by_hand(p, x).square().sum(), [x, *p.values()])
        for model in (m, traced):
            got = torch.autograd.grad(model(x).square().sum(), [x, *p.values()])
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_traced_flipping_crops_run_at_other_sizes(hflip, tmp_path):
    """torch.export (Dim.AUTO and named dims) and the legacy ONNX exporter (dynamic axes, onnxruntime),
    traced once at 224 x 224, compute eager's values at sizes where the other input is the smaller; so
    does torch.compile (dynamic, fullgraph)."""
    import torch

    net, m = hflip
    x0 = torch.randn(1, 3, 224, 224)
    auto = torch.export.export(m, (x0,), dynamic_shapes={"x": {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}})
    named = torch.export.export(m, (x0,), dynamic_shapes={"x": {2: torch.export.Dim("H", min=4, max=4096),
                                                                3: torch.export.Dim("W", min=4, max=4096)}})
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True, dynamic=True)
    from test_export import onnx_session_hw
    sess = onnx_session_hw(m, x0, tmp_path / "h.onnx")
    for h, w in HSIZES[1:]:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h + w))
        with torch.no_grad():
            want = m(x)
            assert torch.equal(auto.module()(x), want)
            assert torch.equal(named.module()(x), want)
            assert torch.equal(compiled(x), want)
        if sess is not None:
            got = torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_the_flip_net_exports_with_dynamic_sizes(tmp_path):
    """The pinned net through torch.export (Dim.AUTO) and ONNX (dynamic axes) at odd and even W."""
    import torch

    m = resdsl.loads(FLIP, name="f.res").to_torch(seed=0).eval()
    x0 = torch.randn(1, 3, 228, 224)
    program = torch.export.export(m, (x0,), dynamic_shapes={"x": {2: torch.export.Dim.AUTO,
                                                                  3: torch.export.Dim.AUTO}})
    pytest.importorskip("onnxruntime")
    from test_export import onnx_session_hw
    sess = onnx_session_hw(m, x0, tmp_path / "f.onnx")
    for w in (5, 7, 9, 224, 6):
        x = torch.randn(1, 3, 236, w, generator=torch.Generator().manual_seed(w))
        with torch.no_grad():
            want = m(x)
            assert torch.equal(want[:, 2:], x)
            assert torch.equal(program.module()(x), want)
        torch.testing.assert_close(torch.from_numpy(sess.run(None, {"x": x.numpy()})[0]), want, rtol=1e-5, atol=1e-5)


def test_three_inputs_crop_to_the_least_of_them_at_run_time():
    """HFLIP3: H + 2, and two inputs that take turns being the smallest; each input is center-cropped to the
    least height with offset (L - m) // 2, as a hand-written version with Python's min does."""
    import torch
    import torch.nn.functional as F

    net = resdsl.loads(HFLIP3, name="f.res")
    m = net.to_torch(seed=0).eval()
    p = dict(m.state_dict())
    for h in range(2, 14):
        x = torch.randn(1, 3, h, 9, generator=torch.Generator().manual_seed(h))
        a = F.interpolate(F.conv2d(x, p["conv.weight"], p["conv.bias"], stride=(2, 1), padding=1),
                          scale_factor=(2.0, 1.0))
        b = F.conv2d(x, p["conv_1.weight"], p["conv_1.bias"], padding=(1, 0))
        c = F.interpolate(F.max_pool2d(x, (2, 1), (2, 1)), scale_factor=(2.0, 1.0))
        c = F.conv2d(c, p["conv_2.weight"], p["conv_2.bias"], padding=(1, 0))
        least = min(t.shape[2] for t in (a, b, c))
        assert least == h
        want = torch.cat([t[:, :, (t.shape[2] - least) // 2:(t.shape[2] - least) // 2 + least] for t in (c, a, b)], 1)
        with torch.no_grad():
            assert torch.equal(m(x), want)


def test_the_standalone_file_carries_the_run_time_crop(hflip):
    """`resdsl compile -o` text for HFLIP defines crop_to_smallest and runs on its own (a fresh namespace),
    equal to the built module at sizes where either input is the smaller."""
    import torch

    net, m = hflip
    src = net.torch_source()
    assert src.count("def crop_to_smallest(") == 1
    ns: dict = {"__name__": "standalone"}
    exec(compile(src, "<hflip.py>", "exec"), ns)  # our own generated text
    again = ns[type(m).__name__]().eval()
    again.load_state_dict(m.state_dict(), strict=True)
    for h in (9, 10):
        x = torch.randn(1, 3, h, 4, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            assert torch.equal(again(x), m(x))


def test_the_sizes_a_network_varies_over_choose_its_crop_code():
    """The same graph (FLIP built at 228 x 224) over even widths only (`--input x=3,H%8=4,W%2`): the branch
    equals the skip at every such W, so the W crop is straight-line slicing again; the code cache keeps the
    two apart (its key holds the sizes the analysis varies over, not only the graph)."""
    a = resdsl.loads(FLIP, name="f.res")
    b = resdsl.loads(FLIP, name="f.res", input_shapes={"x": (3, "H%8=4", "W%2")})
    assert a.graph.nodes == b.graph.nodes and b.inputs["x"] == (3, 228, 224)
    ma, mb = a.to_torch(), b.to_torch()
    assert "crop_to_smallest" in ma.code and "crop_to_smallest" not in mb.code
    assert "crop_to_smallest" in a.to_torch().code  # a cache hit gives a's code back, not b's
