"""Language features of issue 17: recursive blocks, asserts, interpolated tensor names,
dotted labels (torchvision/timm module names) and channel splits.

Expectations are closed forms, torch's own numbers (numel, shapes, FlopCounterMode, outputs of
reference modules loaded by name with strict=True) or brute force; diagnostics are pinned."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import resdsl
from resdsl import ResdslError
from resdsl.limits import Limits


def fails(text: str, **params) -> ResdslError:
    with pytest.raises(ResdslError) as e:
        resdsl.loads(text, name="main.res", **params)
    return e.value


def rendered(text: str, **params) -> str:
    return fails(text, **params).render()


# ---------------------------------------------------------------- recursive blocks

CHAIN = """
block stage(n) {
    conv(16, 3, padding=1)
    if n > 1 {
        deeper: stage(n - 1)
    }
}
network net(n=3) {
    input x: [16, 8, 8]
    top: stage(n)
}
"""


@pytest.mark.parametrize("n", [1, 2, 5, 100])
def test_recursion_stops_on_its_condition(n):
    net = resdsl.loads(CHAIN, n=n)
    assert net.param_count == n * (16 * 16 * 9 + 16)           # closed form: n convs 16 -> 16, 3x3, bias
    names = [m.name for m in net.nodes if m.op == "conv"]
    assert names == ["top" + ".deeper" * k + ".conv" for k in range(n)]


def test_recursion_depth_is_bounded_by_max_call_depth():
    resdsl.loads(CHAIN, n=100)                                  # 100 nested calls: the default limit
    err = fails(CHAIN, n=101)
    assert err.first.code == "E016" and len(err.diagnostics) == 1
    assert err.first.message == "block `stage` recurses more than 100 calls deep without stopping"
    with pytest.raises(ResdslError):
        resdsl.loads(CHAIN, n=11, limits=Limits(max_call_depth=10))
    assert resdsl.loads(CHAIN, n=150, limits=Limits(max_call_depth=150)).param_count == 150 * 2320


def test_mutual_recursion_with_a_stop():
    text = """
