"""Every op's static shape and parameter/buffer counts against PyTorch's own.

For each case we build the one-layer network in resdsl and the matching
torch layer, run a random batch through torch, and compare `.shape` and
`numel` -- torch is the independent reference.
"""

import copy

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import resdsl
from resdsl import ResdslError

torch.set_num_threads(1)


def static(layer: str, shape: list[int]):
    net = resdsl.loads(f"network t() {{\n input x: {shape}\n {layer}\n output y\n}}")
    node = net.graph.nodes[-1]
    return list(node.shape), node.params, node.buffers


def torch_ref(module_or_fn, shape, batch=2):
    # "int[N]": N token ids (below the smallest vocabulary of the cases)
    x = torch.randint(0, 4, (batch, int(shape[4:-1]))) if isinstance(shape, str) else torch.randn(batch, *shape)
    if isinstance(module_or_fn, nn.Module):
        module_or_fn.eval()
        with torch.no_grad():
            y = module_or_fn(x)
        p = sum(t.numel() for t in module_or_fn.parameters())
        b = sum(t.numel() for t in module_or_fn.buffers())
    else:
        y, p, b = module_or_fn(x), 0, 0
    return list(y.shape[1:]), p, b


CASES = [
    ("conv(8, kernel_size=3)", [3, 17, 19], lambda: nn.Conv2d(3, 8, 3)),
    ("conv(8, 3, stride=2, padding=1, dilation=2, bias=false)", [3, 17, 19],
     lambda: nn.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2, bias=False)),
    ("conv(6, kernel_size=[3, 5], stride=[2, 1], padding=[1, 2], groups=3)", [3, 20, 21],
     lambda: nn.Conv2d(3, 6, (3, 5), stride=(2, 1), padding=(1, 2), groups=3)),
    ('conv(4, 3, padding="same", dilation=2)', [2, 9, 10], lambda: nn.Conv2d(2, 4, 3, padding="same", dilation=2)),
    ('conv(4, 2, padding="same")', [2, 9, 10], lambda: nn.Conv2d(2, 4, 2, padding="same")),
    ('conv(4, 3, padding="valid")', [2, 9, 10], lambda: nn.Conv2d(2, 4, 3, padding="valid")),
    ("conv(5, 3, stride=2)", [2, 30], lambda: nn.Conv1d(2, 5, 3, stride=2)),
    ("conv1d(5, 4, stride=3, padding=2)", [2, 31], lambda: nn.Conv1d(2, 5, 4, stride=3, padding=2)),
    ("conv3d(4, 3, stride=2, padding=1)", [2, 9, 10, 11], lambda: nn.Conv3d(2, 4, 3, stride=2, padding=1)),
    ("conv2d(12, 1, groups=4, bias=false)", [8, 5, 5], lambda: nn.Conv2d(8, 12, 1, groups=4, bias=False)),
    ("conv_transpose(8, 4, stride=2, padding=1)", [3, 7, 7], lambda: nn.ConvTranspose2d(3, 8, 4, stride=2, padding=1)),
    ("conv_transpose(6, 3, stride=2, padding=1, output_padding=1, groups=3)", [3, 7, 8],
     lambda: nn.ConvTranspose2d(3, 6, 3, stride=2, padding=1, output_padding=1, groups=3)),
    ("conv_transpose2d(5, 2, stride=2, bias=false)", [4, 9, 3], lambda: nn.ConvTranspose2d(4, 5, 2, stride=2, bias=False)),
    ("conv_transpose1d(5, 2, stride=2, bias=false)", [4, 9], lambda: nn.ConvTranspose1d(4, 5, 2, stride=2, bias=False)),
    ("conv_transpose3d(2, 3, stride=2, dilation=2)", [3, 4, 5, 6], lambda: nn.ConvTranspose3d(3, 2, 3, stride=2, dilation=2)),
    ("linear(10)", [7], lambda: nn.Linear(7, 10)),
    ("linear(10, bias=false)", [7], lambda: nn.Linear(7, 10, bias=False)),
    ("maxpool(3, stride=2, padding=1)", [3, 14, 15], lambda: nn.MaxPool2d(3, 2, 1)),
    ("maxpool(2)", [3, 15, 15], lambda: nn.MaxPool2d(2)),
    ("maxpool(3, stride=2, ceil_mode=true)", [3, 14, 14], lambda: nn.MaxPool2d(3, 2, ceil_mode=True)),
    ("maxpool(2, stride=2, padding=1, ceil_mode=true)", [3, 5, 6], lambda: nn.MaxPool2d(2, 2, 1, ceil_mode=True)),
    ("maxpool(3, dilation=2, stride=1)", [3, 11, 12], lambda: nn.MaxPool2d(3, 1, dilation=2)),
    ("maxpool(3, stride=2)", [4, 21], lambda: nn.MaxPool1d(3, 2)),
    ("avgpool(3, stride=2, padding=1, ceil_mode=true, count_include_pad=false)", [3, 14, 13],
     lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)),
    ("avgpool(2, stride=2, ceil_mode=true)", [3, 7, 9], lambda: nn.AvgPool2d(2, 2, ceil_mode=True)),
    ("avgpool(2)", [3, 4, 6, 8], lambda: nn.AvgPool3d(2)),
    ("adaptive_avgpool(1)", [5, 7, 9], lambda: nn.AdaptiveAvgPool2d(1)),
    ("adaptive_avgpool([2, 3])", [5, 7, 9], lambda: nn.AdaptiveAvgPool2d((2, 3))),
    ("adaptive_maxpool(4)", [5, 7, 9], lambda: nn.AdaptiveMaxPool2d(4)),
    ("adaptive_avgpool([none, 2])", [5, 7, 9], lambda: nn.AdaptiveAvgPool2d((None, 2))),
    ("global_avgpool", [5, 7, 9], lambda: (lambda x: x.mean((2, 3)))),
    ("global_maxpool", [5, 7], lambda: (lambda x: x.amax(2))),
    ("upsample(scale_factor=2)", [3, 5, 7], lambda: nn.Upsample(scale_factor=2)),
    ("upsample(scale_factor=1.5)", [3, 5, 7], lambda: nn.Upsample(scale_factor=1.5)),
    ('upsample(size=[5, 9], mode="bilinear")', [3, 4, 4], lambda: nn.Upsample(size=(5, 9), mode="bilinear")),
    ("flatten", [3, 4, 5], lambda: nn.Flatten()),
    ("identity", [3, 4], lambda: nn.Identity()),
    ("dropout(0.3)", [3, 4], lambda: nn.Dropout(0.3)),
    ("relu", [6], lambda: nn.ReLU()),
    ("leaky_relu(0.2)", [6], lambda: nn.LeakyReLU(0.2)),
    ("gelu", [6], lambda: nn.GELU()),
    ("silu", [6], lambda: nn.SiLU()),
    ("elu", [6], lambda: nn.ELU()),
    ("sigmoid", [6], lambda: nn.Sigmoid()),
    ("tanh", [6], lambda: nn.Tanh()),
    ("softmax(dim=0)", [6, 2], lambda: nn.Softmax(dim=1)),
    ("batchnorm()", [6, 5, 5], lambda: nn.BatchNorm2d(6)),
    ("batchnorm()", [6], lambda: nn.BatchNorm1d(6)),
    ("batchnorm()", [6, 7], lambda: nn.BatchNorm1d(6)),
    ("batchnorm()", [6, 3, 4, 5], lambda: nn.BatchNorm3d(6)),
    ("batchnorm(affine=false)", [6, 5, 5], lambda: nn.BatchNorm2d(6, affine=False)),
    ("batchnorm(track_running_stats=false)", [6, 5, 5], lambda: nn.BatchNorm2d(6, track_running_stats=False)),
    ("ghost_batchnorm(virtual_batch_size=4)", [6, 5, 5], lambda: nn.BatchNorm2d(6)),
    ("layernorm()", [4, 5, 6], lambda: nn.LayerNorm([4, 5, 6])),
    ("layernorm(dims=1)", [4, 5, 6], lambda: nn.LayerNorm(6)),
    ("layernorm(bias=false)", [10], lambda: nn.LayerNorm(10, bias=False)),
    ("layernorm(elementwise_affine=false)", [10], lambda: nn.LayerNorm(10, elementwise_affine=False)),
    ("groupnorm(2)", [4, 5, 5], lambda: nn.GroupNorm(2, 4)),
    ("groupnorm(num_groups=1, affine=false)", [4, 5], lambda: nn.GroupNorm(1, 4, affine=False)),
    ("instancenorm()", [4, 5, 5], lambda: nn.InstanceNorm2d(4)),
    ("instancenorm(affine=true, track_running_stats=true)", [4, 5, 5],
     lambda: nn.InstanceNorm2d(4, affine=True, track_running_stats=True)),
    ("instancenorm()", [4, 9], lambda: nn.InstanceNorm1d(4)),
    ("crop(size=[5, 6])", [3, 9, 10], lambda: (lambda x: x[:, :, 2:7, 2:8])),
    ("scalar_scale(0.0)", [3, 4], lambda: _Scalar()),
    ("scalar_bias()", [3, 4], lambda: _Scalar()),
    ("scale(0.5)", [3, 4], lambda: (lambda x: x * 0.5)),
    ('gelu(approximate="tanh")', [6], lambda: nn.GELU(approximate="tanh")),
    ("relu6", [3, 4], lambda: nn.ReLU6()),
    ("hardswish", [3, 4], lambda: nn.Hardswish()),
    ("hardsigmoid", [3, 4], lambda: nn.Hardsigmoid()),
    ("mish", [3, 4], lambda: nn.Mish()),
    ("exp", [3, 4], lambda: (lambda x: torch.exp(x))),
    ("softplus(beta=2.0)", [3, 4], lambda: nn.Softplus(beta=2.0)),
    ("layernorm2d()", [6, 4, 5], lambda: _convnext().LayerNorm2d(6)),
    ("layernorm2d(eps=1e-6, bias=false)", [6, 4], lambda: _LN2dNoBias(6)),
    ("layer_scale()", [6, 4, 5], lambda: _LayerScaleRef((6, 1, 1))),
    ("layer_scale(init=0.5, keepdims=false)", [6, 4, 5], lambda: _LayerScaleRef((6,))),
    ("layer_scale()", [6], lambda: _LayerScaleRef((6,))),
    ("flatten(start_dim=1)", [3, 4, 5], lambda: nn.Flatten(2)),
    ("flatten(-1)", [3, 4, 5], lambda: nn.Flatten(3)),
    ("unflatten(0, [2, 3])", [6, 4], lambda: nn.Unflatten(1, (2, 3))),
    ("unflatten(-1, [2, 2])", [6, 4], lambda: nn.Unflatten(2, (2, 2))),
    ("reshape([12, -1])", [3, 4, 5], lambda: (lambda x: x.reshape(x.shape[0], 12, -1))),
    ("permute([1, 2, 0])", [3, 4, 5], lambda: (lambda x: x.permute(0, 2, 3, 1))),
    ("transpose(0, -1)", [3, 4, 5], lambda: (lambda x: x.transpose(1, 3))),
    ("slice(1, 3)", [5, 4, 4], lambda: (lambda x: x[:, 1:3])),
    ("slice(0, 2, dim=2)", [5, 4, 3], lambda: (lambda x: x[:, :, :, 0:2])),
    ("drop_path(0.2)", [3, 4], lambda: _torchvision_ops().StochasticDepth(0.2, "row")),
    ('drop_path(0.2, mode="batch")', [3, 4], lambda: _torchvision_ops().StochasticDepth(0.2, "batch")),
    # token sequences [N, D] (values, masks and torchvision/GPT-2 weights: tests/test_transformer.py)
    ("attention(2)", [5, 8], lambda: _SelfAttention(8, 2)),
    ("attention(4, causal=true, bias=false)", [5, 8], lambda: _SelfAttention(8, 4, bias=False)),
    ("sdpa(2)", [5, 24], lambda: (lambda x: F.scaled_dot_product_attention(
        *(t.unflatten(2, (2, 4)).transpose(1, 2) for t in x.split(8, 2))).transpose(1, 2).flatten(2))),
    ("class_token()", [5, 8], lambda: _Tokens("class", (1, 1, 8))),
    ("pos_embedding()", [5, 8], lambda: _Tokens("pos", (1, 5, 8))),
    ("pos_embedding(12)", [5, 8], lambda: _Tokens("table", (12, 8))),
    ("token(0)", [5, 8], lambda: (lambda x: x[:, 0])),
    ("token(-1)", [5, 8], lambda: (lambda x: x[:, -1])),
    ("token_mean", [5, 8], lambda: (lambda x: x.mean(1))),
    ("embedding(11, 4)", "int[5]", lambda: nn.Embedding(11, 4)),
]


