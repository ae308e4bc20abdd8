"""Valid input sizes: rules derived by elaborating at many sizes, against closed forms worked out by hand."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import resdsl
from resdsl.analysis.sizes import problems, size_parameters, summarise, valid_sizes

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


def test_resnet_divisible_by_32():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=18, size=224)
    assert size_parameters(net) == ["size"]
    rep = valid_sizes(net, 1, 160)
    assert rep.valid == [32, 64, 96, 128, 160]
    assert rep.rule == "divisible by 32"
    assert rep.current == []


def test_resnet_450_explains_first_rounding_op():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=18, size=450)
    probs = problems(net.graph)
    # 450 -> conv1 (stride 2) -> 225 -> the stride-2 maxpool cannot halve 225
    assert probs[0].node == "maxpool" and "225" in probs[0].message and "2" in probs[0].message
    lines = (ROOT / "examples/resnet.res").read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if t.strip().startswith("maxpool: maxpool("))
    assert probs[0].source.endswith(f"resnet.res:{line}")


def test_unet_closed_form(tmp_path):
    # by hand: L - 4 and (L - 4) / 2 - 4 must be even (the pools), i.e. L = 0 mod 4; the decoder's
    # last convs need the bottom size (L - 4) / 4 - 6 >= 4, i.e. L >= 44; the crops differ by 8 and 32 (even)
    p = tmp_path / "u.res"
    p.write_text(UNET)
    net = resdsl.load(p)
    rep = valid_sizes(net, 1, 120)
    assert rep.valid == [L for L in range(1, 121) if L % 4 == 0 and L >= 44]
    assert rep.rule == "divisible by 4, at least 44"
    bad = resdsl.load(p, size=62)
    first = problems(bad.graph)[0]
    # 62 - 4 = 58 -> pool -> 29 -> two convs -> 25: the second pool cannot halve 25
    assert first.node == "maxpool_1" and "input length 25 is not divisible by the stride 2" in first.message


def test_fixed_size_and_summaries(tmp_path):
    p = tmp_path / "f.res"
    p.write_text("network f(width = 8) {\n  input x: [3, 32, 32]\n  conv(width, 3, stride=2, padding=1)\n  output y\n}\n")
    rep = valid_sizes(resdsl.load(p))  # no size parameter: each dim is varied through the input shape
    assert rep.parameters == [] and rep.rule == "x dim 1: divisible by 2; x dim 2: divisible by 2"
    assert summarise([], [1, 2]) == "no valid size in the checked range"
    assert summarise([3, 5, 9], list(range(1, 10))).startswith("valid sizes: 3, 5, 9")
    assert summarise([5, 8, 11], list(range(1, 12))) == "5 + 3k (k >= 0)"
    assert summarise([224, 256], list(range(200, 261))) == "divisible by 32"  # 192 was not checked
    assert summarise([44, 48], list(range(1, 49))) == "divisible by 4, at least 44"


def test_cli_sizes(tmp_path, capsys):
    from resdsl.cli import main

    p = tmp_path / "u.res"
    p.write_text(UNET)
    assert main(["check", str(p), "--sizes", "--size-range", "40:80", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert err == ""  # --json: nothing but the JSON, and no progress line in a captured stream
    assert data["valid"] == [44, 48, 52, 56, 60, 64, 68, 72, 76, 80] and data["parameters"] == ["size"]
    assert data["truncated"] is False
    assert main(["check", str(p), "--sizes", "--set", "size=62", "--size-range", "40:64"]) == 0
    assert "the first is maxpool" in capsys.readouterr().out
    assert main(["check", str(p), "--sizes", "--size-range", "9:3"]) == 2


def test_the_scan_stops_at_a_work_budget_not_a_clock(tmp_path, capsys, monkeypatch):
    """The budget counts elaborations (ops + a fixed part each): the same sizes are checked however busy
    the machine is.  With every clock broken the scan still runs, and stops at the same size."""
    import time

    import resdsl.analysis.sizes as sizes
    from resdsl.cli import main

    def no_clock():
        raise AssertionError("the size scan must not read a clock")

    for name in ("time", "perf_counter", "monotonic", "process_time"):
        monkeypatch.setattr(time, name, no_clock)
    p = tmp_path / "u.res"
    p.write_text(UNET)
    net = resdsl.load(p)
    cost = len(net.nodes) + sizes.PER_ELABORATION  # 17 ops + 100
    # one elaboration finds the size parameter, then 10 sizes fit in a budget of 11
    rep = valid_sizes(net, 1, 10**9, budget=11 * cost)
    assert rep.checked == list(range(1, 11)) and rep.truncated and rep.work == 11 * cost
    assert not valid_sizes(net, 40, 49, budget=11 * cost).truncated  # exactly enough for 40..49
    # on the command line: the default budget, and a note saying the scan stopped early
    monkeypatch.setattr(sizes, "WORK_BUDGET", 21 * cost)
    assert main(["check", str(p), "--sizes", "--size-range", "1:999999999"]) == 0
    out = capsys.readouterr().out
    assert "checked 1..20" in out
    assert f"stopped early after 20 sizes: the scan's work budget ({21 * cost:,} units" in out
    # per dim (--input): the budget is shared out, each dim gets its half
    assert main(["check", str(p), "--sizes", "--size-range", "1:999999999", "--input", "x=1,60,60"]) == 0
    out = capsys.readouterr().out
    assert out.count("(checked 1..10 only: work budget spent)") == 2 and "stopped early after 20 sizes" in out


def test_non_square_input_450_by_600(tmp_path):
    p = tmp_path / "hw.res"
    p.write_text("""