block even(n) {
    relu
    if n > 0 {
        odd(n - 1)
    }
}
block odd(n) {
    conv(4, 1)
    if n > 0 {
        even(n - 1)
    }
}
network net(n=5) {
    input x: [4, 2, 2]
    even(n)
}
"""
    for n in range(8):  # brute force: calls alternate even, odd, even, ...; odd ones add a conv
        net = resdsl.loads(text, n=n)
        convs = sum(1 for k in range(n + 1) if k % 2 == 1)
        assert net.param_count == convs * (4 * 4 + 4)
        assert [m.op for m in net.nodes[1:]] == ["relu" if k % 2 == 0 else "conv" for k in range(n + 1)]


def test_runaway_branching_recursion_stops_at_once():
    # without the fatal stop, the two calls would reach the depth limit 2**100 times
    err = fails("block t(n) {\n    relu\n    t(n - 1)\n    t(n - 1)\n}\nnetwork n() {\n    input x: [4]\n    t(3)\n}\n")
    assert [d.code for d in err.diagnostics] == ["E016"]


def test_recursive_hourglass_agrees_with_a_recursive_reference():
    from test_zoo import RefStackedHourglass, same_outputs

    for depth in (1, 2, 5, 6):
        net = resdsl.load("examples/hourglass.res", stacks=1, depth=depth)
        assert net.param_count == sum(p.numel() for p in RefStackedHourglass(1, depth=depth).parameters())
    net = resdsl.load("examples/hourglass.res", stacks=2, features=16, size=64, joints=3, depth=3)
    ref = RefStackedHourglass(2, joints=3, f=16, depth=3)
    same_outputs(resdsl.compile(net), ref, torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------- assert

BUDGET = """
block conv_bn(c, groups=1) {
    assert in_channels % groups == 0, "groups must divide the input channels"
    conv(c, 3, padding=1, groups=groups)
    batchnorm()
}
network net(w=16, groups=1, budget=10_000) {
    input x: [4, 8, 8]
    conv_bn(w, groups)
    avgpool(8)
    flatten
    linear(10) -> logits
    assert logits.shape == [10]
    assert params <= budget, "over budget"
    assert macs == {macs}
}
"""


def _torch_reference(w: int, groups: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(4, w, 3, padding=1, groups=groups), nn.BatchNorm2d(w), nn.AvgPool2d(8),
                         nn.Flatten(), nn.Linear(w, 10))


def _torch_macs(m: nn.Module) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        m(torch.randn(1, 4, 8, 8))
    return fc.get_total_flops() // 2


@pytest.mark.parametrize("w,groups", [(16, 1), (8, 2), (32, 4)])
def test_asserts_see_network_totals_tensor_shapes_and_block_arguments(w, groups):
    ref = _torch_reference(w, groups)
    params, macs = sum(p.numel() for p in ref.parameters()), _torch_macs(ref)
    text = BUDGET.replace("{macs}", str(macs))
    net = resdsl.loads(text, w=w, groups=groups, budget=params)  # exactly at the budget: holds
    assert net.param_count == params
    err = fails(text, w=w, groups=groups, budget=params - 1)
    assert [d.message for d in err.diagnostics] == [f"assertion failed: over budget (params = {params}, "
                                                   f"budget = {params - 1})"]
    err = fails(BUDGET.replace("{macs}", str(macs + 1)), w=w, groups=groups, budget=params)
    assert err.first.message == f"assertion failed: macs == {macs + 1} (macs = {macs})"


def test_assert_in_a_block_reports_at_the_assert_with_the_call():
    assert rendered(BUDGET.replace("{macs}", "0"), groups=3) == (
        'main.res:3:12: error[E042]: assertion failed: groups must divide the input channels '
        '(in_channels % groups = 1)\n'
        '  |\n'
        '3 |     assert in_channels % groups == 0, "groups must divide the input channels"\n'
        '  |            ^^^^^^^^^^^^^^^^^^^^^^^^^\n'
        '  note: main.res:9:5: in block `conv_bn` called here\n'
        '    |\n'
        '  9 |     conv_bn(w, groups)\n'
        '    |     ^^^^^^^^^^^^^^^^^^')


def test_assert_without_message_quotes_the_condition():
    err = fails("network n(k=3) {\n    input x: [4]\n    assert k * 2 == 5 or not k > 2\n}\n")
    assert err.first.message == "assertion failed: k * 2 == 5 or not k > 2 (k * 2 = 6, k = 3)"
    assert (err.first.span.line, err.first.span.col) == (3, 12)


def test_network_totals_are_not_in_scope_in_blocks():
    err = fails("block b() {\n    assert params < 10\n}\nnetwork n() {\n    input x: [4]\n    b()\n}\n")
    assert err.first.code == "E010" and err.first.span.line == 2
    assert err.first.message == "`params` is a network total, known only at an `assert` in a network body"


def test_a_variable_named_like_a_total_wins():
    net = resdsl.loads("network n() {\n    input x: [4]\n    params = 3\n    assert params == 3\n    linear(2)\n}\n")
    assert net.param_count == 10


def test_tensor_conditions_are_type_errors():
    err = fails("network n() {\n    input x: [4]\n    assert x\n}\n")
    assert err.first.code == "E015" and err.first.hint == "compare its .shape or .channels"


def test_digit_separators():
    net = resdsl.loads("network n(c=1_0) {\n    input x: [4]\n    linear(c)\n    assert params == 5_0\n}\n")
    assert net.param_count == 50


# ---------------------------------------------------------------- interpolated tensor names

UNET = """
network unet(levels=3, base=4) {
    input x: [3, 32, 32]
    for i in range(levels) {
        enc{i}: conv(base * 2 ** i, 3, padding=1) -> skip{i}
        maxpool(2)
    }
    mid: conv(base * 2 ** levels, 3, padding=1)
    for i in range(levels - 1, -1, -1) {
        upsample(scale_factor=2)
        concat(skip{i})
        dec{i}: conv(skip{i}.channels, 3, padding=1) -> up{i}
    }
    from skip{0}
    add(up{levels - levels})
}
"""


class RefLoopUNet(nn.Module):
    def __init__(self, levels: int, base: int):
        super().__init__()
        self.levels, cin = levels, 3
        for i in range(levels):
            setattr(self, f"enc{i}", nn.Conv2d(cin, base * 2 ** i, 3, padding=1))
            cin = base * 2 ** i
        self.mid = nn.Conv2d(cin, base * 2 ** levels, 3, padding=1)
        cin = base * 2 ** levels
        for i in reversed(range(levels)):
            setattr(self, f"dec{i}", nn.Conv2d(cin + base * 2 ** i, base * 2 ** i, 3, padding=1))
            cin = base * 2 ** i

    def forward(self, x):
        skips = []
        for i in range(self.levels):
            x = getattr(self, f"enc{i}")(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.mid(x)
        for i in reversed(range(self.levels)):
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = getattr(self, f"dec{i}")(torch.cat([x, skips[i]], 1))
        return skips[0] + x


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_skips_made_in_a_loop_agree_with_a_torch_unet(levels):
    from test_zoo import same_outputs

    net = resdsl.loads(UNET, levels=levels)
    ref = RefLoopUNet(levels, 4)
    assert net.param_count == sum(p.numel() for p in ref.parameters())
    same_outputs(resdsl.compile(net), ref, torch.randn(2, 3, 32, 32))


def test_interpolated_names_diagnostics():
    body = "network n() {{\n    input x: [4]\n    {}\n}}\n"
    assert rendered(body.format('from t{"-"}')) == (
        'main.res:3:10: error[E019]: invalid tensor name `t-`\n'
        '  |\n'
        '3 |     from t{"-"}\n'
        '  |          ^^^^^^\n'
        '  hint: a tensor name starts with a letter or underscore, e.g. skip{i}')
    assert rendered(body.format("add(t{q})")) == (
        "main.res:3:11: error[E010]: undefined name `q`\n"
        "  |\n"
        "3 |     add(t{q})\n"
        "  |           ^")
    assert rendered(body.format("-> t{1.5}")).splitlines()[0] == \
        "main.res:3:10: error[E019]: a label part must be an int or a string, got float"
    err = fails(body.format("add(t{1})"))
    assert err.first.message == "undefined name `t1`" and (err.first.span.line, err.first.span.col) == (3, 9)


@pytest.mark.parametrize("stmt,col", [("from t{+}", 13), ("{1 +}: relu", 9), ("add(t{1 2})", 13)])
def test_syntax_errors_inside_braces_are_located(stmt, col):
    d = fails(f"network n() {{\n    input x: [4]\n    {stmt}\n}}\n").first
    assert (d.code, d.span.line, d.span.col) == ("E001", 3, col)
    assert d.hint == "the part in braces is an expression, e.g. {i + 1}"


def test_a_body_brace_after_a_name_still_opens_a_body():
    net = resdsl.loads("network n(flag=true) {\n    input x: [4]\n    if flag { relu }\n    for i in [1] { -> t{i} }\n"
                       "    add(t1, t{2 - 1})\n}\n")
    assert [m.op for m in net.nodes] == ["input", "relu", "add"]


# ---------------------------------------------------------------- dotted labels: torchvision / timm module names

INVERTED = """
block inverted(c, t, s) {
    hidden = in_channels * t
    if t != 1 {
        conv.0.0: conv(hidden, 1, bias=false)
        conv.0.1: batchnorm()
        conv.0.2: relu
    }
    conv.{k}.0: conv(hidden, 3, stride=s, padding=1, groups=hidden, bias=false)
    conv.{k}.1: batchnorm()
    conv.{k}.2: relu
    conv.{k + 1}: conv(c, 1, bias=false)
    conv.{k + 2}: batchnorm()
}
network n(cin=16, c=24, t=6, s=2) {
    input x: [cin, 8, 8]
    if s == 1 and cin == c {
        features.1: residual {
            _: inverted(c, t, s)  # `_:` no scope of its own: its layers are features.1.conv...
        }
    } else {
        features.1: inverted(c, t, s)
    }
}
"""


def _inverted(text: str, t: int) -> str:
    return text.replace("{k}", str(int(t != 1))).replace("{k + 1}", str(int(t != 1) + 1)).replace(
        "{k + 2}", str(int(t != 1) + 2))


@pytest.mark.parametrize("cin,c,t,s", [(16, 24, 6, 2), (24, 24, 6, 1), (32, 16, 1, 1), (16, 16, 1, 1)])
def test_dotted_labels_carry_torchvision_mobilenet_v2_names(cin, c, t, s):
    from torchvision.models.mobilenetv2 import InvertedResidual

    from test_zoo import same_outputs

    net = resdsl.loads(_inverted(INVERTED, t), cin=cin, c=c, t=t, s=s)
    ref = nn.Sequential()
    ref.add_module("features", nn.Sequential(nn.Identity(), InvertedResidual(cin, c, s, t)))
    for m in ref.modules():  # resdsl's relu stands in for ReLU6 here; the names and shapes are the test
        for k, child in m.named_children():
            if isinstance(child, nn.ReLU6):
                m._modules[k] = nn.ReLU()
    same_outputs(resdsl.compile(net), ref, torch.randn(2, cin, 8, 8))  # strict load by name
    assert sorted(k for k in ref.state_dict()) == sorted(resdsl.compile(net).state_dict())


def test_dotted_labels_nest_and_automatic_names_keep_out():
    net = resdsl.loads("network n() {\n    input x: [4, 2, 2]\n    conv.0: conv(4, 1)\n    conv(4, 1)\n"
                       "    block.{1 + 1}.fc1: conv(4, 1)\n    in_: relu\n    for_: relu\n}\n")
    assert [m.name for m in net.nodes] == ["x", "conv.0", "conv_1", "block.2.fc1", "in_", "for_"]
    # a keyword parses as a label, but torch.fx would write `self.in(x)`: refused, and the hint works
    err = fails("network n() {\n    input x: [4, 2, 2]\n    in: relu\n}\n").first
    assert err.code == "E019" and err.hint == "rename the label, e.g. `in_:`"
    sd = resdsl.compile(net).state_dict()
    assert sorted(sd) == ["block.2.fc1.bias", "block.2.fc1.weight", "conv.0.bias", "conv.0.weight",
                          "conv_1.bias", "conv_1.weight"]


def test_dotted_label_conflicts_are_located():
    assert rendered("network n() {\n    input x: [4, 2, 2]\n    conv: conv(4, 1)\n    conv.0: conv(4, 1)\n"
                    "    a.b: relu\n    a: group {\n        b: relu\n    }\n}\n") == (
        "main.res:4:5: error[E020]: layer `conv.0` would be inside layer `conv`\n"
        "  |\n"
        "4 |     conv.0: conv(4, 1)\n"
        "  |     ^^^^^^^^^^^^^^^^^^\n"
        "  note: main.res:3:5: `conv` is a layer of its own, made here\n"
        "    |\n"
        "  3 |     conv: conv(4, 1)\n"
        "    |     ^^^^^^^^^^^^^^^^\n"
        "  hint: rename one of them, e.g. `conv_0`\n"
        "main.res:7:9: error[E020]: two layers are named `a.b`\n"
        "  |\n"
        "7 |         b: relu\n"
        "  |         ^^^^^^^\n"
        "  note: main.res:5:5: first named here\n"
        "    |\n"
        "  5 |     a.b: relu\n"
        "    |     ^^^^^^^^^\n"
        "  hint: a dotted label and a labeled scope reach the same name; rename one")
    d = fails('network n() {\n    input x: [4]\n    x.{"a b"}: relu\n}\n').first
    assert (d.code, d.span.line, d.span.col, d.message) == ("E019", 3, 5, "invalid label `x.a b`")
    d = fails("network n() {\n    input x: [4]\n    a..b: relu\n}\n").first
    assert (d.code, d.span.line, d.span.col) == ("E001", 3, 6)


def test_dotted_labels_survive_expand():
    net = resdsl.loads(_inverted(INVERTED, 6), cin=24, c=24, t=6, s=1)
    again = resdsl.loads(net.expand())
    assert [(m.name, m.op, m.shape) for m in again.nodes] == [(m.name, m.op, m.shape) for m in net.nodes]


def test_the_anonymous_label():
    net = resdsl.loads("block b() {\n    fc: conv(4, 1)\n    relu\n}\nnetwork n() {\n    input x: [4, 2, 2]\n"
                       "    s: group {\n        _: b()\n        _: relu\n        _: group {\n            relu\n        }\n"
                       "        b()\n    }\n}\n")
    assert [m.name for m in net.nodes] == ["x", "s.fc", "s.relu", "s.relu_1", "s.relu_2", "s.b.fc", "s.b.relu"]
    err = fails("block b() {\n    fc: conv(4, 1)\n}\nnetwork n() {\n    input x: [4, 2, 2]\n    _: b()\n    _: b()\n}\n")
    assert err.first.code == "E020" and err.first.span.line == 2


# ---------------------------------------------------------------- split: Res2Net's hierarchical block

RES2NET = """
block bottle2neck(planes, stride=1, base_width=26, scale=4) {
    width = floor(planes * base_width / 64)
    first = stride > 1 or in_channels != planes * 4
    residual(shortcut="project" if first else "identity") {
        conv1: conv(width * scale, 1, bias=false)
        bn1: batchnorm()
        relu
        split(scale) -> x{0..scale - 1}           # the paper's x_1 .. x_s
        for i in range(scale - 1) {
            if i == 0 or first {
                from x{i}
            } else {
                add(x{i})                         # K_i(x_i + y_(i-1))
            }
            convs.{i}: conv(width, 3, stride=stride, padding=1, bias=false)
            bns.{i}: batchnorm()
            relu -> y{i}
        }
        from x{scale - 1}
        if first {
            pool: avgpool(3, stride=stride, padding=1)
        }
        -> last
        from y0
        concat(y{1..scale - 2}, last)
        conv3: conv(planes * 4, 1, bias=false)
        bn3: batchnorm()
    }
    relu
}
network n(cin=64, planes=16, stride=1, base_width=26, scale=4) {
    input x: [cin, 8, 8]
    b: bottle2neck(planes, stride, base_width, scale)
}
"""


@pytest.mark.parametrize("cin,planes,stride,scale", [(64, 16, 1, 4), (64, 16, 2, 4), (32, 16, 1, 3),
                                                     (64, 32, 1, 2), (128, 32, 2, 6)])
def test_split_writes_res2net_as_timm_does(cin, planes, stride, scale):
    from timm.models.res2net import Bottle2neck

    from test_zoo import same_outputs

    down = None
    if stride > 1 or cin != planes * 4:
        down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    ref = nn.Sequential()
    ref.add_module("b", Bottle2neck(cin, planes, stride, down, base_width=26, scale=scale, norm_layer=nn.BatchNorm2d))
    net = resdsl.loads(RES2NET, cin=cin, planes=planes, stride=stride, scale=scale)
    assert (net.param_count, net.buffer_count) == (sum(p.numel() for p in ref.parameters()),
                                                   sum(b.numel() for b in ref.buffers()))
    assert [m.op for m in net.nodes].count("slice") == scale        # the split adds no layers of its own
    same_outputs(resdsl.compile(net), ref, torch.randn(2, cin, 8, 8))


def test_split_pieces_are_torch_split():
    net = resdsl.loads("network n() {\n    input x: [10, 3, 3]\n    split([2, 3, 5]) -> a, b, c\n"
                       "    output a, b, c\n}\n")
    x = torch.randn(2, 10, 3, 3)
    outs = resdsl.compile(net)(x)
    for got, want in zip(outs, torch.split(x, [2, 3, 5], 1)):
        assert torch.equal(got, want)
    labeled = resdsl.loads("network n() {\n    input x: [8]\n    parts: split(2) -> p{1..2}\n    from p2\n}\n")
    assert [m.name for m in labeled.nodes] == ["x", "parts.0", "parts.1"]
    assert [(m.attrs["start"], m.attrs["stop"]) for m in labeled.nodes[1:]] == [(0, 4), (4, 8)]


@pytest.mark.parametrize("stmt,message,hint", [
    ("split(3) -> x{1..3}", "split(3): 8 channels do not split into 3 equal pieces",
     "give the sizes instead: split([3, 3, 2])"),
    ("split([4, 5]) -> a, b", "split sizes [4, 5] add up to 9, but the tensor has 8 channels", None),
    ("split(2) -> a", "split makes 2 tensors but they are bound to 1 name", "bind each piece: split(...) -> x{1..2}"),
    ("split(2)", "split makes 2 tensors but none is bound to no names", "bind each piece: split(...) -> x{1..2}"),
    ("relu -> a, b", "`relu` gives one tensor; it cannot be bound to 2 names",
     "only `split(...)` binds several tensors: split(4) -> x{1..4}"),
    ("{1..2}: relu", "`{a..b}` names several tensors, and this place takes one name",
     "ranges belong in `split(n) -> x{1..n}` and in merges' arguments: concat(y{1..n})"),
    ("split(true) -> a", "split takes a number of equal pieces or a list of positive sizes, got true",
     "e.g. split(4) or split([26, 26, 26, 26])"),
])
def test_split_diagnostics(stmt, message, hint):
    d = fails(f"network n() {{\n    input x: [8]\n    {stmt}\n}}\n").first
    assert (d.message, d.hint, d.span.line) == (message, hint, 3)


def test_split_error_rendering():
    assert rendered("network n() {\n    input x: [8]\n    split(3) -> x{1..3}\n}\n") == (
        "main.res:3:11: error[E014]: split(3): 8 channels do not split into 3 equal pieces\n"
        "  |\n"
        "3 |     split(3) -> x{1..3}\n"
        "  |           ^\n"
        "  hint: give the sizes instead: split([3, 3, 2])")


# ---------------------------------------------------------------- the formatter keeps the new statements


@pytest.mark.parametrize("text,builds", [(CHAIN, True), (BUDGET.replace("{macs}", "1"), False), (UNET, True),
                                         (_inverted(INVERTED, 6), True), (RES2NET, False)])
def test_formatter_is_idempotent_on_the_new_statements(text, builds):
    from resdsl.fmt import format_source
    from resdsl.parser import parse

    once = format_source(text)
    assert format_source(once) == once
    strip = lambda m: [type(i).__name__ for i in m.items]  # noqa: E731
    assert strip(parse(once)) == strip(parse(text))
    if builds:
        a, b = resdsl.loads(text), resdsl.loads(once)
        assert [(m.name, m.op, m.shape) for m in a.nodes] == [(m.name, m.op, m.shape) for m in b.nodes]