class _SelfAttention(nn.Module):
    def __init__(self, d, h, bias=True):
        super().__init__()
        self.a = nn.MultiheadAttention(d, h, bias=bias, batch_first=True)

    def forward(self, x):
        return self.a(x, x, x, need_weights=False)[0]


class _Tokens(nn.Module):  # torchvision ViT's class token / position embedding; GPT-2's wpe table
    def __init__(self, kind, shape):
        super().__init__()
        self.kind, self.p = kind, nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        if self.kind == "class":
            return torch.cat([self.p.expand(x.shape[0], -1, -1), x], 1)
        return x + (self.p if self.kind == "pos" else self.p[:x.shape[1]])


def _convnext():
    from torchvision.models import convnext
    return convnext


def _torchvision_ops():
    import torchvision.ops
    return torchvision.ops


class _LN2dNoBias(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c, eps=1e-6, bias=False)

    def forward(self, x):
        return self.ln(x.movedim(1, -1)).movedim(-1, 1)


class _LayerScaleRef(nn.Module):  # torchvision's CNBlock: a bare nn.Parameter multiplied with `*`
    def __init__(self, shape):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.ones(shape) * 1e-6)

    def forward(self, x):
        return x * (self.layer_scale if self.layer_scale.dim() == x.dim() - 1 or x.dim() == 2
                    else self.layer_scale[:, None, None])


