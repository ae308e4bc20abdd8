"""Exact symbolic sizes: valid sets and formulas, against brute force, closed forms and torch.

The valid and unrounded sets come from one symbolic analysis (resdsl/analysis/symbolic.py).  They are
checked against (a) elaborating the file at every size in a range — the ordinary concrete code path,
(b) closed forms worked out by hand, (c) torch's own output shapes on the meta device, and (d) the
printed formulas evaluated at random sizes.  Work is bounded by counts, never by time.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

import resdsl
from resdsl.analysis.sizes import parse_symbol, problems
from resdsl.analysis.symbolic import analyze_dim
from resdsl.cli import main
from resdsl.diagnostics import ResdslError

ROOT = Path(__file__).resolve().parents[1]

UNET = """
network u(size = 60, ch = 1) {
  input x: [ch, size, size]
  conv(4, 3); conv(4, 3) -> e1
  maxpool(2)
  conv(8, 3); conv(8, 3) -> e2
  maxpool(2)
  conv(16, 3); conv(16, 3)
  conv_transpose(8, 2, stride=2)
  concat(e2, crop=true)
  conv(8, 3); conv(8, 3)
  conv_transpose(4, 2, stride=2)
  concat(e1, crop=true)
  conv(4, 3); conv(4, 3)
  output y
}"""


def brute_force(load, net, d, sizes):
    """(valid, unrounded) sets by elaborating at every size, varying dim d.dim of input d.input only."""
    base = list(net.inputs[d.input])
    valid, unrounded = set(), set()
    for H in sizes:
        try:
            other = load({d.input: tuple(base[:d.dim] + [H] + base[d.dim + 1:])})
        except ResdslError:
            continue
        valid.add(H)
        if not [p for p in problems(other.graph) if p.dim == d.dim - 1]:
            unrounded.add(H)
    return valid, unrounded


def assert_matches_brute_force(load, net, extra: int = 2, dims: int = 2):
    for d in net.valid_sizes().dims[:dims]:
        assert d.exact, d.why
        top = d.threshold + extra * d.period  # beyond the threshold the rule is periodic: two periods check it
        sizes = range(1, top + 1)
        valid, unrounded = brute_force(load, net, d, sizes)
        assert {H for H in sizes if H in d.valid} == valid, (d.input, d.dim, str(d.valid))
        assert {H for H in sizes if H in d.unrounded} == unrounded, (d.input, d.dim, str(d.unrounded))


# ----------------------------------------------------------------- closed forms


def test_resnet_multiples_of_32():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=18)
    for d in net.valid_sizes().dims:
        # by hand: five stride-2 stages, each exact only on an even length; padding keeps every size runnable
        assert str(d.valid) == "any size" and str(d.unrounded) == "multiples of 32"
        assert d.unrounded.to_json()["progressions"] == [{"start": 32, "step": 32}]
        assert d.period == 32 and d.exact


def test_small_unet_closed_form(tmp_path):
    # by hand: L - 4 and (L - 4) / 2 - 4 must be even (the pools), i.e. L = 0 mod 4; the decoder's
    # last convs need the bottom size (L - 4) / 4 - 6 >= 4, i.e. L >= 44; the crops differ by 8 and 32 (even)
    p = tmp_path / "u.res"
    p.write_text(UNET)
    net = resdsl.load(p)
    for d in net.valid_sizes().dims:
        assert [L for L in range(1, 121) if L in d.unrounded] == [L for L in range(1, 121) if L % 4 == 0 and L >= 44]
        assert str(d.unrounded) == "44 + 4k"
    first = problems(resdsl.load(p, size=62).graph)[0]
    # 62 - 4 = 58 -> pool -> 29 -> two convs -> 25: the second pool cannot halve 25
    assert first.node == "maxpool_1" and "input length 25 is not divisible by the stride 2" in first.message


def test_unet_paper_sizes_and_formula():
    net = resdsl.load(ROOT / "examples/unet.res")
    for d in net.valid_sizes().dims:
        assert str(d.unrounded) == "188 + 16k" and str(d.valid) == "any size >= 188"
    # 572 -> 388 (Ronneberger et al., Fig. 1): on its residue class (572 = 12 mod 16) the output is exactly H - 184
    sym = resdsl.load(ROOT / "examples/unet.res", input_shapes={"x": (1, "H%16=12", "W%16=12")})
    assert sym.symbolic_shapes()[sym.graph.outputs["logits"]] == (2, "H - 184", "W - 184")
    free = resdsl.load(ROOT / "examples/unet.res", input_shapes={"x": (1, "H", "W")})
    assert free.symbolic_shapes()[free.graph.outputs["logits"]] == (2, "16·⌊(H - 12)/16⌋ - 172", "16·⌊(W - 12)/16⌋ - 172")


def test_strided_valid_conv_keeps_the_floor(tmp_path):
    # narchi writes H/2 for an unpadded 3x3 stride-2 convolution; torch gives 4 at H = 10, i.e. floor((H - 3)/2) + 1
    p = tmp_path / "c.res"
    p.write_text("network c() {\n  input x: [3, 10, 10]\n  conv(8, 3, stride=2)\n  output y\n}\n")
    net = resdsl.load(p, input_shapes={"x": (3, "H", "W")})
    assert net.symbolic_shapes()[1] == (8, "⌊(H - 1)/2⌋", "⌊(W - 1)/2⌋")
    assert net.nodes[1].shape == (8, 4, 4)


def test_constraint_makes_the_formula_exact():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=50, input_shapes={"x": (3, "H%32", "W%32")})
    shapes = net.symbolic_shapes()
    last = next(n.id for n in reversed(net.nodes) if n.shape == (2048, 7, 7))
    assert shapes[last] == (2048, "H/32", "W/32")
    free = resdsl.load(ROOT / "examples/resnet.res", depth=50, input_shapes={"x": (3, "H", "W")}).symbolic_shapes()
    assert free[last] == (2048, "⌈H/32⌉", "⌈W/32⌉")


# ----------------------------------------------------------------- brute force


@pytest.mark.parametrize("path,kw", [("examples/cifar_resnet.res", {}), ("examples/resnet.res", {"depth": 18})])
def test_examples_agree_with_elaborating_every_size(path, kw):
    program = ROOT / path
    net = resdsl.load(program, **kw)
    assert_matches_brute_force(lambda shapes: resdsl.load(program, input_shapes=shapes, **kw), net, extra=1, dims=1)


def test_hourglass_pool_upsample_add_sizes():
    # maxpool floors and upsample doubles, so each of the 4 levels' skip adds needs an even size: by
    # elaboration the network runs exactly at 63..66 + 64k (the stem's stride-2 conv and pool round
    # 4 neighbouring sizes onto one); sampled around two periods, plus the threshold region
    program = ROOT / "examples/hourglass.res"
    net = resdsl.load(program, stacks=1)
    d = net.valid_sizes().dims[0]
    assert str(d.valid) == "63 + 64k, multiples of 64, 65 + 64k, 66 + 64k" and str(d.unrounded) == "multiples of 64"
    sizes = list(range(56, 72)) + list(range(122, 132)) + [190, 191, 192, 193, 194, 195]
    valid, unrounded = brute_force(lambda shapes: resdsl.load(program, input_shapes=shapes, stacks=1), net, d, sizes)
    assert {v for v in sizes if v in d.valid} == valid and {v for v in sizes if v in d.unrounded} == unrounded


def test_small_unet_agrees_with_elaborating_every_size(tmp_path):
    p = tmp_path / "u.res"
    p.write_text(UNET)
    assert_matches_brute_force(lambda shapes: resdsl.load(p, input_shapes=shapes), resdsl.load(p))


LAYERS = [
    "conv(4, {k}, stride={s}, padding={p})",
    "conv(4, {k}, stride={s}, padding={p}, dilation=2)",
    "maxpool({k}, stride={s}, padding={hp})",
    "maxpool({k}, stride={s}, padding={hp}, ceil_mode=true)",
    "avgpool({k}, stride={s}, padding={hp}, ceil_mode=true)",
    "conv_transpose(4, {k}, stride={s}, padding={hp})",
    "upsample(scale_factor=2)",
    "batchnorm()",
]


def random_network(rng: random.Random) -> str:
    lines, bound = [], 0
    for i in range(rng.randint(2, 7)):
        k, s = rng.randint(1, 4), rng.randint(1, 3)
        layer = rng.choice(LAYERS).format(k=k, s=s, p=rng.randint(0, 2), hp=rng.randint(0, k // 2))
        if rng.random() < 0.3:  # a skip around the layer: add needs equal sizes, concat(crop=true) centers
            merge = rng.choice(["add(t{i})", "concat(t{i}, crop=true)"]).format(i=i)
            lines += [f"conv(4, 1) -> t{i}", layer.replace("conv(4", "conv(4").replace("(4,", "(4,"), merge]
        else:
            lines.append(layer)
    return "network r() {\n  input x: [4, 40, 40]\n  " + "\n  ".join(lines) + "\n  output y\n}\n"


def test_random_networks_agree_with_elaborating_every_size():
    rng = random.Random(7)
    checked = 0
    for _ in range(60):
        text = random_network(rng)
        try:
            net = resdsl.loads(text)
        except ResdslError:
            continue  # not buildable at 40: the valid set is still derivable, but brute force needs an IR
        assert_matches_brute_force(lambda shapes: resdsl.loads(text, input_shapes=shapes), net, extra=1)
        checked += 1
    assert checked >= 25


# ----------------------------------------------------------------- torch


def _eval_formula(text: str, **sizes) -> int:
    """Evaluate a printed formula: ⌊a/b⌋, ⌈a/b⌉, a/b (exact), k·x."""
    py = re.sub(r"(\d)([A-Z])", r"\1*\2", text.replace("·", "*"))  # 12H means 12*H
    py = re.sub(r"⌈([^⌉]*)/(\d+)⌉", r"(-(-(\1)//\2))", py)
    py = re.sub(r"⌊([^⌋]*)/(\d+)⌋", r"((\1)//\2)", py)
    for num, n in re.findall(r"(\([^()]*\)|[A-Z])/(\d+)", py):  # an exact division must be exact
        assert eval(num, {}, dict(sizes)) % int(n) == 0, (text, sizes)
    py = re.sub(r"(\([^()]*\)|[A-Z])/(\d+)", r"(\1//\2)", py)
    assert re.fullmatch(r"[0-9A-Z+\-*/() ]*", py), py
    return eval(py, {}, dict(sizes))  # the test's own formula text: digits, H/W and operators only


@pytest.mark.parametrize("path,kw,spec", [
    ("examples/resnet.res", {"depth": 18}, ("H", "W")),
    ("examples/unet.res", {}, ("H", "W")),
    ("examples/cifar_resnet.res", {}, ("H", "W")),
    ("examples/densenet.res", {"depth": 121}, ("H", "W")),
])
def test_shapes_equal_torch_meta_shapes_at_random_sizes(path, kw, spec):
    import torch

    c = resdsl.load(ROOT / path, **kw).inputs["x"][0]
    net = resdsl.load(ROOT / path, input_shapes={"x": (c, *spec)}, **kw)
    out = net.graph.outputs[next(iter(net.graph.outputs))]
    formula = net.symbolic_shapes()[out]
    dims = net.valid_sizes().dims
    rng = random.Random(3)
    for _ in range(4):
        H, W = (rng.choice([v for v in range(d.threshold, d.threshold + 4 * d.period) if v in d.valid])
                for d in dims)
        # compiled at that size (a center crop is a fixed slice in the generated code), run by torch on meta
        model = resdsl.load(ROOT / path, input_shapes={"x": (c, H, W)}, **kw).to_torch().to("meta").eval()
        want = tuple(model(torch.empty(1, c, H, W, device="meta")).shape[1:])
        assert want[1:] == (dims[0].shape_at(out, H)[1], dims[1].shape_at(out, W)[2]) if len(want) == 3 else True
        if len(want) == 3:
            assert (_eval_formula(formula[1], H=H), _eval_formula(formula[2], W=W)) == want[1:], formula


def test_every_layer_formula_equals_torch_hooks():
    import torch

    net = resdsl.load(ROOT / "examples/resnet.res", depth=18, input_shapes={"x": (3, "H", "W")})
    model = net.to_torch().to("meta").eval()
    seen = {}
    for name, m in model.named_modules():
        if name and not list(m.children()):
            m.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:])))
    H, W = 201, 333  # odd sizes: every stride-2 stage rounds
    model(torch.empty(1, 3, H, W, device="meta"))
    shapes = net.symbolic_shapes()
    compared = 0
    for n in net.nodes:
        if n.name in seen and len(n.shape) == 3:
            f = shapes[n.id]
            assert (_eval_formula(str(f[1]), H=H), _eval_formula(str(f[2]), W=W)) == seen[n.name][1:], (n.name, f)
            compared += 1
    assert compared >= 40


# ----------------------------------------------------------------- work bounds and the interface


def test_work_is_bounded_by_counts():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=152)
    a = net.valid_sizes().dims[0]
    assert a.exact and a.period == 32 and a.runs <= 40  # graph passes, deterministic
    again = resdsl.load(ROOT / "examples/resnet.res", depth=152).valid_sizes().dims[0]
    assert (again.runs, str(again.valid), str(again.unrounded)) == (a.runs, str(a.valid), str(a.unrounded))


def test_not_affine_is_said_and_still_decided(tmp_path):
    p = tmp_path / "f.res"
    p.write_text("network f() {\n  input x: [3, 8, 8]\n  conv(4, 3, stride=2) -> a\n  upsample(scale_factor=1.5)\n"
                 "  output y\n}\n")
    net = resdsl.load(p)
    d = net.valid_sizes().dims[0]
    assert not d.exact and "scaling a size by 1.5" in d.why
    valid, unrounded = brute_force(lambda shapes: resdsl.load(p, input_shapes=shapes), net, d, range(1, 41))
    assert {v for v in range(1, 41) if v in d.valid} == valid == set(range(3, 41))


def test_symbols_parse():
    assert parse_symbol("H") .modulus == 1 and parse_symbol("H%32").modulus == 32
    s = parse_symbol("H%16=12")
    assert (s.name, s.modulus, s.residue) == ("H", 16, 12)
    assert parse_symbol("3") is None and parse_symbol("H%0") is None and parse_symbol("H%x") is None


def test_cli_sizes_json_and_text(capsys):
    assert main(["check", str(ROOT / "examples/unet.res"), "--sizes", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["unrounded"]["progressions"] for d in data["dims"]] == [[{"start": 188, "step": 16}]] * 2
    assert data["dims"][0]["unrounded"]["smallest"][:3] == [188, 204, 220]
    assert main(["check", str(ROOT / "examples/resnet.res"), "--sizes", "--input", "x=3,450,600"]) == 0
    out = capsys.readouterr().out
    assert "nothing rounded for multiples of 32" in out and "448 below, 480 above" in out and "576 below, 608 above" in out


def test_cli_summary_symbolic(capsys):
    assert main(["summary", str(ROOT / "examples/resnet.res"), "--set", "depth=50", "--input", "x=3,H%32,W%32",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"][-4]["symbolic_shape"] == [2048, "H/32", "W/32"]
    assert data["symbols"] == {"x[1]": "H%32", "x[2]": "W%32"}
    assert main(["summary", str(ROOT / "examples/resnet.res"), "--input", "x=3,H,W", "--depth", "1"]) == 0
    assert "[2048, ⌈H/32⌉, ⌈W/32⌉]" in capsys.readouterr().out
    assert main(["summary", str(ROOT / "examples/resnet.res"), "--input", "x=3,H%,W"]) == 2


def test_invalid_declared_size_names_the_nearest_valid_ones():
    with pytest.raises(ResdslError) as e:
        resdsl.load(ROOT / "examples/unet.res", input_shapes={"x": (1, 180, 572)})
    d = e.value.first
    assert d.code == "E034" and "x dim 1 = 180 is not a valid size (H: any size >= 188); nearest: 188 above" in d.hint


def test_check_warns_when_sizes_round(capsys):
    assert main(["check", str(ROOT / "examples/resnet.res"), "--input", "x=3,450,600"]) == 0
    err = capsys.readouterr().err
    assert "warning: at input x: [3, 450, 600], 9 op(s) round sizes; the first is maxpool" in err
    assert main(["check", str(ROOT / "examples/resnet.res")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_input_shape_override_matches_torch_shapes():
    import torch
    import torchvision

    net = resdsl.load(ROOT / "examples/resnet.res", depth=18, input_shapes={"x": (3, 450, 600)})
    model = torchvision.models.resnet18().to("meta")
    seen = {}
    for name in ("maxpool", "layer2", "layer3", "layer4"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:])))
    model(torch.empty(1, 3, 450, 600, device="meta"))
    static = {n.name: n.shape for n in net.nodes}
    assert static["maxpool"] == seen["maxpool"] == (64, 113, 150)
    for stage, last in (("layer2", "layer2.1.relu_1"), ("layer3", "layer3.1.relu_1"), ("layer4", "layer4.1.relu_1")):
        assert static[last] == seen[stage]


def test_input_shape_override_errors():
    with pytest.raises(ResdslError) as e:
        resdsl.load(ROOT / "examples/resnet.res", input_shapes={"y": (3, 8, 8)})
    assert e.value.first.code == "E018" and "no input `y`" in e.value.first.message
    with pytest.raises(ResdslError) as e:
        resdsl.load(ROOT / "examples/resnet.res", input_shapes={"x": (3, 8)})
    assert e.value.first.code == "E014"


def test_render_labels_edges_with_formulas():
    from resdsl.render import diagram

    net = resdsl.load(ROOT / "examples/resnet.res", depth=18, input_shapes={"x": (3, "H", "W")})
    labels = {e.label for e in diagram(net, "block").edges}
    assert {"3×H×W", "64×⌈H/2⌉×⌈W/2⌉", "512×⌈H/32⌉×⌈W/32⌉", "512×1×1"} <= labels
    plain = {e.label for e in diagram(resdsl.load(ROOT / "examples/resnet.res", depth=18), "block").edges}
    assert "512×7×7" in plain and not any("H" in x for x in plain)


def test_random_networks_formulas_equal_torch_at_random_sizes():
    import torch

    rng = random.Random(11)
    compared = printed = 0
    for _ in range(40):
        text = random_network(rng)
        try:
            net = resdsl.loads(text, input_shapes={"x": (4, "H", 40)})
        except ResdslError:
            continue
        d = net.valid_sizes().dims[0]
        sizes = [v for v in range(d.threshold, d.threshold + 3 * d.period) if v in d.valid][:3]
        if not d.exact or not sizes:
            continue
        out = net.graph.outputs["y"]
        formula = net.symbolic_shapes()[out][1]
        for H in sizes:  # compiled at each size: center crops are fixed slices in the generated code
            model = resdsl.loads(text, input_shapes={"x": (4, H, 40)}).to_torch().to("meta").eval()
            got = model(torch.empty(2, 4, H, 40, device="meta")).shape[2]
            assert got == d.shape_at(out, H)[1], (text, H)
            if "depends on" not in str(formula):  # no closed form printed: the value is still exact
                assert got == _eval_formula(str(formula), H=H), (text, H, formula)
                printed += 1
            compared += 1
    assert compared >= 30 and printed >= 25


def test_constrained_formulas_are_simplified_and_equal_torch():
    """Under a residue class a floor with one offset on every valid size is an exact division and is
    printed as one (H/8 - 1, not the equal but opaque floor of (H - 1)/8); random networks under random
    classes: every printed formula, evaluated with exact-division checks, equals torch's meta shapes."""
    import torch

    text = ("network n() {\n    input x: [3, 224, 224]\n    conv(16, 3, stride=2, padding=1)\n"
            "    maxpool(3, stride=2, padding=1)\n    conv(32, 3, stride=2)\n    output y\n}\n")
    at = {"H%32": "H/8 - 1", "H%16=12": "(H - 4)/8", "H": "⌊(H - 1)/8⌋"}
    for spec, want in at.items():
        net = resdsl.loads(text, input_shapes={"x": (3, spec, 64)})
        assert net.symbolic_shapes()[net.graph.outputs["y"]][1] == want
    rng = random.Random(5)
    printed = 0
    for _ in range(40):
        text = random_network(rng)
        m = rng.choice([2, 4, 8, 16])
        r = rng.randrange(m)
        try:
            net = resdsl.loads(text, input_shapes={"x": (4, f"H%{m}={r}" if r else f"H%{m}", 40)})
        except ResdslError:
            continue
        d = net.valid_sizes().dims[0]
        if not d.exact:
            continue
        sizes = [v for v in range(d.threshold, d.threshold + 4 * d.period) if v in d.valid and v % m == r][:2]
        out = net.graph.outputs["y"]
        formula = str(net.symbolic_shapes()[out][1])
        for H in sizes:
            model = resdsl.loads(text, input_shapes={"x": (4, H, 40)}).to_torch().to("meta").eval()
            got = model(torch.empty(2, 4, H, 40, device="meta")).shape[2]
            if "depends on" not in formula:
                assert got == _eval_formula(formula, H=H), (text, m, r, H, formula)
                printed += 1
    assert printed >= 20


