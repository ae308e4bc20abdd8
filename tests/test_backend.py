"""The PyTorch backend: every op's lowering against torch's own functions, the
example zoo against its static counts and shapes, initialisation, the
constructor's parameter guard, code-injection safety, and the standalone file
written by `resdsl compile`."""
from __future__ import annotations

import ast
import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import resdsl
from resdsl.backends.inputs import random_inputs
from resdsl import ops
from resdsl.backends import pytorch
from resdsl.cli import main as cli_main
from resdsl.loader import load_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.res"))


def _net(body: str, shape: str = "[3, 9, 9]"):
    return resdsl.loads(f"network t() {{\n    input x: {shape}\n{body}\n    output y\n}}\n")


# ----------------------------------------------------------------- one op at a time vs torch

def _w(m, name):
    return m.get_submodule(name)


OP_CASES = [  # (id, input shape, .res body, train mode, reference(model, x))
    ("conv", "[3, 9, 9]", "l: conv(4, 3, stride=2, padding=1)", False,
     lambda m, x: F.conv2d(x, _w(m, "l").weight, _w(m, "l").bias, 2, 1)),
    ("conv_same", "[3, 9, 9]", 'l: conv(4, 4, padding="same", dilation=2, bias=false)', False,
     lambda m, x: F.conv2d(x, _w(m, "l").weight, None, padding="same", dilation=2)),
    ("conv_groups", "[4, 9, 9]", "l: conv(6, 3, groups=2)", False,
     lambda m, x: F.conv2d(x, _w(m, "l").weight, _w(m, "l").bias, groups=2)),
    ("conv1d", "[3, 10]", "l: conv(4, 3)", False,
     lambda m, x: F.conv1d(x, _w(m, "l").weight, _w(m, "l").bias)),
    ("conv3d", "[2, 5, 5, 5]", "l: conv3d(4, 3, padding=1)", False,
     lambda m, x: F.conv3d(x, _w(m, "l").weight, _w(m, "l").bias, padding=1)),
    ("conv_transpose", "[3, 5, 5]", "l: conv_transpose(4, 3, stride=2, padding=1, output_padding=1)", False,
     lambda m, x: F.conv_transpose2d(x, _w(m, "l").weight, _w(m, "l").bias, 2, 1, 1)),
    ("linear", "[7]", "l: linear(5)", False, lambda m, x: F.linear(x, _w(m, "l").weight, _w(m, "l").bias)),
    ("maxpool", "[3, 9, 9]", "maxpool(3, stride=2, padding=1, ceil_mode=true)", False,
     lambda m, x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    ("avgpool", "[3, 9, 9]", "avgpool(3, stride=2, padding=1, count_include_pad=false)", False,
     lambda m, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
    ("avgpool1d", "[3, 9]", "avgpool(2)", False, lambda m, x: F.avg_pool1d(x, 2)),
    ("adaptive_avgpool", "[3, 9, 9]", "adaptive_avgpool(2)", False, lambda m, x: F.adaptive_avg_pool2d(x, 2)),
    ("adaptive_maxpool", "[3, 9, 9]", "adaptive_maxpool([2, 3])", False,
     lambda m, x: F.adaptive_max_pool2d(x, (2, 3))),
    ("global_avgpool", "[3, 9, 9]", "global_avgpool", False, lambda m, x: x.mean(dim=(2, 3))),
    ("global_maxpool", "[3, 4, 5, 6]", "global_maxpool", False, lambda m, x: x.flatten(2).max(dim=2).values),
    ("upsample", "[3, 4, 5]", "upsample(scale_factor=2)", False,
     lambda m, x: F.interpolate(x, scale_factor=2, mode="nearest")),
    ("upsample_bilinear", "[3, 4, 5]", 'upsample(size=[7, 9], mode="bilinear", align_corners=true)', False,
     lambda m, x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True)),
    ("flatten", "[3, 4, 5]", "flatten", False, lambda m, x: x.reshape(x.shape[0], -1)),
    ("identity", "[3, 4, 5]", "identity", False, lambda m, x: x),
    ("dropout_eval", "[3, 4, 5]", "dropout(0.5)", False, lambda m, x: x),
    ("drop_path_eval", "[3, 4, 5]", "drop_path(0.3)", False, lambda m, x: x),
    ("relu", "[3, 4, 5]", "relu", False, lambda m, x: x.clamp(min=0)),
    ("gelu", "[3, 4, 5]", "gelu", False, lambda m, x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))),
    ("silu", "[3, 4, 5]", "silu", False, lambda m, x: x * torch.sigmoid(x)),
    ("sigmoid", "[3, 4, 5]", "sigmoid", False, lambda m, x: 1 / (1 + torch.exp(-x))),
    ("tanh", "[3, 4, 5]", "tanh", False, lambda m, x: torch.tanh(x)),
    ("leaky_relu", "[3, 4, 5]", "leaky_relu(0.2)", False, lambda m, x: torch.where(x > 0, x, 0.2 * x)),
    ("elu", "[3, 4, 5]", "elu(0.5)", False, lambda m, x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1))),
    ("softmax", "[3, 4, 5]", "softmax(dim=0)", False, lambda m, x: torch.exp(x) / torch.exp(x).sum(1, keepdim=True)),
    ("batchnorm_train", "[3, 4, 5]", "l: batchnorm()", True,
     lambda m, x: (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)),
    ("batchnorm1d", "[6]", "l: batchnorm()", True,
     lambda m, x: (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)),
    ("ghost_batchnorm", "[3, 4, 5]", "l: ghost_batchnorm(2)", True,
     lambda m, x: torch.cat([F.batch_norm(c, None, None, training=True) for c in x.split(2)])),
    ("layernorm", "[3, 4, 5]", "l: layernorm()", True, lambda m, x: F.layer_norm(x, (3, 4, 5))),
    ("layernorm_dims", "[3, 4, 5]", "l: layernorm(dims=1)", True, lambda m, x: F.layer_norm(x, (5,))),
    ("groupnorm", "[4, 4, 5]", "l: groupnorm(2)", True, lambda m, x: F.group_norm(x, 2)),
    ("instancenorm", "[3, 4, 5]", "l: instancenorm()", True, lambda m, x: F.instance_norm(x)),
    ("scale", "[3, 4, 5]", "scale(0.5)", False, lambda m, x: x * 0.5),
    ("scalar_scale", "[3, 4, 5]", "scalar_scale(0.25)", False, lambda m, x: x * 0.25),
    ("scalar_bias", "[3, 4, 5]", "scalar_bias(0.5)", False, lambda m, x: x + 0.5),
    ("add", "[3, 4, 5]", "-> a\n relu\n add(a)", False, lambda m, x: x.clamp(min=0) + x),
    ("concat", "[3, 4, 5]", "-> a\n relu\n concat(a)", False, lambda m, x: torch.cat([x.clamp(min=0), x], 1)),
    ("concat_crop", "[3, 9, 9]", "-> a\n l: conv(2, 4)\n concat(a, crop=true)", False,
     lambda m, x: torch.cat([F.conv2d(x, _w(m, "l").weight, _w(m, "l").bias), x[:, :, 1:7, 1:7]], 1)),
    ("crop", "[3, 9, 9]", "crop([4, 5])", False, lambda m, x: x[:, :, 2:6, 2:7]),
    ("zeropad", "[3, 9, 9]", "zeropad(6, stride=2)", False,
     lambda m, x: torch.cat([x[:, :, ::2, ::2], torch.zeros(x.shape[0], 3, 5, 5)], 1)),
]