class _Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x * self.p


@pytest.mark.parametrize("layer,shape,ref", CASES, ids=[f"{c[0]}@{c[1]}" for c in CASES])
def test_shape_and_counts_match_torch(layer, shape, ref):
    assert static(layer, shape) == tuple(torch_ref(ref(), shape))


def test_every_user_op_is_covered():
    from resdsl import ops
    covered = {c[0].split("(")[0] for c in CASES} | {"add", "concat", "zeropad", "mul", "sample"}
    missing = {n for n, s in ops.OPS.items() if s.user} - covered - {"input"}
    assert not missing, f"ops without a torch comparison: {sorted(missing)}"


def test_merges_match_torch():
    net = resdsl.loads("""network t() {
        input x: [4, 9, 9]
        conv(6, 3) -> a
        from x
        conv(2, 1) -> b
        concat(a, crop=true) -> c
        from a
        add(a, a)
        output s
        output c
    }""")
    x = torch.randn(2, 4, 9, 9)
    a, b = nn.Conv2d(4, 6, 3)(x), nn.Conv2d(4, 2, 1)(x)  # the two branches, computed by torch
    off = (b.shape[2] - a.shape[2]) // 2                    # center crop of b to a's 7x7
    c = torch.cat([b[:, :, off:off + a.shape[2], off:off + a.shape[3]], a], 1)
    assert net.outputs["s"] == tuple((a + a + a).shape[1:])
    assert net.outputs["c"] == tuple(c.shape[1:]) == (8, 7, 7)
    # add(a, a) after `from a` sums three operands: two edges from the same node are kept
    g = net.to_networkx()
    add = next(n for n in net.nodes if n.op == "add")
    assert len(add.inputs) == 3 and g.number_of_edges(add.inputs[0], add.id) == 3


