"""Every op's static shape and parameter/buffer counts against PyTorch's own.

For each case we build the one-layer network in resdsl and the matching
torch layer, run a random batch through torch, and compare `.shape` and
`numel` -- torch is the independent reference.
"""

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
    x = torch.randn(batch, *shape)
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
]


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
    covered = {c[0].split("(")[0] for c in CASES} | {"add", "concat", "drop_path", "zeropad"}
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