@pytest.mark.parametrize("case", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_op_matches_torch(case):
    _, shape, body, train, ref = case
    net = _net(body, shape)
    model = net.to_torch(seed=0).train(train)
    x = torch.randn((4,) + net.inputs["x"], generator=torch.Generator().manual_seed(1))
    got = model(x)
    want = ref(model, x)
    assert tuple(got.shape[1:]) == net.outputs["y"] == tuple(want.shape[1:])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_every_op_has_a_rule():
    assert set(pytorch.RULES) == set(ops.OPS)
    lowered = {c[2].split(":")[-1].split("(")[0].split("\n")[-1].strip() for c in OP_CASES}
    from test_ops_torch import VALUE_CASES  # the newer ops' value checks live with their torch tests
    lowered |= {c[0] for c in VALUE_CASES}
    missing = set(ops.OPS) - lowered - {"input", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                        "conv_transpose2d", "conv_transpose3d"}
    assert not missing  # every user op is exercised by OP_CASES


def test_unknown_op_is_an_internal_error():
    node = dataclasses.replace(_net("relu").nodes[1], op="bogus")
    with pytest.raises(AssertionError, match="pytorch backend.*bogus"):
        pytorch.lower(node, [(3, 9, 9)])


def test_training_mode_regularisers():
    net = _net("d: drop_path(0.5)", "[3, 4, 5]")
    model = net.to_torch(seed=0).train()
    torch.manual_seed(0)
    x = torch.randn(64, 3, 4, 5)
    y = model(x)
    kept = [bool((y[i] == 2 * x[i]).all()) for i in range(64)]
    dropped = [bool((y[i] == 0).all()) for i in range(64)]
    assert all(k or d for k, d in zip(kept, dropped)) and 10 < sum(kept) < 54  # whole samples, scaled by 1/(1-p)
    gbn = _net("l: ghost_batchnorm(2, momentum=0.5)", "[3, 4, 5]").to_torch().train()
    x = torch.randn(4, 3, 4, 5)
    gbn(x)
    bn = gbn.get_submodule("l")
    # running mean after two virtual batches of momentum 0.5: 0.25 * mean(first half) + 0.5 * mean(second half)
    want = 0.25 * x[:2].mean((0, 2, 3)) + 0.5 * x[2:].mean((0, 2, 3))
    torch.testing.assert_close(bn.running_mean, want)
    assert int(bn.num_batches_tracked) == 1


# ----------------------------------------------------------------- the example zoo

def _cases():
    for path in EXAMPLES:
        for name in load_file(path).networks:
            yield pytest.param(path, name, id=f"{path.stem}:{name}")


def _module_shapes(model, inputs):
    shapes = {}
    # leaves, and nn.MultiheadAttention (its out_proj child is never called; it returns (output, weights))
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(
        name, tuple((o[0] if isinstance(o, tuple) else o).shape[1:])))
             for name, m in model.named_modules()
             if name and (not list(m.children()) or isinstance(m, torch.nn.MultiheadAttention))
             and not name.endswith("out_proj")]
    try:
        out = model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return shapes, out


def _cheap(net) -> bool:
    return sum(math.prod(n.shape) for n in net.nodes) < 12_000_000 and net.param_count < 40_000_000


def _check_module(net, device: str) -> None:
    """Build on `device`, run a batch of 2: counts, output shapes and every module's output shape vs the IR."""
    with torch.device(device):
        model = net.to_torch(seed=0).eval()
        inputs = random_inputs(net, 2)  # token ids for `input ids: int[N]`
    assert sum(p.numel() for p in model.parameters()) == net.param_count
    assert sum(b.numel() for b in model.buffers()) == net.buffer_count
    with torch.no_grad():
        shapes, out = _module_shapes(model, inputs)
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(net.outputs) and model.output_names == tuple(net.outputs)
    for t, shape in zip(outs, net.outputs.values()):
        assert tuple(t.shape) == (2,) + shape
        if device == "cpu":
            assert torch.isfinite(t).all()
    by_name = {n.name: n.shape for n in net.nodes}
    for name, shape in shapes.items():
        assert by_name[name] == shape, name
    lowered = [pytorch.lower(n, [net.nodes[i].shape for i in n.inputs]) for n in net.nodes if n.op != "input"]
    assert len(shapes) == sum(1 for low in lowered if low.ctor and not low.param)  # a bare Parameter has no hook
    # state_dict keys are the IR's qualified names (a module's own parameters, nested ones as out_proj.weight)
    # (a bare parameter -- layer_scale, class_token, pos_embedding -- is keyed by the layer's name itself)
    for k, _ in model.named_parameters():
        owner = k if k in by_name else k.rsplit(".", 1)[0]
        assert owner in by_name or owner.rsplit(".", 1)[0] in by_name, k


