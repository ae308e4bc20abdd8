"""The model zoo (examples/*.res) against independent references.

Each model is checked against something resdsl did not compute: a timm model
(ResNet-D, ResNet v2), a hand-written plain-torch module below (WRN, U-Net,
stacked hourglass, ResNet VAE), a closed-form parameter count (CIFAR ResNets,
pre-activation CIFAR ResNets, residual MLP), or the paper's table at its
printed precision.  Where the reference is a torch module whose submodule names
equal ours, its weights are loaded into the compiled network with
strict=True and the outputs compared, which checks the wiring, not just the
count.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
import torch.nn.functional as F
import timm

import resdsl

torch.set_num_threads(1)
EX = Path(__file__).resolve().parent.parent / "examples"


def load(name: str, **params) -> resdsl.Network:
    return resdsl.load(EX / name, **params)


def numel(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def randomize_bn(m: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine values, so eval-mode outputs depend on them."""
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            if mod.affine:
                mod.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


def same_outputs(ours: nn.Module, ref: nn.Module, *inputs: torch.Tensor, tol: float = 1e-5) -> None:
    """Load ref's weights into ours by name (strict) and compare eval-mode outputs."""
    randomize_bn(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    ref.eval()
    with torch.no_grad():
        a, b = ours(*inputs), ref(*inputs)
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert (x - y).abs().max().item() <= tol * max(1.0, y.abs().max().item())


# ---------------------------------------------------------------- ResNet-D and ResNet v2 against timm

def test_resnet50d_equals_timm():
    ref = timm.create_model("resnet50d", pretrained=False)
    net = load("resnet.res", depth=50, variant="d", size=64)
    assert net.param_count == numel(ref) == 25_576_264
    same_outputs(resdsl.compile(net), ref, torch.randn(2, 3, 64, 64))


def test_resnet200d_count_equals_timm():
    assert load("resnet.res", depth=200, variant="d").param_count == numel(timm.create_model("resnet200d"))


@pytest.mark.parametrize("depth,name", [(50, "resnetv2_50"), (101, "resnetv2_101"), (152, "resnetv2_152")])
def test_resnet_v2_count_equals_timm(depth, name):
    assert load("resnet_v2.res", depth=depth).param_count == numel(timm.create_model(name, pretrained=False))


def test_resnet_v2_200_equals_timm_resnetv2_layout():
    from timm.layers import BatchNormAct2d, create_conv2d
    from timm.models.resnetv2 import ResNetV2
    ref = ResNetV2(layers=[3, 24, 36, 3], conv_layer=create_conv2d, norm_layer=BatchNormAct2d)
    assert load("resnet_v2.res", depth=200).param_count == numel(ref)


def test_resnet_v2_50_loads_timm_weights_and_agrees():
    # The projection reads the pre-activated input in timm: equal outputs prove our wiring does too.
    ref = timm.create_model("resnetv2_50", pretrained=False)
    net = load("resnet_v2.res", depth=50, size=64)
    assert net.outputs == {"logits": (1000,)}
    same_outputs(resdsl.compile(net), ref, torch.randn(2, 3, 64, 64))


# ---------------------------------------------------------------- CIFAR ResNets (He et al. 2016, §4.2)


def cifar_count(n: int, shortcut: str = "A", bn: bool = True, per_block: int = 0, extra: int = 0,
                classes: int = 10) -> int:
    """Closed form: 3x3 stem (16), 3 stages of n basic blocks (16/32/64), fc 64 -> classes."""
    p = 3 * 16 * 9 + (2 * 16 if bn else 0)
    cin = 16
    for s in range(3):
        w = 16 * 2 ** s
        for i in range(n):
            p += cin * w * 9 + w * w * 9 + (4 * w if bn else 0) + per_block
            change = cin != w
            if shortcut == "C" or (shortcut == "B" and change):
                p += cin * w + (2 * w if bn else 0)
            cin = w
    return p + 64 * classes + classes + extra


PAPER_TABLE6 = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}