# ----------------------------------------------------------------- named sizes in the file, ties, joint sets


def brute_grid(text: str, names: dict, ranges: dict, base: dict | None = None) -> set[tuple]:
    """Valid combinations by elaborating at each: names maps (input, dim) -> size name; ranges name -> sizes;
    the other dims at the sizes of `base` (default: the file's)."""
    from itertools import product

    base = base or resdsl.loads(text).inputs
    order = list(ranges)
    out = set()
    for combo in product(*(ranges[n] for n in order)):
        val = dict(zip(order, combo))
        shapes = {k: list(v) for k, v in base.items()}
        for (inp, d), n in names.items():
            shapes[inp][d] = val[n]
        try:
            resdsl.loads(text, input_shapes={k: tuple(v) for k, v in shapes.items()})
        except ResdslError:
            continue
        out.add(combo)
    return out


def test_named_sizes_in_the_file_equal_the_command_line_form():
    text = (ROOT / "examples/resnet.res").read_text().replace("input x: [3, size, size]",
                                                              "input x: [3, H, W] where H % 32 == 0")
    assert "where" in text
    named = resdsl.loads(text, depth=50)
    cli = resdsl.load(ROOT / "examples/resnet.res", depth=50, input_shapes={"x": (3, "H%32", "W")})
    assert named.symbolic_shapes() == cli.symbolic_shapes()
    assert [str(d.valid) for d in named.valid_sizes().dims] == [str(d.valid) for d in cli.valid_sizes().dims]
    last = next(n.id for n in reversed(named.nodes) if n.shape == (2048, 7, 7))
    assert named.symbolic_shapes()[last] == (2048, "H/32", "⌈W/32⌉")
    assert named.inputs["x"] == (3, 224, 224)  # the documented example size (224, moved onto H % 32 == 0)