@pytest.mark.parametrize("path,network", list(_cases()))
def test_example_compiles_with_static_counts_and_shapes(path, network):
    net = resdsl.load(path, network=network)
    # The default configuration on the meta device: torch's own shape rules and counts, no compute.
    _check_module(net, "meta")
    # A real CPU forward: the default if it is small, else a smaller `size` when the file offers one.
    small = net if _cheap(net) else None
    if small is None and "size" in net.params:
        for size in (32, 64, 92, 128, 188, 252):
            try:
                candidate = resdsl.load(path, network=network, size=size)
            except resdsl.ResdslError:  # e.g. a U-Net with valid padding needs particular sizes
                continue
            if _cheap(candidate):
                small = candidate
                break
    if small is not None:
        _check_module(small, "cpu")
    else:
        print(f"{path.name}:{network}: meta device only")


# ----------------------------------------------------------------- initialisation

def _std(t):
    return t.float().std().item()


def test_init_table():
    net = _net(
        'a: conv(256, 3, padding=1, init="default")\n b: conv(256, 3, padding=1, init="he")\n'
        ' c: conv(256, 3, padding=1, init="xavier")\n d: conv(256, 3, padding=1, init="normal")\n'
        ' e: conv(256, 3, padding=1, init="zeros")\n f: conv(256, 3, padding=1, init="ones")\n'
        ' g: conv(256, 3, padding=1, init="glorot", init_gain=0.5)\n global_avgpool\n l: linear(300)', "[256, 3, 3]")
    m = net.to_torch(seed=0)
    fan_in = fan_out = 256 * 9
    w = {k: m.get_submodule(k).weight for k in "abcdefgl"}
    assert abs(_std(w["a"]) / math.sqrt(2 / fan_out) - 1) < 0.02  # kaiming normal, fan_out (torchvision)
    assert abs(_std(w["b"]) / math.sqrt(2 / fan_in) - 1) < 0.02
    assert abs(_std(w["c"]) / math.sqrt(2 / (fan_in + fan_out)) - 1) < 0.02
    assert abs(_std(w["d"]) / 0.01 - 1) < 0.02
    assert (w["e"] == 0).all() and (w["f"] == 1).all()
    assert abs(_std(w["g"]) / (0.5 * math.sqrt(2 / (fan_in + fan_out))) - 1) < 0.02
    bound = 1 / math.sqrt(256)  # torch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert w["l"].abs().max() <= bound and abs(_std(w["l"]) / (bound / math.sqrt(3)) - 1) < 0.05
    for k in "abcdefgl":
        assert (m.get_submodule(k).bias == 0).all()


def test_init_gain_scales_the_same_draw():
    one = _net("l: conv(8, 3, init_gain=1.0)").to_torch(seed=3)
    half = _net("l: conv(8, 3, init_gain=0.5)").to_torch(seed=3)
    assert torch.equal(half.get_submodule("l").weight, 0.5 * one.get_submodule("l").weight)


def test_zero_init_last_zeroes_the_last_bn_of_each_block():
    m = resdsl.compile(str(ROOT / "examples" / "resnet.res"), depth=18, size=32, zero_init_residual=True)
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            want = 0.0 if name.endswith("bn2") else 1.0
            assert (mod.weight == want).all() and (mod.bias == 0).all(), name


def test_skipinit_block_is_the_identity_at_init():
    net = _net('residual(scale="learnable", scale_init=0.0) {\n conv(3, 3, padding=1)\n relu\n'
               ' conv(3, 3, padding=1)\n }', "[3, 8, 8]")
    m = net.to_torch(seed=0)
    (alpha,) = [p for k, p in m.named_parameters() if "scalar_scale" in k]
    assert alpha.shape == () and alpha.item() == 0.0
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(m(x), x)


def test_scalar_bias_and_norm_init():
    m = _net("b: scalar_bias(0.75)\n g: groupnorm(3, init=\"zeros\")\n n: layernorm()").to_torch()
    assert m.get_submodule("b").bias.item() == 0.75
    assert (m.get_submodule("g").weight == 0).all() and (m.get_submodule("n").weight == 1).all()


def test_seed_is_deterministic_and_leaves_the_global_rng_alone():
    net = resdsl.load(ROOT / "examples" / "resnet.res", depth=18, size=32)
    state = torch.random.get_rng_state()
    a, b, c = net.to_torch(seed=1), net.to_torch(seed=1), net.to_torch(seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.state_dict()["conv1.weight"], c.state_dict()["conv1.weight"])


def test_init_is_torchvisions_with_each_weight_drawn_once():
    """The constructor allocates the modules on the meta device and reset_parameters initialises each once,
    in module order: the same values as torchvision's ResNet-18 built on the meta device and initialised by
    hand (kaiming_normal_ fan_out for convs, batch norm's and linear's own reset_parameters, linear bias 0)
    from the same seed.  torchvision itself draws every conv weight twice (nn.Conv2d's default, then its own)."""
    import torchvision

    ours = resdsl.compile(str(ROOT / "examples" / "resnet.res"), depth=18, size=32, seed=11)
    torch.manual_seed(11)
    with torch.device("meta"):
        tv = torchvision.models.resnet18()
    tv.to_empty(device="cpu")
    draws = 0
    for mod in tv.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            draws += 1
        elif isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.Linear)):
            mod.reset_parameters()
        if isinstance(mod, torch.nn.Linear):
            torch.nn.init.zeros_(mod.bias)
    a, b = ours.state_dict(), tv.state_dict()
    assert list(a) == list(b) and draws == 20
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ours.conv1.weight.device.type == "cpu"
    assert all(torch.isfinite(v.float()).all() for v in a.values())


def test_default_device_and_fallback_init():
    """Built under `with torch.device(...)` the weights land there (meta: nothing is allocated); a network with
    a tied weight keeps the default-init path (modules built normally, the tie made after), and the tie holds."""
    net = resdsl.load(ROOT / "examples" / "resnet.res", depth=18, size=32)
    with torch.device("meta"):
        m = net.to_torch(seed=0)
    assert {p.device.type for p in m.state_dict().values()} == {"meta"}
    tied = resdsl.loads("""network lm() {
        input ids: int[6]
        wte: embedding(50, 8)
        head: linear(50, pointwise=true, bias=false, tie="wte")
        output y
    }""")
    src = tied.torch_source()
    assert "torch.device('meta')" not in src
    t = tied.to_torch(seed=0)
    assert t.head.weight is t.wte.weight
    assert abs(float(t.wte.weight.detach().std()) - 1.0) < 0.2  # the embedding's normal(0, 1), not the linear's uniform