def test_zeropad_shortcut_matches_option_a():
    net = resdsl.loads("""network t() {
        input x: [16, 32, 32]
        residual(shortcut="zeropad") { conv(32, 3, stride=2, padding=1, bias=false) }
        output y
    }""")
    x = torch.randn(2, 16, 32, 32)
    sub = x[:, :, ::2, ::2]
    padded = F.pad(sub, (0, 0, 0, 0, 0, 16))
    assert list(net.outputs["y"]) == list(padded.shape[1:])
    assert net.param_count == sum(p.numel() for p in nn.Conv2d(16, 32, 3, bias=False).parameters())


INVALID = [  # torch refuses these too; resdsl must refuse them statically
    ("conv(8, kernel_size=7)", [3, 5, 5], lambda: nn.Conv2d(3, 8, 7), "E034"),
    ("conv(8, kernel_size=3, groups=2)", [3, 9, 9], lambda: nn.Conv2d(3, 8, 3, groups=2), "E035"),
    ("conv(9, kernel_size=3, groups=2)", [4, 9, 9], lambda: nn.Conv2d(4, 9, 3, groups=2), "E035"),
    ('conv(8, 3, stride=2, padding="same")', [3, 9, 9], lambda: nn.Conv2d(3, 8, 3, stride=2, padding="same"), "E014"),
    ("maxpool(2, padding=2)", [3, 9, 9], lambda: nn.MaxPool2d(2, padding=2), "E014"),
    ("maxpool(5)", [3, 4, 4], lambda: nn.MaxPool2d(5), "E034"),
    ("groupnorm(3)", [4, 5, 5], lambda: nn.GroupNorm(3, 4), "E035"),
    ("conv_transpose(4, 3, stride=2, output_padding=2)", [3, 5, 5],
     lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2), "E014"),
]