TRANSPOSE = """network a() {{
  input x: [3, H, W]{where}
  conv(8, 3, padding=1) -> t
  transpose(1, 2)
  add(t)
  output y
}}
"""


def test_transpose_then_merge_ties_the_sizes():
    # undeclared: H and W meet at the add; decided together on a grid, which brute force confirms
    text = TRANSPOSE.format(where="")
    rep = resdsl.loads(text).valid_sizes()
    assert not rep.dims and len(rep.joint) == 1
    j = rep.joint[0]
    assert j.names == ["H", "W"] and j.relation == "W = H" and j.node.startswith("add")
    sub = range(1, 13)
    want = brute_grid(text, {("x", 1): "H", ("x", 2): "W"}, {"H": sub, "W": sub})
    assert {p for p in j.valid if p[0] in sub and p[1] in sub} == want == {(h, h) for h in sub}
    # they meet in an equality: the joint set is exact beyond the grid too
    assert j.exact and j.rule() == "W = H, for H: any size" and "exact: they must agree there" in str(j)
    assert (100_001, 100_001) in j and (100_001, 100_002) not in j
    # declared: exact, one size
    tied = resdsl.loads(TRANSPOSE.format(where=" where W == H"))
    d, = tied.valid_sizes().dims
    assert d.exact and str(d.valid) == "any size" and d.tied == (("x", 2, 1, 0),)
    assert tied.symbolic_shapes()[-1] == (8, "H", "H")
    import torch

    text = TRANSPOSE.format(where=" where W == H")
    for H in (5, 17, 64):  # torch on the meta device agrees, and breaks off the line
        model = resdsl.loads(text, input_shapes={"x": (3, H, H)}).to_torch().to("meta")
        assert tuple(model(torch.empty(1, 3, H, H, device="meta")).shape[1:]) == d.shape_at(tied.nodes[-1].id, H)
        with pytest.raises(RuntimeError):
            model(torch.empty(1, 3, H, H + 1, device="meta"))