@pytest.mark.parametrize("depth", sorted(PAPER_TABLE6))
def test_cifar_resnet_counts_match_closed_form_and_paper(depth):
    n = (depth - 2) // 6
    p = load("cifar_resnet.res", depth=depth).param_count
    assert p == cifar_count(n)
    digits = 2 if PAPER_TABLE6[depth] < 1 else 1
    assert round(p / 1e6, digits) == PAPER_TABLE6[depth]
    assert load("cifar_resnet.res", depth=depth, plain=True).param_count == p   # plain nets: same counts


@pytest.mark.parametrize("shortcut", ["B", "C"])
def test_cifar_resnet_projection_options(shortcut):
    for depth in (20, 56):
        assert load("cifar_resnet.res", depth=depth, shortcut=shortcut).param_count == \
            cifar_count((depth - 2) // 6, shortcut)


def test_cifar_resnet_scalings_counts():
    # Fixup: no norms, 4 scalar biases + 1 scalar multiplier per block, 2 more around the stem and fc.
    assert load("cifar_resnet.res", depth=20, scale="fixup").param_count == cifar_count(3, bn=False, per_block=5, extra=2)
    # SkipInit without BN: one learnable scalar per block.
    assert load("cifar_resnet.res", depth=20, scale="skipinit", norm="none").param_count == \
        cifar_count(3, bn=False, per_block=1)
    for scale in ("sqrt_half", "stable"):
        assert load("cifar_resnet.res", depth=20, scale=scale).param_count == cifar_count(3)


def test_cifar_resnet_branch_scale_values():
    def scales(**kw):
        net = load("cifar_resnet.res", **kw)
        return [r.attrs["scale"] for r in net.graph.regions if r.kind == "residual"]
    assert scales(depth=20, scale="sqrt_half") == [pytest.approx(2 ** -0.5)] * 9
    assert scales(depth=56, scale="stable") == [pytest.approx(1 / math.sqrt(27))] * 27
    assert scales(depth=20, scale="skipinit", norm="none") == ["learnable"] * 9
    assert len(load("cifar_resnet.res", depth=20, plain=True).graph.regions) == 0


def test_cifar_resnet_fixup_initialisation():
    torch.manual_seed(0)
    m = resdsl.compile(EX / "cifar_resnet.res", depth=20, scale="fixup", seed=0)
    sd = m.state_dict()
    assert not any("bn" in k or "running" in k for k in sd)
    L = 9
    for k, v in sd.items():
        if k.endswith("conv2.weight") or k.startswith("fc."):
            assert v.abs().max().item() == 0.0, k               # last conv of each branch and fc start at 0
        if k.endswith("conv1.weight") and k.startswith("layer"):
            fan_in = v.shape[1] * 9
            want = math.sqrt(2 / fan_in) * L ** -0.5           # He x L^(-1/(2m-2)), m = 2
            assert abs(v.std().item() / want - 1) < 0.15, k
    x = torch.randn(4, 3, 32, 32)
    assert m(x).shape == (4, 10)
    assert m(x).abs().max().item() == 0.0                      # zero fc -> zero logits at init


def test_cifar_resnet_1202_static_only():
    net = load("cifar_resnet.res", depth=1202)
    assert net.param_count == cifar_count(200) == 19_421_274
    assert net.outputs == {"logits": (10,)}


# ---------------------------------------------------------------- pre-activation CIFAR ResNets (He et al. 2016b)


def preact_cifar_count(n: int, bn: bool = True) -> int:
    p = 3 * 16 * 9
    cin = 16
    for s in range(3):
        m = 16 * 2 ** s
        for i in range(n):
            p += cin * m + 9 * m * m + m * 4 * m + (2 * cin + 4 * m if bn else 0)
            if cin != 4 * m:
                p += cin * 4 * m
            cin = 4 * m
    return p + (2 * cin if bn else 0) + cin * 10 + 10


def test_preact_cifar_counts():
    p164 = load("preact_cifar.res", depth=164).param_count
    assert p164 == preact_cifar_count(18) == 1_703_258
    assert round(p164 / 1e6, 1) == 1.7                         # paper: 1.7M
    net = load("preact_cifar.res", depth=1001)
    assert net.param_count == preact_cifar_count(111)
    # The paper's 10.2M matches the weight count without BatchNorm's affine parameters (10.18M);
    # with them it is 10.33M.
    bn = sum(n.params for n in net.nodes if n.op == "batchnorm")
    assert net.param_count - bn == preact_cifar_count(111, bn=False)
    assert round((net.param_count - bn) / 1e6, 1) == 10.2
    assert round(net.param_count / 1e6, 2) == 10.33


# ---------------------------------------------------------------- Wide ResNet (hand-written reference)


class RefWideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.project = cin != cout or stride != 1
        if self.project:
            self.downsample = nn.Sequential()
            self.downsample.add_module("conv", nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        o = F.relu(self.norm1(x))
        shortcut = self.downsample(o) if self.project else x    # projection reads the pre-activated input
        y = self.conv1(o)
        y = F.dropout(F.relu(self.norm2(y)), self.dropout, self.training)
        return shortcut + self.conv2(y)


class RefWRN(nn.Module):
    def __init__(self, depth: int, k: int, dropout: float = 0.0, classes: int = 10):
        super().__init__()
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        cin = 16
        for s in range(3):
            cout = 16 * k * 2 ** s
            blocks = []
            for i in range(n):
                blocks.append(RefWideBlock(cin, cout, 2 if i == 0 and s > 0 else 1, dropout))
                cin = cout
            setattr(self, f"block{s + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


def test_wrn_counts():
    p = load("wrn.res", depth=28, k=10).param_count
    assert p == numel(RefWRN(28, 10)) == 36_479_194          # the published WRN-28-10 count
    assert round(p / 1e6, 1) == 36.5                         # paper: 36.5M
    p = load("wrn.res", depth=40, k=4).param_count
    assert p == numel(RefWRN(40, 4))
    assert round(p / 1e6, 1) == 8.9                          # paper: 8.9M


def test_wrn_module_agrees_with_reference():
    net = load("wrn.res", depth=16, k=2, dropout=0.3)
    ours = resdsl.compile(net)
    ref = RefWRN(16, 2, 0.3)
    assert numel(ours) == numel(ref) == net.param_count
    same_outputs(ours, ref, torch.randn(2, 3, 32, 32))


# ---------------------------------------------------------------- U-Net (hand-written reference)


def double_conv(cin: int, cout: int, pad: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("conv1", nn.Conv2d(cin, cout, 3, padding=pad)), ("relu", nn.ReLU()),
                                      ("conv2", nn.Conv2d(cout, cout, 3, padding=pad)), ("relu_1", nn.ReLU())]))


def center_crop(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (t.shape[2] - h) // 2, (t.shape[3] - w) // 2
    return t[:, :, top:top + h, left:left + w]


class RefUNet(nn.Module):
    def __init__(self, classes: int = 2, channels: int = 1, base: int = 64, pad: int = 0):
        super().__init__()
        c = [base * 2 ** i for i in range(5)]
        cin = channels
        for i in range(4):
            setattr(self, f"down{i + 1}", double_conv(cin, c[i], pad))
            cin = c[i]
        self.bottom = double_conv(c[3], c[4], pad)
        for i in range(4):
            up = nn.Module()
            up.upconv = nn.ConvTranspose2d(c[4 - i], c[3 - i], 2, stride=2)
            up.conv = double_conv(2 * c[3 - i], c[3 - i], pad)
            setattr(self, f"up{i + 1}", up)
        self.final = nn.Conv2d(c[0], classes, 1)

    def forward(self, x):
        skips = []
        for i in range(4):
            x = getattr(self, f"down{i + 1}")(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for i in range(4):
            up = getattr(self, f"up{i + 1}")
            x = up.upconv(x)
            s = skips[3 - i]
            h, w = min(x.shape[2], s.shape[2]), min(x.shape[3], s.shape[3])
            x = up.conv(torch.cat([center_crop(x, h, w), center_crop(s, h, w)], 1))
        return self.final(x)


def test_unet_original_shape_and_count():
    net = load("unet.res")
    assert net.inputs == {"x": (1, 572, 572)}
    assert net.outputs == {"logits": (2, 388, 388)}           # figure 1 of the paper
    assert net.param_count == numel(RefUNet()) == 31_030_658
    same = load("unet.res", padding="same", size=512)
    assert same.outputs == {"logits": (2, 512, 512)} and same.param_count == 31_030_658


@pytest.mark.parametrize("padding,size", [("valid", 188), ("same", 64)])
def test_unet_module_agrees_with_reference(padding, size):
    net = load("unet.res", base=4, padding=padding, size=size)
    ref = RefUNet(base=4, pad=0 if padding == "valid" else 1)
    same_outputs(resdsl.compile(net), ref, torch.randn(1, 1, size, size))
    assert net.outputs["logits"] == tuple(ref(torch.randn(1, 1, size, size)).shape[1:])


# ---------------------------------------------------------------- stacked hourglass (hand-written reference)


class RefModule(nn.Module):
    """Newell's Residual(numIn, numOut): BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (+1x1 skip)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, mid, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(mid), nn.Conv2d(mid, mid, 3, padding=1)
        self.bn3, self.conv3 = nn.BatchNorm2d(mid), nn.Conv2d(mid, cout, 1)
        self.downsample = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        return (self.downsample(x) if self.downsample is not None else x) + y


class RefHourglass(nn.Module):
    def __init__(self, n: int, f: int):
        super().__init__()
        self.up1, self.low1, self.low3 = RefModule(f, f), RefModule(f, f), RefModule(f, f)
        self.low2 = RefHourglass(n - 1, f) if n > 1 else RefModule(f, f)

    def forward(self, x):
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return self.up1(x) + F.interpolate(low, scale_factor=2, mode="nearest")


class RefStackedHourglass(nn.Module):
    def __init__(self, stacks: int = 2, joints: int = 16, f: int = 256, depth: int = 4):
        super().__init__()
        self.stacks = stacks
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64)
        self.layer1, self.layer2, self.layer3 = RefModule(64, 128), RefModule(128, 128), RefModule(128, f)
        for i in range(stacks):
            setattr(self, f"hg{i}", RefHourglass(depth, f))
            setattr(self, f"res{i}", RefModule(f, f))
            setattr(self, f"fc{i}", nn.Sequential(nn.Conv2d(f, f, 1), nn.BatchNorm2d(f), nn.ReLU()))
            setattr(self, f"score{i}", nn.Conv2d(f, joints, 1))
            if i < stacks - 1:
                setattr(self, f"fc_{i}", nn.Conv2d(f, f, 1))
                setattr(self, f"score_{i}", nn.Conv2d(joints, f, 1))

    def forward(self, x):
        x = self.layer1(F.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(F.max_pool2d(x, 2)))
        outs = []
        for i in range(self.stacks):
            y = getattr(self, f"fc{i}")(getattr(self, f"res{i}")(getattr(self, f"hg{i}")(x)))
            score = getattr(self, f"score{i}")(y)
            outs.append(score)
            if i < self.stacks - 1:
                x = x + getattr(self, f"fc_{i}")(y) + getattr(self, f"score_{i}")(score)
        return tuple(outs)


@pytest.mark.parametrize("stacks", [1, 2, 9])
def test_hourglass_counts(stacks):
    net = load("hourglass.res", stacks=stacks)
    assert list(net.outputs) == [f"heatmap{i}" for i in range(stacks)]  # `output heatmap{i}` per stack
    assert net.param_count == numel(RefStackedHourglass(stacks))
    assert list(net.outputs) == [f"heatmap{i}" for i in range(stacks)]
    assert set(net.outputs.values()) == {(16, 64, 64)}         # joints x 64 x 64 from 3 x 256 x 256


def test_hourglass_module_agrees_with_reference():
    net = load("hourglass.res", stacks=2, features=32, size=64, joints=5)
    ref = RefStackedHourglass(2, joints=5, f=32)
    same_outputs(resdsl.compile(net), ref, torch.randn(2, 3, 64, 64))


def test_hourglass_levels_are_residuals_with_processed_shortcuts():
    net = load("hourglass.res", stacks=1)
    custom = [r for r in net.graph.regions if r.kind == "residual" and r.attrs["shortcut"] == "custom"]
    up1 = [r for r in custom if any(net.nodes[i].name.endswith("up1.conv1") for i in r.shortcut)]
    assert len(up1) == 4                                         # one per hourglass level


# ---------------------------------------------------------------- ResNet VAE (hand-written reference)


class RefBasic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class RefUp(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.upsample = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 1, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.upsample(x))


WIDTHS = [32, 64, 128, 256]


class RefEncoder(nn.Module):
    def __init__(self, depth: int, latent: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32)
        cin = 32
        for s, w in enumerate(WIDTHS):
            setattr(self, f"layer{s + 1}", nn.Sequential(*[RefBasic(cin if i == 0 else w, w, 2 if i == 0 and s > 0 else 1)
                                                             for i in range(depth)]))
            cin = w
        self.mu, self.logvar = nn.Linear(256 * 16, latent), nn.Linear(256 * 16, latent)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for s in range(4):
            x = getattr(self, f"layer{s + 1}")(x)
        h = x.flatten(1)
        return self.mu(h), self.logvar(h)


class RefDecoder(nn.Module):
    def __init__(self, depth: int, latent: int):
        super().__init__()
        self.conv1, self.bn1 = nn.ConvTranspose2d(latent, 256, 4, bias=False), nn.BatchNorm2d(256)
        cin = 256
        for s in range(3):
            w = WIDTHS[2 - s]
            setattr(self, f"layer{s + 1}", nn.Sequential(RefUp(cin, w), *[RefBasic(w, w, 1) for _ in range(depth - 1)]))
            cin = w
        self.out = nn.Conv2d(32, 3, 3, 1, 1)

    def forward(self, z):
        x = F.relu(self.bn1(self.conv1(z)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.sigmoid(self.out(x))


@pytest.mark.parametrize("depth", [1, 2])
def test_resnet_vae_counts(depth):
    enc = resdsl.load(EX / "resnet_vae.res", network="encoder", depth=depth, latent=64)
    dec = resdsl.load(EX / "resnet_vae.res", network="decoder", depth=depth, latent=64)
    assert enc.param_count == numel(RefEncoder(depth, 64))
    assert dec.param_count == numel(RefDecoder(depth, 64))
    assert enc.outputs == {"mu": (64,), "logvar": (64,)}
    assert dec.inputs == {"z": (64, 1, 1)} and dec.outputs == {"x_hat": (3, 32, 32)}


def test_resnet_vae_modules_agree_with_reference():
    enc = resdsl.compile(EX / "resnet_vae.res", network="encoder", depth=2, latent=16)
    dec = resdsl.compile(EX / "resnet_vae.res", network="decoder", depth=2, latent=16)
    same_outputs(enc, RefEncoder(2, 16), torch.randn(2, 3, 32, 32))
    same_outputs(dec, RefDecoder(2, 16), torch.randn(2, 16, 1, 1))


# ---------------------------------------------------------------- residual MLP (UDL problems 11.5 / 11.6)


def test_residual_mlp_counts():
    D, K = 100, 50
    linear = D * D + D
    assert load("residual_mlp.res").param_count == linear + K * linear + D + 1
    assert load("residual_mlp.res", variant="scaled").param_count == linear + K * linear + D + 1
    assert load("residual_mlp.res", variant="no_skip").param_count == linear + K * linear + D + 1
    assert load("residual_mlp.res", variant="bn").param_count == linear + K * (linear + 2 * D) + D + 1
    assert len(load("residual_mlp.res", variant="no_skip").graph.regions) == 0


@pytest.mark.parametrize("variant", ["plain", "scaled", "bn", "no_skip"])
def test_residual_mlp_forward_matches_the_equations(variant):
    m = resdsl.compile(EX / "residual_mlp.res", blocks=6, width=12, variant=variant, seed=0).eval()
    sd = m.state_dict()
    x = torch.randn(3, 12)
    h = x @ sd["first.weight"].T + sd["first.bias"]
    for i in range(6):
        u = h
        if variant == "bn":
            u = (u - sd[f"layers.{i}.bn.running_mean"]) / torch.sqrt(sd[f"layers.{i}.bn.running_var"] + 1e-5)
            u = u * sd[f"layers.{i}.bn.weight"] + sd[f"layers.{i}.bn.bias"]
        f = torch.relu(u) @ sd[f"layers.{i}.linear.weight"].T + sd[f"layers.{i}.linear.bias"]
        h = f if variant == "no_skip" else h + f
        if variant == "scaled":
            h = h / math.sqrt(2)                                 # problem 11.6: scale after each block
    y = h @ sd["last.weight"].T + sd["last.bias"]
    with torch.no_grad():
        assert torch.allclose(m(x), y, atol=1e-5)


def test_residual_mlp_he_init():
    m = resdsl.compile(EX / "residual_mlp.res", seed=0)
    w = torch.cat([p.flatten() for k, p in m.state_dict().items() if k.endswith("linear.weight")])
    assert abs(w.var().item() / (2 / 100) - 1) < 0.05           # He: variance 2 / D


# ---------------------------------------------------------------- figure 11.4: four residual blocks, 16 paths


def test_unravel4_paths():
    net = load("unravel4.res")
    assert len(net.graph.regions) == 4
    counts = net.paths()
    assert counts.total == 16
    assert counts.by_length == {k: math.comb(4, k) for k in range(5)}
    # Independently, on the node graph: count input->output paths by the number of linear layers they cross.
    import networkx as nx
    g = net.to_networkx()
    order = list(nx.topological_sort(g))
    src, dst = net.graph.inputs["x"], net.graph.outputs["y"]
    ways = {src: {0: 1}}                       # node -> {linear layers crossed: number of paths}
    for v in order:
        for _, w in g.out_edges(v):            # a MultiDiGraph: a doubled edge is two paths
            step = 1 if net.nodes[w].op == "linear" else 0
            acc = ways.setdefault(w, {})
            for k, c in ways.get(v, {}).items():
                acc[k + step] = acc.get(k + step, 0) + c
    assert ways[dst] == {k: math.comb(4, k) for k in range(5)}


# ---------------------------------------------------------------- every zoo file: header, usage, defaults load


ZOO = ["resnet.res", "resnet_v2.res", "cifar_resnet.res", "preact_cifar.res", "wrn.res", "unet.res",
       "hourglass.res", "resnet_vae.res", "residual_mlp.res", "unravel4.res"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_file_header(name):
    text = (EX / name).read_text()
    first = text.splitlines()[0]
    assert first.startswith("# ") and any(ch.isdigit() for ch in first[:200] + text[:400])   # cites a paper/year
    assert f"# Usage: resdsl summary examples/{name}" in text


@pytest.mark.parametrize("name,params,allowed", [
    ("cifar_resnet.res", {"depth": 21}, "6n+2"),
    ("preact_cifar.res", {"depth": 100}, "9n+2"),
    ("wrn.res", {"depth": 27}, "6n+4"),
    ("hourglass.res", {"depth": 7}, "(depth = 7, (size // 4) % 2 ** depth = 64)"),  # an assert in the file
])
def test_zoo_rejects_unsupported_parameters_with_one_error(name, params, allowed):
    with pytest.raises(resdsl.ResdslError) as e:
        load(name, **params)
    diags = e.value.diagnostics
    assert len(diags) == 1                       # later statements are skipped quietly, not re-reported
    assert allowed in diags[0].message + (diags[0].hint or "")


# ---------------------------------------------------------------- std:blocks against torchvision's blocks


@pytest.mark.parametrize("block,cin,planes,stride", [("basic", 16, 32, 2), ("basic", 32, 32, 1),
                                                     ("bottleneck", 64, 16, 1), ("bottleneck", 32, 16, 2)])
def test_std_blocks_equal_torchvision_blocks(block, cin, planes, stride):
    from torchvision.models import resnet as tv
    down = None
    expansion = 4 if block == "bottleneck" else 1
    if stride != 1 or cin != planes * expansion:
        down = nn.Sequential(nn.Conv2d(cin, planes * expansion, 1, stride, bias=False), nn.BatchNorm2d(planes * expansion))
    cls = tv.Bottleneck if block == "bottleneck" else tv.BasicBlock
    inner = cls(cin, planes, stride, down)
    ref = nn.Sequential()
    ref.add_module("b", inner)
    net = resdsl.loads(f'import "std:blocks"\nnetwork t() {{ input x: [{cin}, 8, 8]\n b: {block}({planes}, {stride}) }}',
                       name=str(EX / "t.res"))
    assert net.param_count == numel(ref)
    same_outputs(resdsl.compile(net), ref, torch.randn(2, cin, 8, 8))