def test_generated_code_is_cached_by_content():
    a = resdsl.load(ROOT / "examples" / "resnet.res", depth=18, size=32)
    b = resdsl.load(ROOT / "examples" / "resnet.res", depth=18, size=32)  # another load, equal content
    c = resdsl.load(ROOT / "examples" / "resnet.res", depth=18, size=64)  # other shapes: other comments
    assert a is not b and pytorch.generated(a) is pytorch.generated(b)
    assert pytorch.generated(c) is not pytorch.generated(a)
    assert pytorch.generated(a).source == a.torch_source() and pytorch.generated(c).source == c.torch_source()
    m1, m2 = a.to_torch(seed=0), b.to_torch(seed=0)
    assert type(m1) is not type(m2) and m2.resdsl_network is b  # each build has its own class
    assert type(m1).__init__.__code__ is type(m2).__init__.__code__  # compiled once
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])


def test_crop_op_follows_the_input_size():
    """crop(size) keeps its size and centres on whatever input arrives: offsets (L - M) // 2 from x.shape."""
    net = _net("crop([4, 5])", "[3, 9, 9]")
    m = net.to_torch(seed=0)
    traced = torch.fx.symbolic_trace(m)
    for h, w in ((9, 9), (12, 11), (4, 5)):
        x = torch.randn(2, 3, h, w)
        want = x[:, :, (h - 4) // 2:(h - 4) // 2 + 4, (w - 5) // 2:(w - 5) // 2 + 5]
        assert torch.equal(m(x), want) and torch.equal(traced(x), want)


def test_a_chain_of_numbered_blocks_is_an_nn_sequential():
    """A network whose top level is blocks 0, 1, 2... is an nn.Sequential subclass, as one would write it:
    same state_dict keys, every block's hook fires, indexing works, FX traces it, values = a plain loop."""
    net = resdsl.loads("""network mlp(blocks = 5, width = 8) {
        input x: [width]
        for i in range(blocks) {
            {i}: residual { relu; linear(width) }
        }
        output y
    }""")
    m = net.to_torch(seed=0)
    assert isinstance(m, torch.nn.Sequential) and len(m) == 5 and m[2] is m.get_submodule("2")
    assert list(m.state_dict()) == [f"{i}.linear.{w}" for i in range(5) for w in ("weight", "bias")]
    fired = []
    hooks = [m.get_submodule(str(i)).register_forward_hook(lambda *a, i=i: fired.append(i)) for i in range(5)]
    x = torch.randn(3, 8)
    with torch.no_grad():
        y = m(x)
        want = x
        for i in range(5):
            lin = m.get_submodule(f"{i}.linear")
            want = want + F.linear(F.relu(want), lin.weight, lin.bias)
    for h in hooks:
        h.remove()
    assert fired == [0, 1, 2, 3, 4]
    torch.testing.assert_close(y, want, rtol=0, atol=1e-6)
    assert torch.equal(torch.fx.symbolic_trace(m)(x), y)
    assert "class Mlp(nn.Sequential)" in net.torch_source() and "getattr(self, '0')" not in net.torch_source()


def test_every_op_leaves_no_parameter_or_buffer_uninitialised():
    """Every op's module, built the way networks are (meta device, then reset_parameters), under deterministic
    algorithms, which fill uninitialised memory with NaN / the integer maximum: no such value survives."""
    from test_ops_torch import VALUE_CASES

    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        models = [_net(body, shape).to_torch(seed=0) for _, shape, body, _, _ in OP_CASES + VALUE_CASES]
    finally:
        torch.use_deterministic_algorithms(was)
    checked = 0
    for m in models:
        for name, v in m.state_dict().items():
            checked += 1
            if v.is_floating_point():
                assert torch.isfinite(v).all(), name
            else:
                assert (v != torch.iinfo(v.dtype).max).all(), name
    assert checked > 50


# ----------------------------------------------------------------- the generated class

def test_constructor_guards_the_compiled_parameters():
    m = resdsl.compile(str(ROOT / "examples" / "resnet.res"), depth=18, size=32)
    cls = type(m)
    cls(depth=18, size=32)  # the compiled values are accepted
    with pytest.raises(ValueError, match="--set depth=VALUE"):
        cls(depth=50)
    with pytest.raises(TypeError):
        cls(colour=1)
    assert m.code.startswith("class Basic(nn.Module):") and "    def forward(self, x):" in m.code
    assert "# layer1.0.conv1 [B, 64, 8, 8]  " in m.code and "examples/resnet.res:" in m.code and "(in basic)" in m.code
    assert m.resdsl_network.param_count == sum(p.numel() for p in m.parameters())


def test_layer_names_that_are_not_attributes():
    # "0" and names Python would mangle in a class body are fine layer names but not plain attributes.
    m = _net("007: conv(4, 3)\n __x: group { 0: batchnorm() }\n __y: relu\n g: group { 1: relu; 0: relu }").to_torch()
    assert set(m.state_dict()) >= {"007.weight", "__x.0.weight", "__x.0.running_mean"}
    assert {"__y", "g.1", "g.0"} <= {k for k, _ in m.named_modules()}
    assert m(torch.randn(2, 3, 9, 9)).shape == (2, 4, 7, 7)
    assert "getattr(self, '007')" in m.code and "self.__y" not in m.code  # no name mangling
    torch.fx.symbolic_trace(m)
    m.eval()


@pytest.mark.parametrize("name", ["training", "forward", "state_dict", "_modules", "to", "input_names", "__init__",
                                  "def", "None", "lambda"])
def test_labels_that_clash_with_module_attributes_are_refused_at_check(name):
    # torch's add_module refuses these, and `.eval()` would assign a bool over a child called `training`.
    with pytest.raises(resdsl.ResdslError) as e:
        _net(f"relu\n {name}: conv(4, 3)")
    d = e.value.first
    assert (d.code, d.span.line, d.span.col) == ("E019", 4, 2) and ("torch.nn.Module" in d.message or "keyword" in d.message)
    fixed = d.hint.split("`")[1].rstrip(":")  # the hint's suggestion, applied
    m = _net(f"relu\n {fixed}: conv(4, 3)").to_torch().eval()
    assert m(torch.randn(1, 3, 9, 9)).shape == (1, 4, 7, 7) and not m.training


def test_module_attribute_list_covers_torch():
    from resdsl.lowerable import MODULE_ATTRIBUTES
    from resdsl.lowerable import _name_problem
    names = set(dir(torch.nn.Module())) | set(dir(torch.nn.Sequential()))
    assert {n for n in names if not n.startswith("__")} <= MODULE_ATTRIBUTES
    assert all(_name_problem(n) for n in names)  # dunders and torch.compile's ___ patches included


def test_several_inputs_and_outputs():
    net = resdsl.loads("""network two() {
        input a: [3, 8, 8]
        input b: [3, 8, 8]
        l1: conv(4, 3, padding=1)
        output first
        -> p
        from b
        l2: conv(4, 3, padding=1)
        add(p)
        output second
    }""")
    m = net.to_torch(seed=0)
    assert m.input_names == ("a", "b") and m.output_names == ("first", "second")
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    first, second = m(a, b)
    torch.testing.assert_close(first, m.l1(a))
    torch.testing.assert_close(second, m.l2(b) + m.l1(a))


def test_dead_values_free_their_variables():
    # A 30-layer chain needs one variable; the residual keeps one more alive.
    m = resdsl.loads("network c() {\n input x: [4]\n" + "\n".join(" linear(4)" for _ in range(30)) +
                     "\n residual { relu; linear(4) }\n output y\n}").to_torch()
    forward = m.code.split("def forward(self, x):")[1].splitlines()
    names = {line.split(" = ")[0].strip() for line in forward if " = " in line}
    assert names == {"h", "h1"}


# ----------------------------------------------------------------- safety

EVIL = "x'); import os; os._exit(3) #\nimport os\nos._exit(4)\n\"\"\"\n'''"


def _imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module)
    return found