TWO_INPUTS = """network t() {
  input x: [3, H, W]
  input y: [3, H2, W2]
  conv(8, 3, padding=1) -> a
  from y
  conv(8, 3, stride=2, padding=1)
  upsample(scale_factor=2)
  add(a)
  output z
}
"""


def test_two_inputs_meeting_after_a_stride_are_decided_together():
    # by hand: the y path gives 2 * ceil(H2 / 2), which must equal H: H even and H2 in {H - 1, H}
    rep = resdsl.loads(TWO_INPUTS).valid_sizes()
    assert [j.names for j in rep.joint] == [["H", "H2"], ["W", "W2"]]
    j = rep.joint[0]
    assert j.relation == "H2 = H - 1 or H2 = H"
    sub = range(1, 11)
    want = brute_grid(TWO_INPUTS, {("x", 1): "H", ("y", 1): "H2"}, {"H": sub, "H2": sub})
    assert {p for p in j.valid if p[0] in sub and p[1] in sub} == want == \
        {(h, h2) for h in sub for h2 in sub if h % 2 == 0 and h2 in (h - 1, h)}
    # each line is then analysed exactly (beyond the grid too): brute force far out agrees
    assert [(t, str(a.valid), a.exact) for t, a in j.lines] == [("H2 = H - 1", "multiples of 2", True),
                                                                 ("H2 = H", "multiples of 2", True)]
    cand = {"H": [1000, 1001, 1002], "H2": [998, 999, 1000, 1001, 1002]}
    far = brute_grid(TWO_INPUTS, {("x", 1): "H", ("y", 1): "H2"}, cand)
    assert far == {(1000, 999), (1000, 1000), (1002, 1001), (1002, 1002)}
    assert j.exact and {(a, b) for a in cand["H"] for b in cand["H2"] if (a, b) in j} == far
    assert j.rule() == "H2 = H + D with D in {-1..0}, for H: multiples of 2"


def test_declared_affine_ties_are_exact_and_equal_torch():
    import torch

    text = TWO_INPUTS.replace("input y: [3, H2, W2]", "input y: [3, H2, W2] where H2 == H - 1, W2 == W")
    net = resdsl.loads(text)
    rep = net.valid_sizes()
    assert not rep.joint and [d.symbol for d in rep.dims] == ["H", "W"]
    h, w = rep.dims
    # H2 = H - 1 needs 2 * ceil((H - 1) / 2) = H: H even (and H - 1 >= 1); W2 = W needs W even
    assert str(h.valid) == "multiples of 2" and str(w.valid) == "multiples of 2"
    assert h.tied == (("y", 1, 1, -1),) and w.tied == (("y", 2, 1, 0),)
    sub = range(1, 15)
    want = brute_grid(TWO_INPUTS, {("x", 1): "H", ("y", 1): "H2"}, {"H": sub, "H2": sub})
    assert {H for H in sub if H in h.valid} == {H for H, H2 in want if H2 == H - 1}
    out = net.graph.outputs["z"]
    assert net.symbolic_shapes()[out] == (8, "H", "W")
    for H, W in ((10, 14), (32, 6)):
        m = resdsl.loads(text, input_shapes={"x": (3, H, W), "y": (3, H - 1, W)}).to_torch().to("meta")
        got = m(torch.empty(1, 3, H, W, device="meta"), torch.empty(1, 3, H - 1, W, device="meta")).shape
        assert tuple(got[1:]) == (8, h.shape_at(out, H)[1], w.shape_at(out, W)[2]) == (8, H, W)