@pytest.mark.parametrize("layer,shape,ref,code", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_layers_rejected_like_torch(layer, shape, ref, code):
    with pytest.raises((RuntimeError, ValueError)):
        torch_ref(ref(), shape)
    with pytest.raises(ResdslError) as e:
        static(layer, shape)
    assert e.value.first.code == code
    assert e.value.first.span.line == 3


@pytest.mark.parametrize("layer,ref", [
    ("conv_transpose(4, 3, stride=0)", lambda: nn.ConvTranspose2d(3, 4, 3, stride=0)),
    ("conv_transpose(4, 3, padding=-1)", lambda: nn.ConvTranspose2d(3, 4, 3, padding=-1)),
    ("conv(4, 3, stride=0)", lambda: nn.Conv2d(3, 4, 3, stride=0)),
])
def test_non_positive_arguments_rejected_like_torch(layer, ref):
    with pytest.raises((RuntimeError, ValueError)):
        torch_ref(ref(), [3, 9, 9])
    with pytest.raises(ResdslError) as e:
        static(layer, [3, 9, 9])
    assert e.value.first.code == "E014"


# ----------------------------------------------------------------- values through the compiled module

def _net(body: str, shape: str):
    return resdsl.loads(f"network t() {{\n    input x: {shape}\n{body}\n    output y\n}}\n")


def _sub(m, name):
    return m.get_submodule(name)


VALUE_CASES = [  # (op, input shape, .res body, train mode, reference(model, x)) -- each op against torch's own function
    ("relu6", "[3, 4, 5]", "scale(4.0)\n relu6", False, lambda m, x: F.relu6(4 * x)),
    ("hardswish", "[3, 4, 5]", "scale(4.0)\n hardswish", False, lambda m, x: nn.Hardswish()(4 * x)),
    ("hardsigmoid", "[3, 4, 5]", "scale(4.0)\n hardsigmoid", False, lambda m, x: nn.Hardsigmoid()(4 * x)),
    ("mish", "[3, 4, 5]", "mish", False, lambda m, x: x * torch.tanh(F.softplus(x))),
    ("exp", "[3, 4, 5]", "exp", False, lambda m, x: torch.exp(x)),
    ("softplus", "[3, 4, 5]", "softplus(2.0, threshold=1.0)", False, lambda m, x: nn.Softplus(2.0, 1.0)(x)),
    ("gelu", "[3, 4, 5]", 'gelu(approximate="tanh")', False, lambda m, x: nn.GELU(approximate="tanh")(x)),
    ("layernorm2d", "[6, 4, 5]", "l: layernorm2d(eps=1e-6)", True,
     lambda m, x: _ln2d_ref(_sub(m, "l"), x)),
    ("layer_scale", "[6, 4, 5]", "ls: layer_scale(0.5)", False, lambda m, x: x * 0.5),
    ("layer_scale", "[6, 4, 5]", "ls: layer_scale(0.5, keepdims=false)", False, lambda m, x: x * 0.5),
    ("flatten", "[3, 4, 5]", "flatten(1)", False, lambda m, x: torch.flatten(x, 2)),
    ("unflatten", "[6, 4]", "unflatten(0, [3, 2])", False, lambda m, x: x.reshape(x.shape[0], 3, 2, 4)),
    ("reshape", "[3, 4, 5]", "reshape([-1, 10])", False, lambda m, x: x.reshape(x.shape[0], 6, 10)),
    ("permute", "[3, 4, 5]", "permute([1, 2, 0])", False, lambda m, x: x.permute(0, 2, 3, 1)),
    # ShuffleNetV2's channel shuffle from the view ops, against torchvision's own function
    ("transpose", "[6, 4, 5]", "unflatten(0, [2, 3])\n transpose(0, 1)\n reshape([6, 4, 5])", False,
     lambda m, x: __import__("torchvision.models.shufflenetv2", fromlist=["x"]).channel_shuffle(x, 2)),
    ("transpose", "[3, 4, 5]", "transpose(1, 2)", False, lambda m, x: x.transpose(2, 3)),
    ("slice", "[5, 4, 4]", "slice(1, 4)", False, lambda m, x: x[:, 1:4]),
    # found by the oracle: torch's 1d adaptive pooling takes no None, so `none` is resolved statically
    ("adaptive_maxpool", "[3, 7]", "adaptive_maxpool([none])", False, lambda m, x: F.adaptive_max_pool1d(x, 7)),
    ("adaptive_avgpool", "[3, 7, 5]", "adaptive_avgpool([none, 2])", False,
     lambda m, x: F.adaptive_avg_pool2d(x, (None, 2))),
    ("mul", "[3, 4, 5]", "-> a\n relu\n mul(a)", False, lambda m, x: x.clamp(min=0) * x),
    # squeeze-and-excitation with a [C] gate (linear layers) and with a [C, 1, 1] gate (1x1 convs, as timm)
    ("mul", "[4, 5, 6]", "-> a\n global_avgpool\n fc: linear(4)\n sigmoid\n mul(a)", False,
     lambda m, x: x * torch.sigmoid(F.linear(x.mean((2, 3)), _sub(m, "fc").weight, _sub(m, "fc").bias))[:, :, None, None]),
    ("mul", "[4, 5, 6]", "-> a\n adaptive_avgpool(1)\n fc: conv(4, 1)\n sigmoid\n mul(a)", False,
     lambda m, x: x * torch.sigmoid(F.conv2d(F.adaptive_avg_pool2d(x, 1), _sub(m, "fc").weight, _sub(m, "fc").bias))),
    ("mul", "[4, 5, 6]", "-> a\n global_avgpool\n -> g\n from a\n relu\n mul(g)", False,
     lambda m, x: x.clamp(min=0) * x.mean((2, 3))[:, :, None, None]),
    ("sample", "[6]", "-> h\n mu: linear(3)\n -> mu\n from h\n lv: linear(3)\n -> lv\n from mu\n sample(lv)", False,
     lambda m, x: F.linear(x, _sub(m, "mu").weight, _sub(m, "mu").bias)),
    ("drop_path", "[3, 4, 5]", "drop_path(0.5)", False, lambda m, x: x),
    # token sequences: attention written out by hand (softmax(q k^T / sqrt(d_head) + mask) v, per head)
    ("attention", "[5, 8]", "a: attention(2)", False,
     lambda m, x: _attn_ref(F.linear(x, m.a.in_proj_weight, m.a.in_proj_bias), 2, False, m.a.out_proj)),
    ("attention", "[6, 8]", "a: attention(4, causal=true, bias=false)", False,
     lambda m, x: _attn_ref(F.linear(x, m.a.in_proj_weight), 4, True, m.a.out_proj)),
    ("sdpa", "[5, 24]", "sdpa(2)", False, lambda m, x: _attn_ref(x, 2, False)),
    ("sdpa", "[6, 36]", "sdpa(3, causal=true)", False, lambda m, x: _attn_ref(x, 3, True)),
    ("class_token", "[5, 8]", "ct: class_token()", False,
     lambda m, x: torch.cat([torch.zeros(x.shape[0], 1, 8), x], 1)),
    ("pos_embedding", "[5, 8]", "pe: pos_embedding()", False, lambda m, x: x + m.state_dict()["pe"]),
    ("pos_embedding", "[5, 8]", "pe: pos_embedding(9)", False, lambda m, x: x + m.state_dict()["pe.weight"][:5]),
    ("token", "[5, 8]", "token(2)", False, lambda m, x: x[:, 2]),
    ("token_mean", "[5, 8]", "token_mean", False, lambda m, x: x.sum(1) / 5),
    ("embedding", "int[5]", "e: embedding(11, 4)", False, lambda m, x: m.state_dict()["e.weight"][x]),
]


def _attn_ref(qkv, h, causal, proj=None):
    b, n, d3 = qkv.shape
    q, k, v = (t.reshape(b, n, h, -1).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    y = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d3 // 3)
    return y if proj is None else F.linear(y, proj.weight, proj.bias)


def _ln2d_ref(mod, x):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), mod.weight, mod.bias, 1e-6).permute(0, 3, 1, 2)