def test_no_code_injection_through_names_values_or_files():
    text = ('network evil(s = "' + EVIL.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '") {\n'
            "    input x: [3, 4, 4]\n    relu\n    output y\n}\n")
    net = resdsl.loads(text, name=EVIL)  # the "file name" is hostile too
    assert net.params["s"] == EVIL
    src = net.torch_source()
    assert _imports(src) == {"torch", "torch.nn", "torch.nn.functional"}
    tree = ast.parse(src)
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert EVIL in strings  # it is data, emitted as a string constant
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "os"]  # never code
    assert all("\n" not in line for line in src.splitlines())
    m = net.to_torch()  # would exit the test process if anything ran
    assert type(m).compiled_params["s"] == EVIL


@pytest.mark.parametrize("field", ["name", "label"])
def test_tampered_ir_names_are_rejected(field):
    net = _net("l: relu\n m: conv(3, 1)")
    for i in (1, 2):  # a functional op (name only in comments) and a module (name in code)
        original = net.nodes[i]
        net.graph.nodes[i] = dataclasses.replace(original, **{field: "l')\nimport os\n#"})
        with pytest.raises(AssertionError, match="invalid layer name"):
            net.torch_source()
        net.graph.nodes[i] = original
    net.torch_source()
    net = _net("l: relu")
    net.graph.name = "t\nimport os"  # only ever a comment or the letters of a class name
    src = net.torch_source()
    assert _imports(src) == {"torch", "torch.nn", "torch.nn.functional"} and "class TImportOs(nn.Module):" in src


def test_reserved_parameter_and_input_names_still_work():
    net = resdsl.loads("network n(nn = 2, torch = 3) {\n input h: [3, 4]\n conv(nn, torch)\n output y\n}")
    m = net.to_torch()
    assert m(torch.randn(1, 3, 4)).shape == (1, 2, 2)
    type(m)(nn=2, torch=3)
    with pytest.raises(ValueError):
        type(m)(nn=5)


# ----------------------------------------------------------------- CLI: resdsl compile

def test_cli_writes_a_standalone_file(tmp_path, capsys):
    out = tmp_path / "model.py"
    args = [str(ROOT / "examples" / "resnet.res"), "--set", "depth=18", "--set", "size=32", "--seed", "5"]
    assert cli_main(["compile", *args, "-o", str(out)]) == 0
    ref = resdsl.compile(str(ROOT / "examples" / "resnet.res"), depth=18, size=32, seed=5).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.save({"x": x, "state": ref.state_dict()}, tmp_path / "data.pt")
    script = f"""
import importlib.util, sys
sys.modules["resdsl"] = None  # only torch may be used
spec = importlib.util.spec_from_file_location("model", {str(out)!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
import torch
torch.manual_seed(5)
m = mod.Resnet(depth=18, size=32).eval()
d = torch.load({str(tmp_path / 'data.pt')!r})
m.load_state_dict(d["state"], strict=True)
with torch.no_grad():
    torch.save(m(d["x"]), {str(tmp_path / 'y.pt')!r})
"""
    r = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt"), ref(x))


def test_cli_seed_reproduces_build(tmp_path):
    out = tmp_path / "m.py"
    assert cli_main(["compile", str(ROOT / "examples" / "unravel4.res"), "--seed", "7", "-o", str(out)]) == 0
    src = out.read_text()
    assert src == resdsl.load(ROOT / "examples" / "unravel4.res").torch_source()
    ns: dict = {}
    exec(compile(src, str(out), "exec"), ns)
    torch.manual_seed(7)
    m = ns["Unravel4"]()
    want = resdsl.compile(str(ROOT / "examples" / "unravel4.res"), seed=7)
    assert all(torch.equal(v, want.state_dict()[k]) for k, v in m.state_dict().items())


def test_cli_errors_are_located_not_tracebacks(tmp_path, capsys):
    bad = tmp_path / "bad.res"
    bad.write_text("network n() {\n    input x: [3, 8, 8]\n    conv(4, 30)\n    output y\n}\n")
    assert cli_main(["compile", str(bad), "-o", str(tmp_path / "m.py")]) == 1
    err = capsys.readouterr().err
    assert "bad.res:3" in err and "Traceback" not in err
    assert not (tmp_path / "m.py").exists()
    assert cli_main(["compile", str(ROOT / "examples" / "unravel4.res")]) == 0  # no output file: source to stdout
    assert "class Unravel4(nn.Module):" in capsys.readouterr().out
    assert cli_main(["compile", str(ROOT / "examples" / "unravel4.res"), "--batch", "0"]) == 2