def test_an_input_dim_written_as_an_expression_ties_it():
    text = """network e() {
  input x: [3, H, W]
  input y: [3, 2 * H, 2 * W]
  conv(8, 3, padding=1) -> a
  from y
  conv(8, 3, stride=2, padding=1)
  add(a)
  output z
}
"""
    net = resdsl.loads(text)
    h, w = net.valid_sizes().dims
    assert h.tied == (("y", 1, 2, 0),) and net.inputs["y"] == (3, 448, 448)
    # by hand: floor((2H - 1) / 2) + 1 = H for every H; brute force over (H, H2) finds H2 in {2H - 1, 2H}
    assert str(h.valid) == "any size" and str(h.unrounded) == "any size"
    free = text.replace("[3, 2 * H, 2 * W]", "[3, H2, W2]")
    base = {"x": (3, 10, 10), "y": (3, 20, 20)}
    want = brute_grid(free, {("x", 1): "H", ("y", 1): "H2"}, {"H": range(1, 12), "H2": range(1, 25)}, base)
    assert want == {(H, H2) for H in range(1, 12) for H2 in (2 * H - 1, 2 * H)}
    # undeclared, the named sizes at their example (224 each) do not fit: a located error ...
    with pytest.raises(ResdslError) as e:
        resdsl.loads(free)
    assert e.value.first.code == "E032" and e.value.first.span.line == 7
    assert "named sizes were built at the example H = 224, W = 224, H2 = 224, W2 = 224" in e.value.first.hint
    assert resdsl.loads(free.replace("[3, H2, W2]", "[3, H2, W2] where H2 == 2 * H, W2 == 2 * W")).valid_sizes().dims
    # ... and given sizes that fit, the four sizes are decided together on the grid
    joint = resdsl.loads(free, input_shapes=base).valid_sizes().joint
    assert [j.relation for j in joint] == ["H_y = 2H_x - 1 or H_y = 2H_x", "W_y = 2W_x - 1 or W_y = 2W_x"]
    assert {p for p in joint[0].valid if p[0] < 12 and p[1] < 25} == want
    j = joint[0]
    assert j.exact and j.rule() == "H_y = 2H_x + D with D in {-1..0}, for H_x: any size"
    assert (5000, 9999) in j and (5000, 10000) in j and (5000, 10001) not in j and (5001, 9999) not in j