@pytest.mark.parametrize("case", VALUE_CASES, ids=[f"{c[0]}:{c[2]}" for c in VALUE_CASES])
def test_new_op_values_match_torch(case):
    op, shape, body, train, ref = case
    net = _net(body, shape)
    assert op in {n.op for n in net.nodes}
    model = net.to_torch(seed=0).train(train)
    gen = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 11, (4,) + net.inputs["x"], generator=gen) if shape.startswith("int") else
         torch.randn((4,) + net.inputs["x"], generator=gen))
    got = model(x)
    want = ref(model, x)
    assert tuple(got.shape[1:]) == net.outputs["y"] == tuple(want.shape[1:])
    assert got.numel() == want.numel()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_drop_path_draws_what_torchvision_stochastic_depth_draws():
    from torchvision.ops import StochasticDepth
    for mode in ("row", "batch"):
        for p in (0.3, 1.0):
            model = _net(f'drop_path({p}, mode="{mode}")', "[3, 4, 5]").to_torch(seed=0).train()
            x = torch.randn(16, 3, 4, 5)
            torch.manual_seed(7)
            got = model(x)
            torch.manual_seed(7)
            want = StochasticDepth(p, mode).train()(x)
            assert torch.equal(got, want)


def test_layer_scale_state_dict_key_is_its_label():
    # torchvision convnext_tiny: features.1.0.layer_scale of shape [96, 1, 1]; timm: stages.0.blocks.0.gamma [96]
    for keep, shape in (("true", (6, 1, 1)), ("false", (6,))):
        net = _net(f"b: group {{ layer_scale: layer_scale(keepdims={keep}) }}", "[6, 4, 5]")
        model = net.to_torch(seed=0)
        sd = model.state_dict()
        assert list(sd) == ["b.layer_scale"] and tuple(sd["b.layer_scale"].shape) == shape
        assert [k for k, _ in model.named_parameters()] == ["b.layer_scale"]
        assert net.param_count == 6
        torch.testing.assert_close(sd["b.layer_scale"], torch.full(shape, 1e-6))
        gamma = torch.randn(shape)
        model.load_state_dict({"b.layer_scale": gamma}, strict=True)
        x = torch.randn(2, 6, 4, 5)
        want = x * (gamma if len(shape) == 3 else gamma[:, None, None])
        torch.testing.assert_close(model(x), want)
        twin = copy.deepcopy(model)
        with torch.no_grad():
            twin.state_dict()["b.layer_scale"].mul_(2)
        torch.testing.assert_close(twin(x), 2 * want)  # the copy computes with its own parameter
        torch.testing.assert_close(model(x), want)
        with pytest.raises(RuntimeError):
            model.load_state_dict({"b.layer_scale.weight": gamma}, strict=True)
        with pytest.raises(RuntimeError):
            model.load_state_dict({"b.layer_scale": torch.randn(7)}, strict=True)