network hw(height = 450, width = 600) {
  input x: [3, height, width]
  conv(8, 7, stride=2, padding=3)
  maxpool(3, stride=2, padding=1)
  for s in range(3) { conv(8, 3, stride=2, padding=1) }
  global_avgpool
  output y
}""")
    net = resdsl.load(p)
    assert size_parameters(net) == ["height", "width"]
    probs = problems(net.graph)
    # H: 450 -> 225, which the stride-2 maxpool cannot halve; W: 600 -> 300 -> 150 -> 75, odd at the 2nd strided conv
    assert (probs[0].node, probs[0].dim) == ("maxpool", 0) and "225" in probs[0].message
    w = [q for q in probs if q.dim == 1]
    assert w[0].node == "conv_2" and "input length 75" in w[0].message
    rep = valid_sizes(net, 1, 100)  # both dims scanned together
    assert rep.rule == "divisible by 32" and rep.valid == [32, 64, 96]


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
    with pytest.raises(resdsl.ResdslError) as e:
        resdsl.load(ROOT / "examples/resnet.res", input_shapes={"y": (3, 8, 8)})
    assert e.value.first.code == "E018" and "no input `y`" in e.value.first.message
    with pytest.raises(resdsl.ResdslError) as e:
        resdsl.load(ROOT / "examples/resnet.res", input_shapes={"x": (3, 8)})
    assert e.value.first.code == "E014"


def test_sizes_per_dimension_without_a_size_parameter(tmp_path):
    p = tmp_path / "hw.res"
    p.write_text("network hw() {\n input x: [3, 64, 96]\n conv(8, kernel_size=3, stride=2, padding=1)\n"
                 " maxpool(2)\n conv(8, kernel_size=3, stride=2, padding=1)\n output y\n}\n")
    # by hand: three stride-2 stages, each exact only on an even length -> multiples of 8, in each dim alone
    net = resdsl.load(p, input_shapes={"x": (3, 450, 600)})
    rep = valid_sizes(net, 1, 100, by_dim=True)
    assert [(d.input, d.dim) for d in rep.dims] == [("x", 1), ("x", 2)]
    for d in rep.dims:
        assert d.valid == [v for v in range(1, 101) if v % 8 == 0]
        assert d.rule == "divisible by 8"
    assert rep.current and rep.current[0].node == "maxpool" and "225" in rep.current[0].message


def test_check_warns_when_sizes_round(capsys):
    from resdsl.cli import main

    assert main(["check", str(ROOT / "examples/resnet.res"), "--input", "x=3,450,600"]) == 0
    err = capsys.readouterr().err
    assert "warning: at input x: [3, 450, 600], 9 op(s) round sizes; the first is maxpool" in err
    assert main(["check", str(ROOT / "examples/resnet.res")]) == 0
    assert "warning" not in capsys.readouterr().err