def test_a_product_of_sizes_is_said_and_enumerated():
    text = """network b() {
  input x: [3, H, W]
  conv(8, 16, stride=16)
  flatten(start_dim=1)
  unflatten(1, [14, 14])
  output y
}
"""
    rep = resdsl.loads(text).valid_sizes()
    j, = rep.joint
    assert j.node.startswith("unflatten") and "not exact" in str(j) and j.bound == 512
    # by hand: floor(H / 16) * floor(W / 16) = 196 = 2^2 * 7^2, each factor at most 32 on the grid
    want = {(H, W) for H in range(1, 513) for W in range(1, 513) if (H // 16) * (W // 16) == 196}
    assert set(j.valid) == want and len(want) == 3 * 256
    # and elaborating a sample of them, and of their neighbours, agrees
    sample = brute_grid(text, {("x", 1): "H", ("x", 2): "W"}, {"H": range(222, 226), "W": range(222, 226)})
    assert sample == {p for p in want if 222 <= p[0] < 226 and 222 <= p[1] < 226}


STRUCTURE = """network s() {
  input x: [3, H, 64]
  if H > 64 {
    conv(8, 3, stride=2, padding=1)
  } else {
    conv(8, 3)
  }
  conv(8, 3, stride=2, padding=1)
  output y
}
"""


def test_structure_that_reads_a_size_is_decided_by_building():
    net = resdsl.loads(STRUCTURE)
    d, = net.valid_sizes().dims
    assert not d.exact and "the structure reads H at <string>:3:6" in d.why
    sizes = range(1, 129)
    valid, unrounded = set(), set()
    for H in sizes:
        try:
            g = resdsl.loads(STRUCTURE, input_shapes={"x": (3, H, 64)}).graph
        except ResdslError:
            continue
        valid.add(H)
        if not [p for p in problems(g) if p.dim == 0]:
            unrounded.add(H)
    assert {H for H in sizes if H in d.valid} == valid and {H for H in sizes if H in d.unrounded} == unrounded
    # by hand: above 64 two stride-2 convs need H = 0 mod 4; up to 64 the 3x3 conv and one stride-2 conv need
    # H - 2 even.  The structure built at the example (H = 224) alone would claim multiples of 4 everywhere.
    assert all(v in d.unrounded for v in (6, 62, 64, 68, 128)) and not any(v in d.unrounded for v in (5, 66, 70))
    naive = analyze_dim(net.graph, net.graph.inputs["x"], 1, "H")
    assert str(naive.unrounded) == "multiples of 4" and 62 not in naive.unrounded


def test_named_size_errors_are_located_with_hints():
    bad = [("input x: [3, H, W] where H * W == 4", "E014", "product of two sizes"),
           ("input x: [3, H, W] where H // 2 == 4", "E014", "a sum of sizes times whole numbers"),
           ("input x: [C, H, W]", "E010", "undefined name `C`"),
           ("input x: [3, H, W] where H % 0 == 1", "E014", "residue constraint"),
           ("input x: [3, H, W] where W == 2 * H + 1, W % 4 == 0", "E042", "leave no value for H"),
           ("input x: [3, H, W] where H >= 100, H < 50", "E042", "leave no value for H (100 <= H <= 49)"),
           ("input x: [3, H, W] where 2 * H + 1 % 4 == 1", "E042", "never holds")]
    for line, code, text in bad:
        with pytest.raises(ResdslError) as e:
            resdsl.loads(f"network n() {{\n  {line}\n  conv(4, 3)\n  output y\n}}\n")
        d = e.value.first
        assert d.code == code and text in d.message and d.span.line == 2 and d.hint, (line, d)
    with pytest.raises(ResdslError) as e:  # a typo of a parameter is not a new size
        resdsl.loads("network n(size = 32) {\n  input x: [3, sise, size]\n  conv(4, 3)\n  output y\n}\n")
    assert e.value.first.code == "E010" and "did you mean `size`?" in e.value.first.hint
    src = "network n() {\n  input x: [3, H, W] where H % 32 == 0, W == H\n  conv(4, 3)\n  output y\n}\n"
    with pytest.raises(ResdslError) as e:
        resdsl.loads(src, input_shapes={"x": (3, 225, 225)})
    d = e.value.first
    assert d.code == "E042" and "H must be 0 mod 32" in d.message and d.span.line == 2 and d.span.col == 16
    with pytest.raises(ResdslError) as e:
        resdsl.loads(src, input_shapes={"x": (3, 224, 192)})
    assert "it must equal H = 224" in e.value.first.message
    with pytest.raises(ResdslError) as e:
        resdsl.loads(src, input_shapes={"x": (3, 225, 225)})
    assert "the nearest values of H that satisfy them: 224 and 256" in e.value.first.hint
    ok = resdsl.loads(src, input_shapes={"x": (3, 192, 192)})  # the hint's way out: sizes that satisfy them
    assert ok.inputs["x"] == (3, 192, 192) and not ok.size_vars


def test_named_sizes_format_and_expand_round_trip(tmp_path):
    from resdsl.fmt import format_source

    src = "network n() {\n  input x: [3,H,W]   where H%32==0,W==H\n  conv(8, 3, stride=2, padding=1)\n  output y\n}\n"
    out = format_source(src)
    assert "    input x: [3, H, W] where H % 32 == 0, W == H\n" in out and format_source(out) == out
    net = resdsl.loads(out)
    again = resdsl.loads(net.expand())
    assert "input x: [3, H, W] where H % 32 == 0, W == H" in net.expand()
    assert again.symbolic_shapes() == net.symbolic_shapes() == [(3, "H", "H"), (8, "H/2", "H/2")]
    assert [str(d.valid) for d in again.valid_sizes().dims] == ["multiples of 32"]
    for where in ("(2 * H + 1) % 4 == 3, H >= 64", "W == 2 * (H - 1) + 3, H < 100"):  # precedence survives
        net = resdsl.loads(f"network n() {{\n  input x: [3, H, W] where {where}\n  conv(4, 3)\n  output y\n}}\n")
        assert f"input x: [3, H, W] where {where}" in net.expand()
        assert resdsl.loads(net.expand()).size_vars == net.size_vars


def test_check_on_named_sizes(capsys, tmp_path):
    p = tmp_path / "n.res"
    p.write_text("network n() {\n  input x: [1, H, W]\n  conv(4, 3, stride=2, padding=1)\n  flatten()\n"
                 "  linear(10)\n  output y\n}\n")
    assert main(["check", str(p)]) == 0
    out = capsys.readouterr().out
    # the linear layer's in_features is 4 * ceil(H/2) * ceil(W/2): its parameters depend on the size
    assert "params at the example size; they depend on the size: linear" in out and "-> y: [10]" in out
    assert "H: runs for any size" in out and "example x: [1, 224, 224]" in out
    p.write_text("network n() {\n  input x: [1, H, W] where H % 8 == 0\n  conv(4, 3, stride=2, padding=1)\n"
                 "  output y\n}\n")
    assert main(["check", str(p)]) == 0
    out = capsys.readouterr().out
    assert "40 params for every size) -> y: [4, H/2, ⌈W/2⌉]" in out and "H: runs for multiples of 8" in out
    assert main(["check", str(p), "--sizes", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dims"][0]["valid"]["progressions"] == [{"start": 8, "step": 8}] and data["joint"] == []


def test_sizes_that_meet_without_constraining_each_other_keep_their_sets():
    # ViT: the token count (H/16)(W/16) meets the `token` op's index check, which any valid pair passes;
    # by hand a 16x16 stride-16 patchify runs from 16 and rounds nothing at multiples of 16
    program = ROOT / "examples/vit.res"
    rep = resdsl.load(program).valid_sizes()
    assert [(str(d.valid), str(d.unrounded), d.exact) for d in rep.dims] == [("any size >= 16", "multiples of 16", True)] * 2
    j, = rep.joint
    assert j.names == ["H", "W"] and j.node.startswith("token") and len(j.valid) == (512 - 15) ** 2
    assert any("every combination of their valid sizes up to 512 is valid" in n for n in rep.notes)
    want = brute_grid(program.read_text(), {("x", 1): "H", ("x", 2): "W"}, {"H": (15, 16, 40), "W": (15, 33)})
    assert want == {(16, 33), (40, 33)}


def test_one_name_for_two_dims_ties_them_on_the_command_line(capsys, tmp_path):
    p = tmp_path / "two.res"
    p.write_text(TWO_INPUTS.replace("[3, H, W]", "[3, 32, 32]").replace("[3, H2, W2]", "[3, 32, 32]"))
    assert main(["check", str(p), "--sizes", "--input", "x=3,H,W", "--input", "y=3,H,W"]) == 0
    out = capsys.readouterr().out
    assert "x dim 1 (H, now 32): runs for multiples of 2" in out and "y dim 1 follows it: H" in out
    assert "meet" not in out
    assert main(["check", str(p), "--input", "x=3,H,H", "--input", "y=3,H,H", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["symbolic_outputs"] == {"z": [8, "H", "H"]} and data["params_depend_on_size"] == "no"
    d, = data["sizes"]["dims"]
    assert d["valid_rule"] == "multiples of 2" and [(t["input"], t["dim"]) for t in d["tied"]] == [
        ("x", 2), ("y", 1), ("y", 2)]


BAND = """network band() {
  input x: [3, H, W]
  conv(8, 3, stride=2, padding=1)
  conv(8, 3, stride=2, padding=1)
  conv(8, 3, stride=2, padding=1) -> t
  transpose(1, 2)
  add(t)
  output y
}
"""


def test_sizes_that_meet_after_strides_form_an_exact_band():
    # by hand: three padded 3x3 stride-2 convs give ceil(L / 8); the transposed add needs ceil(H / 8) = ceil(W / 8)
    j, = resdsl.loads(BAND).valid_sizes().joint
    assert j.exact and sorted(j.pair.lines) == list(range(-7, 8))
    sub = range(1, 30)
    want = brute_grid(BAND, {("x", 1): "H", ("x", 2): "W"}, {"H": sub, "W": sub})
    assert want == {(h, w) for h in sub for w in sub if -(-h // 8) == -(-w // 8)}
    assert {(h, w) for h in sub for w in sub if (h, w) in j} == want
    far = [(1001, 1003), (1000, 1001), (1000, 993), (992, 993), (8 * 10**6, 8 * 10**6 - 7)]
    assert [p in j for p in far] == [-(-h // 8) == -(-w // 8) for h, w in far] == [True, False, True, False, True]
    for h, w in far[:2]:  # and elaboration far from the grid agrees
        assert bool(brute_grid(BAND, {("x", 1): "H", ("x", 2): "W"}, {"H": [h], "W": [w]})) == ((h, w) in j)


def random_pair_network(rng: random.Random) -> str:
    """Two inputs, each through a few random layers, added: their sizes meet at the add."""
    def path():
        out = []
        for _ in range(rng.randint(1, 3)):
            k, st = rng.randint(1, 4), rng.randint(1, 3)
            out.append(rng.choice(LAYERS[:6]).format(k=k, s=st, p=rng.randint(0, 2), hp=rng.randint(0, k // 2)))
        return out
    lines = ["conv(4, 1)"] + path() + ["-> a", "from y", "conv(4, 1)"] + path() + ["add(a)"]
    return "network r() {\n  input x: [4, 40, 40]\n  input y: [4, 40, 40]\n  " + "\n  ".join(lines) + \
        "\n  output z\n}\n"


def test_random_pairs_meeting_at_an_add_agree_with_elaborating():
    rng = random.Random(5)
    checked = swapped = fractional = 0
    for _ in range(40):
        text = random_pair_network(rng)
        base = None
        for b in range(1, 160):  # any pair of declared sizes at which it builds (the analysis needs an IR)
            try:
                resdsl.loads(text, input_shapes={"x": (4, 40, 40), "y": (4, b, b)})
                base = {"x": (4, 40, 40), "y": (4, b, b)}
                break
            except ResdslError:
                continue
        if base is None:
            continue
        rep = resdsl.loads(text, input_shapes=base).valid_sizes()
        j = next((j for j in rep.joint if j.names == ["H_x", "H_y"]), None)
        if j is None or not j.exact:
            continue
        names = {("x", 1): "H", ("y", 1): "H2"}
        sub = {"H": range(1, 25), "H2": range(1, 25)}
        want = brute_grid(text, names, sub, base)
        assert {(a, b) for a in sub["H"] for b in sub["H2"] if (a, b) in j} == want, text
        far = [(a, b) for a in (301, 302, 303, 304) for b in range(1, 1300) if (a, b) in j][:3]
        far += [(a, b + 1) for a, b in far]
        got = brute_grid(text, names, {"H": sorted({a for a, _ in far}), "H2": sorted({b for _, b in far})}, base)
        assert {p for p in far if p in got} == {p for p in far if p in j}, text
        checked += 1
        swapped += j.pair.swapped
        fractional += j.pair.q > 1
    assert checked >= 30 and swapped >= 3 and fractional >= 3


def test_sizes_that_meet_with_a_fractional_slope_are_exact():
    # by hand: a padded 3x3 stride-2 conv gives ceil(H / 2), a stride-3 one ceil(H2 / 3); the add needs them equal
    text = """network r() {
  input x: [3, 40, 40]
  input y: [3, 60, 60]
  conv(8, 3, stride=2, padding=1) -> a
  from y
  conv(8, 3, stride=3, padding=1)
  add(a)
  output z
}
"""
    j = resdsl.loads(text).valid_sizes().joint[0]
    assert j.exact and (j.pair.p, j.pair.q) == (3, 2)
    assert all(((a, b) in j) == (-(-a // 2) == -(-b // 3)) for a in range(1, 120) for b in range(1, 180))
    far = [(a, b) for a in (10**6 + 1, 10**6 + 2) for b in range(1_499_995, 1_500_006)]
    assert all(((a, b) in j) == (-(-a // 2) == -(-b // 3)) for a, b in far)
    want = brute_grid(text, {("x", 1): "H", ("y", 1): "H2"}, {"H": range(1, 13), "H2": range(1, 19)})
    assert want == {(a, b) for a in range(1, 13) for b in range(1, 19) if -(-a // 2) == -(-b // 3)}


def test_cli_says_when_every_size_rounds(tmp_path, capsys):
    # The stride-2 conv and pool round odd sizes up, and then the unpadded stride-2 conv drops a pixel on
    # every size that reaches it even: some op rounds at every size.
    f = tmp_path / "r.res"
    f.write_text("network n() {\n    input x: [3, 64, 64]\n    conv(8, 3, stride=2, padding=1)\n"
                 "    maxpool(3, stride=2, padding=1)\n    conv(8, 3, stride=2)\n    output y\n}\n")
    assert main(["check", str(f), "--sizes"]) == 0
    out = capsys.readouterr().out
    assert "some op rounds at every size  [exact]" in out and "smallest: none" not in out
    net = resdsl.load(f, input_shapes={"x": (3, "H", 64)})
    assert net.valid_sizes().dims[0].unrounded.empty()


def test_compile_says_at_which_example_size_named_sizes_were_built(tmp_path, capsys):
    import torch

    f = tmp_path / "n.res"
    f.write_text("network n() {\n    input x: [3, H, W] where H % 32 == 0\n    conv(8, 3, stride=2, padding=1)\n"
                 "    output y\n}\n")
    out = tmp_path / "n.py"
    assert main(["compile", str(f), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: named sizes built at the example x: [3, 224, 224]" in err and "--sizes` lists the valid sizes" in err
    ns: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), ns)  # the file we just generated
    m = ns["N"]()
    assert m(torch.zeros(1, 3, 64, 96)).shape == (1, 8, 32, 48)  # another valid size: H = 64 (a multiple of 32)
    assert main(["compile", str(f), "--onnx", str(tmp_path / "n.onnx")]) in (0, 3)  # 3: no onnx installed
    assert "add --dynamic-size" in capsys.readouterr().err


def test_a_bound_that_leaves_a_few_sizes_names_them(tmp_path, capsys):
    f = tmp_path / "b.res"
    for where, text in [("H == 8", "runs for 8;"), ("H >= 4, H <= 40, H % 8 == 0", "runs for 8, 16, 24, 32, 40;"),
                        ("H <= 400", "runs for any size (up to 400);")]:
        f.write_text(f"network n() {{\n    input x: [3, H, 8] where {where}\n    conv(8, 3, padding=1)\n"
                     "    output y\n}\n")
        assert main(["check", str(f)]) == 0
        out = capsys.readouterr().out
        assert text in out, out
        valid = resdsl.load(f).valid_sizes().dims[0].valid
        sizes = [h for h in range(1, 450) if h in valid]
        assert sizes == {"H == 8": [8], "H <= 400": list(range(1, 401))}.get(where, [8, 16, 24, 32, 40])


def test_dynamic_size_without_an_export_is_a_usage_error(capsys):
    assert main(["compile", str(ROOT / "examples/unet.res"), "--dynamic-size"]) == 2
    assert "--dynamic-size applies to --onnx and --export only" in capsys.readouterr().err


def test_every_size_rounds_agrees_with_each_concrete_size(tmp_path):
    # Brute force for the case above, by the concrete per-size check (not the symbolic engine): the last
    # conv needs an even input to divide by its stride and an odd one to read every pixel, so each H rounds.
    from resdsl.analysis.sizes import problems

    text = ("network n() {\n    input x: [3, 64, 65]\n    conv(8, 3, stride=2, padding=1)\n"
            "    maxpool(3, stride=2, padding=1)\n    conv(8, 3, stride=2)\n    output y\n}\n")
    assert resdsl.loads(text, input_shapes={"x": (3, "H", 65)}).valid_sizes().dims[0].unrounded.empty()
    for H in range(9, 140):
        assert any(p.dim == 0 for p in problems(resdsl.loads(text, input_shapes={"x": (3, H, 65)}).graph)), H


# ------------------------------------------------------------------ issue-13 leftovers: hints that work when applied

UNNAMED = """network n() {{
    input x: [3, {dim}, W]{where}
    conv(8, 3, padding=1)
    output y
}}
"""


@pytest.mark.parametrize("dim,where,want", [
    ("2 * H + 1", "", "write the dimension as `H` and add `where H % 2 == 1, H >= 3` after the shape"),
    ("H * 2 + 1", "", "write the dimension as `H` and add `where H % 2 == 1, H >= 3` after the shape"),
    ("H + 4", "", "write the dimension as `H` and add `where H >= 5` after the shape"),
    ("3 * H - 7", "", "write the dimension as `H` and add `where H % 3 == 2` after the shape"),
    ("2 * H + 1", " where W % 2 == 0", "write the dimension as `H` and add `H % 2 == 1, H >= 3` to its `where`"),
])
def test_a_size_expression_over_an_unnamed_size_hints_the_rewrite(dim, where, want):
    """`[3, 2 * H + 1, W]` with H named nowhere: E010 at H with a hint; applied (the dim written as H, the
    constraints added), the file loads and its valid sizes are exactly the sizes c*H + e takes for H >= 1
    (checked against that closed form for every size up to 60)."""
    src = UNNAMED.format(dim=dim, where=where)
    with pytest.raises(ResdslError) as e:
        resdsl.loads(src, name="u.res")
    d = e.value.first
    col = src.split("\n")[1].index("H") + 1
    assert (d.code, d.span.line, d.span.col) == ("E010", 2, col)
    assert d.message == f"undefined name `H`: a size used in `{_lin_text(dim)}` must be named first"
    assert d.hint.startswith(want)
    added = re.search(r"add `(?:where )?([^`]*)`", d.hint).group(1)
    fixed = src.replace(dim, "H").replace(", W]" + where, ", W]" + (where + ", " + added if where else " where " + added))
    net = resdsl.loads(fixed, name="u.res")
    (h,) = [a for a in net.valid_sizes().dims if a.symbol == "H"]
    c, k = {"2 * H + 1": (2, 1), "H * 2 + 1": (2, 1), "H + 4": (1, 4), "3 * H - 7": (3, -7)}[dim]
    assert [v for v in range(1, 61) if v in h.valid] == sorted({c * x + k for x in range(1, 61) if 1 <= c * x + k <= 60})


def _lin_text(dim: str) -> str:
    return {"H * 2 + 1": "2 * H + 1"}.get(dim, dim)


def test_a_typo_inside_a_size_expression_is_named():
    with pytest.raises(ResdslError) as e:
        resdsl.loads("network n(size=8) {\n    input x: [3, 2 * H + sise, W]\n    output y\n}\n", name="u.res")
    d = e.value.first
    assert (d.code, d.span.line, d.span.col, d.message, d.hint) == ("E010", 2, 26, "undefined name `sise`",
                                                                     "did you mean `size`?")


CLASHING = "network n() {\n    input x: [3, H, W] where H % 8 == 4\n    conv(8, 3, padding=1)\n    output y\n}\n"


def test_a_command_line_class_the_constraints_never_allow_is_said_in_their_terms(tmp_path, capsys):
    """`--input x=3,H%16,W` on `where H % 8 == 4`: no multiple of 16 is 4 mod 8.  The message speaks of the
    class and the constraint the user wrote (it named "dimension 1 = 3648", the 16th multiple of the
    example it last tried); the hint's class, applied, checks."""
    f = tmp_path / "c.res"
    f.write_text(CLASHING)
    assert main(["check", str(f), "--input", "x=3,H%16,W"]) == 1
    err = capsys.readouterr().err
    assert f"{f}:2:18: error[E042]: the size `H%16` given for dimension 1 of input `x` (sizes that are 0 mod 16) " \
           "is never one its constraints allow: H % 8 == 4" in err
    assert "3648" not in err and "2 |     input x: [3, H, W] where H % 8 == 4\n  |                  ^\n" in err
    hint = re.search(r"hint: give a class they allow, e\.g\. `([^`]*)`", err).group(1)
    assert hint == "H%8=4"
    assert main(["check", str(f), "--input", f"x=3,{hint},W"]) == 0
    assert "H: runs for 4 + 8k" in capsys.readouterr().out
    # classes that meet the constraint still build: 12 mod 16 is 4 mod 8
    assert main(["check", str(f), "--input", "x=3,H%16=12,W"]) == 0
    assert "H: runs for 12 + 16k" in capsys.readouterr().out


# ------------------------------------------------------------------ the editor, diff and import on named sizes

NAMED = """network n() {
    input x: [3, H, W] where H % 8 == 4, W == H
    conv(8, 3, stride=2, padding=1)
    relu
    output y
}
"""


def test_editor_diagnostics_and_hover_over_named_sizes():
    """Hover gives the shape over the named sizes (the formula `check` prints) beside the example's; the
    diagnostics of bad `where` forms come located, as `check` gives them."""
    from resdsl import editor

    a = editor.analyze(NAMED, "n.res")
    assert a.diagnostics == [] and len(a.graphs) == 1
    net = resdsl.loads(NAMED, name="n.res")
    conv = next(n for n in net.graph.nodes if n.op == "conv")
    want = ", ".join(map(str, net.symbolic_shapes()[conv.id]))
    assert want == "8, H/2, H/2"
    assert editor.hover(a, 3, 6) == f"**conv**\n- `conv`: output `[{want}]` (`[8, 114, 114]` at the example size), 224 params"
    plain = editor.analyze(NAMED.replace("H, W] where H % 8 == 4, W == H", "16, 16]"), "n.res")
    assert editor.hover(plain, 3, 6) == "**conv**\n- `conv`: output `[8, 8, 8]`, 224 params"
    for bad, code in (("where H % 8 == 9", "E042"), ("where H * W == 4", "E014")):
        b = editor.analyze(NAMED.replace("where H % 8 == 4, W == H", bad), "n.res")
        with pytest.raises(ResdslError) as e:
            resdsl.loads(NAMED.replace("where H % 8 == 4, W == H", bad), name="n.res")
        assert [(d.code, d.span, d.message, d.hint) for d in b.diagnostics] == \
            [(d.code, d.span, d.message, d.hint) for d in e.value.diagnostics] and b.diagnostics[0].code == code


def test_diff_of_two_files_with_named_sizes_names_their_examples(tmp_path, capsys):
    """Two files whose constraints differ build at different examples (W == H: 228 x 228; none: 228 x 224):
    the table says so rather than presenting the example's difference as a change of the network."""
    a, b = tmp_path / "a.res", tmp_path / "b.res"
    a.write_text(NAMED)
    b.write_text(NAMED.replace("where H % 8 == 4, W == H", "where H % 16 == 4").replace("conv(8", "conv(16"))
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "note: a has named sizes (x: [3, H, W] where H % 8 == 4, W == H): its shapes, params and MACs are " \
           "those of the example x: [3, 228, 228]" in out
    assert "note: b has named sizes (x: [3, H, W] where H % 16 == 4): its shapes, params and MACs are those of " \
           "the example x: [3, 228, 224]" in out
    # the example's numbers, as the networks built at those sizes give them
    na = resdsl.loads(NAMED, name="a.res", input_shapes={"x": (3, 228, 228)})
    nb = resdsl.loads(b.read_text(), name="b.res", input_shapes={"x": (3, 228, 224)})
    assert f"params:   {na.param_count:>16,} -> {nb.param_count:>16,}" in out
    assert main(["diff", str(a), str(b), "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert (j["a"]["named_sizes"], j["a"]["inputs"], j["b"]["inputs"]) == \
        ("x: [3, H, W] where H % 8 == 4, W == H", {"x": [3, 228, 228]}, {"x": [3, 228, 224]})
    plain = tmp_path / "p.res"
    plain.write_text(NAMED.replace("H, W] where H % 8 == 4, W == H", "228, 228]"))
    assert main(["diff", str(plain), str(plain)]) == 0
    assert "named sizes" not in capsys.readouterr().out


def test_import_with_named_sizes_is_a_usage_error_whose_hint_works(tmp_path, capsys):
    """import traces at one size: `--input 3,H,W` is refused (exit 2, no traceback) and the hint's way --
    trace at a size, then name the sizes in the written file -- gives a file `check --sizes` analyses."""
    pytest.importorskip("torchvision")
    assert main(["import", "resnet18", "--input", "3,H,W"]) == 2
    err = capsys.readouterr().err
    assert "resdsl import: error: --input 3,H,W: the module is traced at one size, so --input takes numbers" in err
    assert "Traceback" not in err
    out = tmp_path / "r.res"
    assert main(["import", "resnet18", "--input", "3,224,224", "-o", str(out)]) == 0
    text = out.read_text()
    assert "input x: [3, 224, 224]" in text
    out.write_text(text.replace("input x: [3, 224, 224]", "input x: [3, H, W]"))
    capsys.readouterr()
    net = resdsl.load(out)
    (h, w) = net.valid_sizes().dims
    assert 1 in h.valid and 1 in w.valid and 32 in h.unrounded and 33 not in h.unrounded
    assert net.param_count == 11689512  # torchvision's resnet18


@pytest.mark.parametrize("dim", ["H // 2", "H * W"])
def test_an_unnamed_size_in_a_form_the_analysis_cannot_follow(dim):
    """`H // 2` or `H * W` over an unnamed H: E010 at H; the hint's rewrite (the dim written as `H`) loads."""
    src = UNNAMED.format(dim=dim, where="")
    with pytest.raises(ResdslError) as e:
        resdsl.loads(src, name="u.res")
    d = e.value.first
    assert (d.code, d.span.line, d.span.col, d.message) == \
        ("E010", 2, 18, "undefined name `H`: a size used in an expression must be named first")
    assert d.hint.startswith("write the dimension as a named size (`H`)")
    assert resdsl.loads(src.replace(dim, "H"), name="u.res").outputs["y"] == (8, 224, 224)