def test_cli_help_and_json(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["compile", "--help"])
    assert e.value.code == 0
    assert "resdsl compile examples/resnet.res --set depth=50 -o resnet50.py" in capsys.readouterr().out
    out = tmp_path / "u.py"
    assert cli_main(["compile", str(ROOT / "examples" / "unravel4.res"), "-o", str(out), "--json"]) == 0
    assert '"python": "' + str(out) + '"' in capsys.readouterr().out


def test_deepcopy_and_state_dict_round_trip():
    # EMA / SWA copies use deepcopy; checkpoints use state_dict.
    import copy

    m = resdsl.compile(str(ROOT / "examples" / "cifar_resnet.res"), depth=8, seed=0).eval()
    twin = copy.deepcopy(m)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(twin(x), m(x))
    fresh = resdsl.compile(str(ROOT / "examples" / "cifar_resnet.res"), depth=8, seed=1).eval()
    fresh.load_state_dict(m.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), m(x))


def test_in_place_ops_only_where_autograd_allows():
    net = _net("c: conv(3, 3, padding=1) -> a\n relu\n add(a)\n sigmoid\n relu\n b: batchnorm()\n relu\n"
               " l: conv(3, 1) -> t\n relu\n add(t)", "[3, 6, 6]")
    m = net.to_torch(seed=0).train()
    code = m.code
    assert code.count("nn.ReLU(inplace=True)") == 1  # only the ReLU after the batch norm, its output's one reader
    assert "+=" not in code  # both adds read a value that another op also reads
    x = torch.randn(4, 3, 6, 6, requires_grad=True)
    m(x).sum().backward()
    c, b, l = (m.get_submodule(k) for k in "cbl")
    x2 = x.detach().clone().requires_grad_()
    a = F.conv2d(x2, c.weight, c.bias, padding=1)
    h = F.relu(torch.sigmoid(F.relu(a) + a))
    h = F.relu(F.batch_norm(h, None, None, b.weight, b.bias, training=True))
    t = F.conv2d(h, l.weight, l.bias)
    (F.relu(t) + t).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_pickle_round_trip(tmp_path):
    m = resdsl.compile(str(ROOT / "examples" / "cifar_resnet.res"), depth=8, seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    path = tmp_path / "whole.pt"
    torch.save(m, path)
    back = torch.load(path, weights_only=False)
    assert type(back) is type(m)  # same process: the original class
    with torch.no_grad():
        assert torch.equal(back(x), m(x))
        torch.save({"x": x, "y": m(x)}, tmp_path / "xy.pt")
    script = (f"import torch\nm = torch.load({str(path)!r}, weights_only=False)\n"
              f"d = torch.load({str(tmp_path / 'xy.pt')!r})\n"
              "with torch.no_grad():\n    assert torch.equal(m(d['x']), d['y'])\n"
              "assert m.resdsl_network is None and 'def forward' in m.code\nprint(type(m).__name__)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "CifarResnet", r.stderr


def test_deepcopy_keeps_the_class_of_each_build():
    import copy

    net = resdsl.load(ROOT / "examples" / "unravel4.res")
    first, second = net.to_torch(seed=0), net.to_torch(seed=1)
    assert type(copy.deepcopy(first)) is type(first) and type(copy.deepcopy(second)) is type(second)


def test_compile_refuses_too_many_parameters_before_allocating():
    import resdsl
    from resdsl import Limits, ResdslError

    src = "network big() {\n input x: [4096]\n fc: linear(4096)\n output y\n}"
    net = resdsl.loads(src, limits=Limits(max_params=1_000_000))
    with pytest.raises(ResdslError) as e:
        net.to_torch()
    d = e.value.first
    assert d.code == "E040" and "16,781,312 parameters" in d.message and d.span.line == 3
    assert resdsl.loads(src).to_torch().fc.weight.shape == (4096, 4096)  # the default limit allows it


# ----------------------------------------------------------------- hostile names and values: check or compile

_WORDS = ["def", "lambda", "None", "True", "class", "pass", "import", "print", "input", "len", "super", "object",
          "id", "int", "getattr", "self", "torch", "nn", "F", "h", "h1", "x", "x1", "check_params", "init_weight",
          "Container", "DropPath", "extra", "__class__", "__init__", "__dict__", "__x", "__x__", "_", "training",
          "forward", "state_dict", "_modules", "eval", "cuda", "to", "half", "input_names", "code", "0", "007",
          "a", "a_", "a__", "input_2", "input_2_", "input_0", "l" * 18, "Module", "Bottleneck", "OrderedDict"]
# (18 letters: longer names without a `:` after them hit an exponential LABEL regex in the lexer of this
# tree -- 25 letters take 4 s -- which the parser work of issue 14 replaces.)


def _hostile_programs():
    """(id, .res text): every word as a label, an input, a parameter, an output, a block and a network name."""
    for k, w in enumerate(_WORDS):
        yield f"label-{k}", f"network n() {{\n input x: [3, 4]\n {w}: relu\n {w}_: relu\n output y\n}}"
        yield f"block-{k}", (f"block {w}() {{ relu }}\nnetwork n() {{\n input x: [3, 4]\n {w}()\n {w}()\n"
                             f" g: group {{ {w}() }}\n output y\n}}")
        yield f"input-{k}", (f"network n() {{\n input {w}: [3, 4]\n input input_1: [3, 4]\n input input_1_: [3, 4]\n"
                             f" add(input_1, input_1_)\n output y\n}}")
        yield f"param-{k}", f"network n({w}=2, d={{1: [2, 3], \"k\": {{\"z\": none}}}}) {{\n input x: [3, 4]\n conv({w}, 1)\n output {w}\n}}"
        yield f"network-{k}", f"block basic() {{ relu }}\nnetwork {w}() {{\n input x: [3, 4]\n basic()\n output y\n}}"
    branches = "\n".join(" branch { scale(1.0) }" for _ in range(3000))
    yield "add-3000", f"network n() {{\n input x: [1, 2]\n parallel(merge=\"add\") {{\n{branches}\n }}\n output y\n}}"
    yield "concat-3000", (f"network n() {{\n input x: [1, 2]\n parallel(merge=\"concat\") {{\n{branches}\n }}\n"
                          " output y\n}")
    yield "no-layers", "network n() {\n input x: [3]\n output y\n}"
    yield "input-is-output", "network n() {\n input a: [3]\n input b: [3]\n output b\n from a\n relu\n output c\n}"
    for depth in (99, 100):  # layer names of 100 and 101 components; lowerable allows 100
        yield f"nest-{depth}", ("network n() {\n input x: [3, 4]\n" + "g: group {\n" * depth + "relu\n" +
                                "}\n" * depth + " output y\n}")


HOSTILE = list(_hostile_programs())


@pytest.mark.parametrize("text", [t for _, t in HOSTILE], ids=[i for i, _ in HOSTILE])
def test_hostile_names_and_values_are_refused_at_check_or_compile(text):
    """check refuses with a located diagnostic, or the module compiles, runs, and traces with torch.fx."""
    try:
        net = resdsl.loads(text, name="hostile.res")
    except resdsl.ResdslError as e:
        for d in e.diagnostics:
            assert d.span.file == "hostile.res" and d.span.line >= 1 and d.span.col >= 1, e.render()
        return
    src = net.torch_source()
    assert _imports(src) == {"torch", "torch.nn", "torch.nn.functional"}
    m = net.to_torch(seed=0).eval()
    xs = [torch.randn((2,) + s) for s in net.inputs.values()]
    with torch.no_grad():
        y = m(*xs)
        ys = y if isinstance(y, tuple) else (y,)
        assert [tuple(t.shape[1:]) for t in ys] == list(net.outputs.values())
        traced = torch.fx.symbolic_trace(m)
        zs = traced(*xs)
        assert all(torch.equal(a, b) for a, b in zip(ys, zs if isinstance(zs, tuple) else (zs,)))
    type(m)(**{k: v for k, v in net.params.items() if k != "d"})  # the compiled values are accepted back


def test_hostile_corpus_exercises_both_outcomes():
    refused = 0
    for _, text in HOSTILE:
        try:
            resdsl.loads(text)
        except resdsl.ResdslError:
            refused += 1
    assert 0 < refused < len(HOSTILE) // 2


def test_names_differing_by_a_trailing_underscore_get_distinct_arguments():
    net = resdsl.loads("network n() {\n input input_2: [3]\n input input_2_: [3]\n input h: [3]\n"
                       " add(input_2_, h)\n output y\n}")
    m = net.to_torch()
    assert "def forward(self, input_2, input_2_, input_2_1):" in m.code
    a, b, c = torch.randn(3, 1, 3).unbind(0)
    assert torch.equal(m(a, b, c), a + b + c)


def test_a_3000_operand_add_is_chunked_and_exact():
    branches = "\n".join(f" branch {{ scale({k}.0) }}" for k in range(3000))
    net = resdsl.loads(f"network n() {{\n input x: [2]\n parallel(merge=\"add\") {{\n{branches}\n }}\n output y\n}}")
    m = net.to_torch()
    x = torch.tensor([[1.0, 2.0]])
    want = x * 0.0
    for k in range(3000):
        want = want + x * float(k)  # the same order of additions
    assert torch.equal(m(x), want)
    assert max(line.count(" + ") for line in m.code.splitlines()) <= 32


# ----------------------------------------------------------------- the standalone file carries what it uses

@pytest.mark.parametrize("path,name", [pytest.param(p, n, id=f"{p.stem}:{n}") for p in EXAMPLES
                                       for n in load_file(p).networks])
def test_standalone_file_has_only_the_helpers_it_uses_and_runs(path, name):
    net = resdsl.load(path, network=name)
    src = net.torch_source()
    tree = ast.parse(src)
    helpers = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
               and n.name in pytorch.modules.EXPORTS + ("_as_tuple",)}
    used = {}
    for n in tree.body:  # a helper counts as used when another top-level definition names it
        for x in ast.walk(n):
            if isinstance(x, ast.Name) and x.id in helpers and x.id != getattr(n, "name", None):
                used[x.id] = True
    assert set(helpers) == set(used), f"unused helpers in the standalone file: {set(helpers) - set(used)}"
    assert "check_params" in helpers  # every generated constructor guards its parameters
    ns: dict = {"__name__": "standalone"}
    exec(compile(src, f"<{path.stem}.py>", "exec"), ns)  # our own generated text, nothing from the .res file
    torch.manual_seed(0)
    built = net.to_torch().eval()
    again = ns[type(built).__name__]().eval()
    again.load_state_dict(built.state_dict(), strict=True)
    xs = random_inputs(net, batch=2)
    with torch.no_grad():
        a, b = built(*xs), again(*xs)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.equal(u, v)


# ---------------------------------------------------------------- in-place rewriting on random graphs

_STEPS = ["conv(4, 3, padding=1)", "conv(4, 1, bias=false)", "batchnorm()", "groupnorm(2)", "layernorm2d()",
          "relu", "relu6", "silu", "hardswish", "gelu", "sigmoid", "tanh", "hardsigmoid",
          "dropout(0.3)", "drop_path(0.3)", "identity", "scale(0.5)", "layer_scale(init=0.5)",
          "maxpool(3, stride=1, padding=1)"]
_BRANCHES = ["conv(4, 3, padding=1)\n batchnorm()\n relu6", "conv(4, 1)\n silu\n layer_scale(init=0.7)",
             "batchnorm()\n relu\n conv(4, 3, padding=1)\n dropout(0.2)", "relu\n conv(4, 1)\n batchnorm()"]
_RESIDUALS = ["", "post=\"relu\"", "drop_path=0.3", "post=\"relu6\"", "shortcut=\"project\""]


def _random_inplace_net(seed: int) -> str:
    """A network on [4, 6, 6] maps (every value has the same shape, so any two add or multiply) with fan-out
    (a value bound and read again later, `from` an earlier value, outputs that later ops read), skips, residual blocks,
    norms before and after activations, dropout / drop path / identity between a producer and its reader."""
    import random
    rng = random.Random(seed)
    lines, names = ["input x: [4, 6, 6]"], []
    for k in range(rng.randint(5, 12)):
        r = rng.random()
        if r < 0.42:
            lines.append(rng.choice(_STEPS))
        elif r < 0.55:
            lines.append(f"-> t{k}")
            names.append(f"t{k}")
        elif r < 0.68 and names:
            lines.append(f"{rng.choice(['add', 'add', 'mul'])}({rng.choice(names)})")
        elif r < 0.78 and names:
            lines.append(f"from {rng.choice(names)}")
        elif r < 0.85:
            lines.append(f"output o{k}")  # returned, and read on by what follows
        else:
            lines.append(f"residual({rng.choice(_RESIDUALS)}) {{\n {rng.choice(_BRANCHES)}\n}}")
    lines.append(rng.choice(_STEPS[:4]))
    lines.append("output y")
    if names and rng.random() < 0.5:  # a second output: an earlier value that later ops must not overwrite
        lines += [f"from {rng.choice(names)}", "output z"]
    return "network g() {\n" + "\n".join(lines) + "\n}\n"


def _out_of_place(source: str) -> str:
    """The same generated file with every in-place write spelled out of place: the reference."""
    import re
    text = source.replace("inplace=True", "inplace=False")
    return re.sub(r"^(\s*)(h\d*) \+= (\w+)", r"\1\2 = \2 + \3", text, flags=re.M)


def _instantiate(source: str, class_name: str):
    namespace: dict = {}
    exec(compile(source, "<generated>", "exec"), namespace)  # our own generated text
    return namespace[class_name]()


def _run(model, x, train: bool, seed: int):
    """Outputs, parameter and input gradients, buffers and the input after a forward and backward."""
    model.train(train)
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    ys = model(x)
    ys = ys if isinstance(ys, tuple) else (ys,)
    sum((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() for y in ys).backward()
    grads = [p.grad for p in model.parameters()]
    return [y.detach() for y in ys] + grads + [x.grad, x.detach()] + list(model.buffers())


def test_inplace_rewriting_never_changes_outputs_or_gradients():
    """In-place activations and `h += x` (decided from the op facets fresh_output / pass_through and the
    graph's readers) compute exactly what the out-of-place text computes: outputs, every gradient, the BN
    statistics and the input, in training (dropout and drop path drawing the same) and in eval, on 60 random
    graphs with fan-out, skips, several outputs and norms on either side of activations."""
    rewritten = 0
    for seed in range(60):
        text = _random_inplace_net(seed)
        net = resdsl.loads(text)
        gen = pytorch.generated(net)
        ref_source = _out_of_place(gen.source)
        rewritten += ref_source != gen.source
        torch.manual_seed(seed)
        ours = _instantiate(gen.source, gen.class_name)
        ref = _instantiate(ref_source, gen.class_name)
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(seed))
        for train in (True, False):
            got, want = _run(ours, x, train, seed), _run(ref, x, train, seed)
            assert len(got) == len(want)
            for a, b in zip(got, want):
                assert (a is None) == (b is None)
                assert a is None or torch.equal(a, b), (seed, train, text)
            ours.zero_grad(), ref.zero_grad()
    assert rewritten >= 40  # most graphs have something written in place: the comparison is not vacuous


def test_inplace_needs_a_fresh_value_read_once():
    """Where writing in place would be wrong or costly, the text stays out of place: a value read twice (fan-out),
    a value also returned, a network input, a view (linear on tokens, attention), an activation's saved output."""
    def code(body: str, shape: str = "[4, 6, 6]") -> str:
        return resdsl.loads(f"network g() {{\n input x: {shape}\n{body}\n output y\n}}").to_torch().code
    assert "inplace=True" in code("conv(4, 1)\n relu6")
    assert "inplace=True" in code("batchnorm()\n drop_path(0.2)\n dropout(0.1)\n identity\n silu")
    assert "+= " in code("conv(4, 1) -> t\n conv(4, 1)\n layer_scale()\n drop_path(0.1)\n add(t)")
    assert "inplace=True" not in code("relu6")  # the network's input
    assert "inplace=True" not in code("conv(4, 1) -> t\n relu6\n add(t)")  # t is read twice
    assert "inplace=True" not in code("conv(4, 1)\n sigmoid\n relu")  # sigmoid's backward reads its output
    assert "inplace=True" not in code("conv(4, 1)\n output t\n relu")  # t is returned
    assert "inplace=True" not in code("linear(8, pointwise=true)\n relu", "[5, 4]")  # F.linear on [N, D]: a view
    assert "inplace=True" in code("linear(8)\n relu", "[4]")  # on [F]: a new tensor
    assert "+= " not in code("-> t\n attention(2)\n add(t)", "[5, 4]")  # batch_first MHA: a transposed view


def test_sibling_slices_that_cut_a_value_become_one_torch_split():
    """`split` pieces (slices that partition a dim) are one torch.split -- equal pieces by size, others by the
    list of sizes -- and compute what x.narrow per piece computes, gradients included; slices that do not cover
    the value stay narrow views."""
    def build(body: str):
        net = resdsl.loads(f"network g() {{\n input x: [6, 3, 3]\n{body}\n output y\n}}")
        return net.to_torch(seed=0)
    equal = build(" conv(8, 1)\n split(4) -> a{1..4}\n from a3\n concat(a1, a4, a2)\n conv(2, 1)")
    uneven = build(" conv(8, 1)\n split([3, 5]) -> p, q\n from q\n conv(3, 1)\n add(p)")
    partial = build(" conv(8, 1) -> t\n slice(0, 3)\n -> p\n from t\n slice(4, 7)\n add(p)")
    assert "torch.split(h, 2, 1)" in equal.code and "narrow" not in equal.code
    assert "torch.split(h, [3, 5], 1)" in uneven.code
    assert "torch.split" not in partial.code and partial.code.count(".narrow(1, ") == 2
    x = torch.randn(2, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    w = dict(equal.named_parameters())
    with torch.no_grad():
        h = F.conv2d(x, w["conv.weight"], w["conv.bias"])
        a = [h.narrow(1, 2 * k, 2) for k in range(4)]
        want = F.conv2d(torch.cat([a[2], a[0], a[3], a[1]], 1), w["conv_1.weight"], w["conv_1.bias"])
    assert torch.equal(equal(x), want)
    p = dict(uneven.named_parameters())
    xg = x.clone().requires_grad_(True)
    h = F.conv2d(xg, p["conv.weight"], p["conv.bias"])
    ref = F.conv2d(h.narrow(1, 3, 5), p["conv_1.weight"], p["conv_1.bias"]) + h.narrow(1, 0, 3)
    ref.sum().backward()
    xo = x.clone().requires_grad_(True)
    uneven(xo).sum().backward()
    torch.testing.assert_close(xo.grad, xg.grad, rtol=1e-6, atol=1e-6)
