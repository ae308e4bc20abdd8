"""Compiled examples/resnet.res and examples/densenet.res against torchvision.

torchvision's state_dicts load with strict=True (same names, shapes and
buffers), and with identical weights the eval-mode outputs agree to 1e-5.
BN running statistics and affine parameters are randomised before copying so
the comparison is not between near-identity networks.  Forward passes run at
64x64; the 224x224 shapes are checked on the meta device (no compute): every
torchvision module's output shape equals the IR node of the same name.
In train mode, gradients and updated BN statistics agree with torchvision's.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import resdsl

ROOT = Path(__file__).resolve().parent.parent
RESNET = ROOT / "examples" / "resnet.res"
DENSENET = ROOT / "examples" / "densenet.res"

RESNETS = {  # torchvision constructor -> resnet.res parameters
    "resnet18": dict(depth=18),
    "resnet34": dict(depth=34),
    "resnet50": dict(depth=50),
    "resnet101": dict(depth=101),
    "resnet152": dict(depth=152),
    "wide_resnet50_2": dict(depth=50, width_per_group=128),
    "resnext50_32x4d": dict(depth=50, groups=32, width_per_group=4),
}
BIG_RESNETS = {  # checked by state_dict load and parameter count only (no forward)
    "resnext101_32x8d": dict(depth=101, groups=32, width_per_group=8),
    "resnext101_64x4d": dict(depth=101, groups=64, width_per_group=4),
    "wide_resnet101_2": dict(depth=101, width_per_group=128),
}
DENSENETS = {f"densenet{d}": dict(depth=d) for d in (121, 161, 169, 201)}


def _materialize(tv: torch.nn.Module, seed: int) -> None:
    """Give a meta-device torchvision net random CPU weights (cheaper than its own init for 60M parameters).

    Weights ~ N(0, 1/fan_in); BN statistics and affine parameters are random too (a fresh torchvision net has
    mean 0, var 1, gamma 1, beta 0, which would make the normalisation layers trivial)."""
    tv.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def _compare(tv_name: str, path: Path, params: dict, seed: int = 0) -> float:
    with torch.device("meta"):
        tv = getattr(torchvision.models, tv_name)()
        ours = resdsl.compile(str(path), size=64, **params)
    _materialize(tv, seed)
    ours.load_state_dict(tv.state_dict(), strict=True, assign=True)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv.parameters())
    assert sum(b.numel() for b in ours.buffers()) == sum(b.numel() for b in tv.buffers())
    tv.eval()
    ours.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        want, got = tv(x), ours(x)
    assert got.shape == want.shape == (2, 1000)
    assert want.abs().max() > 0.1  # not a degenerate comparison
    diff = (got - want).abs().max().item()
    print(f"{tv_name}: max abs diff {diff:.3g} (outputs up to {want.abs().max().item():.3g})")
    return diff


@pytest.mark.parametrize("name", list(RESNETS))
def test_resnet_matches_torchvision(name):
    assert _compare(name, RESNET, RESNETS[name]) <= 1e-5


@pytest.mark.parametrize("name", list(DENSENETS))
def test_densenet_matches_torchvision(name):
    assert _compare(name, DENSENET, DENSENETS[name]) <= 1e-5


@pytest.mark.parametrize("name", list(BIG_RESNETS))
def test_big_resnets_load_torchvision_weights(name):
    # Built on the meta device: names, shapes and counts are checked without allocating 80M-parameter nets.
    with torch.device("meta"):
        tv = getattr(torchvision.models, name)()
        ours = resdsl.compile(str(RESNET), **BIG_RESNETS[name])
    ours.load_state_dict(tv.state_dict(), strict=True, assign=True)
    n_tv = sum(p.numel() for p in tv.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_tv == ours.resdsl_network.param_count
    print(f"{name}: {n_tv} parameters")


def _module_shapes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape (without batch) of every module that owns parameters or buffers, by qualified name
    (torchvision calls its parameter-free ReLU modules several times, so those are skipped)."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
             for name, m in model.named_modules()
             if list(m.parameters(recurse=False)) or list(m.buffers(recurse=False))]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


@pytest.mark.parametrize("name,path,params", [
    ("resnet50", RESNET, RESNETS["resnet50"]),
    ("resnext50_32x4d", RESNET, RESNETS["resnext50_32x4d"]),
    ("densenet161", DENSENET, DENSENETS["densenet161"]),
])
def test_shapes_at_224_match_torchvision(name, path, params):
    net = resdsl.load(str(path), **params)
    with torch.device("meta"):
        tv = getattr(torchvision.models, name)().eval()
        tv_shapes = _module_shapes(tv, torch.empty(1, 3, 224, 224))
    ir = {n.name: n.shape for n in net.nodes}
    checked = 0
    for mod_name, shape in tv_shapes.items():
        assert ir[mod_name] == shape, mod_name
        checked += 1
    assert checked >= len([n for n in net.nodes if n.params]) > 50
    assert net.outputs == {"logits": (1000,)}


def test_densenet_bc_cifar():
    # DenseNet-BC (L=100, k=12): Huang et al. 2017, Table 2 lists 0.8M parameters.  Independent exact count:
    # torchvision's DenseNet class with the same blocks, minus its ImageNet stem (7x7 conv0 + norm0) plus the
    # paper's CIFAR stem (a 3x3 conv to 2k = 24 channels).
    net = resdsl.load(str(DENSENET), cifar=True, depth=100, growth=12)
    tv = torchvision.models.DenseNet(growth_rate=12, block_config=(16, 16, 16), num_init_features=24, bn_size=4,
                                     num_classes=10)
    expected = sum(p.numel() for p in tv.parameters()) - 3 * 24 * 49 - 2 * 24 + 3 * 24 * 9
    assert net.param_count == expected
    assert round(net.param_count / 1e5) == 8
    assert net.inputs == {"x": (3, 32, 32)} and net.outputs == {"logits": (10,)}
    # 3 blocks of (100 - 4) / 6 = 16 layers; transitions halve: 24 + 16*12 = 216 -> 108 -> 300 -> 150 -> 342.
    shapes = {n.name: n.shape for n in net.nodes}
    assert shapes["features.transition1.conv"] == (108, 32, 32)
    assert shapes["features.transition1.pool"] == (108, 16, 16)
    assert shapes["features.transition2.pool"] == (150, 8, 8)
    assert shapes["features.norm5"] == (342, 8, 8)
    model = net.to_torch(seed=0).eval()
    sd = {k: v for k, v in tv.state_dict().items() if not k.startswith(("features.conv0", "features.norm0"))}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert missing == ["features.conv0.weight"] and unexpected == []
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_densenet264_counts():
    # Not in torchvision: (6, 12, 64, 48) blocks, k = 32.  Closed form for the parameter count.
    net = resdsl.load(str(DENSENET), depth=264)
    k, bn = 32, 4
    total, c = 3 * 64 * 49 + 2 * 64, 64
    for i, n in enumerate((6, 12, 64, 48)):
        for _ in range(n):
            total += 2 * c + c * bn * k + 2 * bn * k + bn * k * k * 9
            c += k
        if i < 3:
            total += 2 * c + c * (c // 2)
            c //= 2
    total += 2 * c + c * 1000 + 1000
    assert net.param_count == total
    assert c == 2688


@pytest.mark.parametrize("name,path,params", [
    ("resnet18", RESNET, RESNETS["resnet18"]),
    ("resnet50", RESNET, RESNETS["resnet50"]),
    ("densenet121", DENSENET, DENSENETS["densenet121"]),
])
def test_training_step_matches_torchvision(name, path, params):
    # Train mode: batch statistics, running-stat updates and gradients (through the generated code's
    # in-place ReLUs and adds) must agree with torchvision's.
    with torch.device("meta"):
        tv = getattr(torchvision.models, name)()
        ours = resdsl.compile(str(path), size=64, **params)
    _materialize(tv, 0)
    ours.load_state_dict({k: v.clone() for k, v in tv.state_dict().items()}, strict=True, assign=True)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([1, 7, 3, 999])
    for model in (tv, ours):
        model.train()
        torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = dict(tv.named_parameters())
    worst = max(((p.grad - grads[k].grad).abs().max() / grads[k].grad.abs().max().clamp(min=1e-12)).item()
                for k, p in ours.named_parameters())
    stats = max((v - tv.state_dict()[k]).abs().max().item() for k, v in ours.state_dict().items())
    print(f"{name}: worst relative gradient diff {worst:.3g}, buffer diff {stats:.3g}")
    assert worst <= 1e-4 and stats <= 1e-5