def test_sample_draws_noise_in_training_and_the_mean_in_eval():
    body = "-> h\n mu: linear(3)\n -> mu\n from h\n lv: linear(3)\n -> lv\n from mu\n sample(lv)"
    for ev in ("mean", "sample"):
        net = _net(body.replace("sample(lv)", f'sample(lv, eval="{ev}")'), "[6]")
        model = net.to_torch(seed=0)
        x = torch.randn(5, 6)
        mu = F.linear(x, _sub(model, "mu").weight, _sub(model, "mu").bias)
        lv = F.linear(x, _sub(model, "lv").weight, _sub(model, "lv").bias)
        for train in (True, False):
            model.train(train)
            torch.manual_seed(3)
            got = model(x)
            torch.manual_seed(3)
            noisy = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
            torch.testing.assert_close(got, noisy if train or ev == "sample" else mu)


@pytest.mark.parametrize("body,shape", [
    ("-> a\n global_avgpool\n -> g\n from a\n conv(3, 1)\n mul(g)", "[4, 5, 6]"),   # gate channels differ
    ("-> a\n avgpool(5)\n -> g\n from a\n mul(g)", "[4, 5, 5]"),                    # [C, 1, 1] OK, see below
    ("-> a\n avgpool(2)\n -> g\n from a\n mul(g)", "[4, 4, 4]"),                    # [C, 2, 2]: no broadcast
    ("-> a\n flatten\n -> g\n from a\n mul(g)", "[2, 2]"),                          # [4] vs [2, 2]
    ("-> a\n relu\n -> b\n from a\n mul(a, b)", "[4, 5, 5]"),                       # one gate only
])
def test_mul_broadcasts_only_per_channel_gates(body, shape):
    x = torch.randn(2, *eval(shape))
    ok = "avgpool(5)" in body
    if ok:
        net = _net(body, shape)
        assert net.outputs["y"] == (4, 5, 5)
        return
    with pytest.raises(ResdslError) as e:
        _net(body, shape)
    assert e.value.first.code in ("E032", "E013")
    assert "hint" not in e.value.first.code and e.value.first.hint
    del x


@pytest.mark.parametrize("body,hint", [
    ("dense { conv(2, 3) }", "dense(crop=true)"),
    ('parallel {\n branch { conv(2, 3) }\n branch { conv(2, 1) }\n }', 'parallel(merge="concat", crop=true)'),
    ("-> a\n conv(2, 3)\n concat(a)", "concat(..., crop=true)"),
])
def test_concat_mismatch_hint_names_the_construct(body, hint):
    with pytest.raises(ResdslError) as e:
        _net(body, "[3, 9, 9]")
    assert e.value.first.code == "E031" and hint in e.value.first.hint


def test_transposed_conv_that_shrinks_to_nothing_hints_less_padding():
    with pytest.raises(ResdslError) as e:
        _net("conv_transpose(4, 3, padding=3)", "[3, 2, 2]")
    with pytest.raises(RuntimeError):
        nn.ConvTranspose2d(3, 4, 3, padding=3)(torch.randn(1, 3, 2, 2))
    d = e.value.first
    assert d.code == "E034" and "less padding" in d.hint and "add padding" not in d.hint
    # following the hint works: with padding 1 torch and resdsl agree on [4, 2, 2]
    assert _net("conv_transpose(4, 3, padding=1)", "[3, 2, 2]").outputs["y"] == (4, 2, 2) == tuple(
        nn.ConvTranspose2d(3, 4, 3, padding=1)(torch.randn(1, 3, 2, 2)).shape[1:])


@pytest.mark.parametrize("layer,shape,ref", [  # found by the oracle: in ceil mode a window may overhang the input
    ("avgpool(7, ceil_mode=true)", [4, 4, 6], lambda: nn.AvgPool2d(7, ceil_mode=True)),
    ("maxpool(7, ceil_mode=true)", [4, 4, 6], lambda: nn.MaxPool2d(7, ceil_mode=True)),
    ("maxpool(3, stride=3, dilation=2, ceil_mode=true)", [2, 4, 5], lambda: nn.MaxPool2d(3, 3, dilation=2, ceil_mode=True)),
])
def test_ceil_mode_windows_overhanging_the_input(layer, shape, ref):
    assert static(layer, shape) == tuple(torch_ref(ref(), shape))
