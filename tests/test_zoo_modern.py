"""The zoo's families of the last decade against timm and torchvision.

SE-ResNet (timm seresnet*), MobileNetV2 and EfficientNet-B0..B7 (torchvision),
ConvNeXt (torchvision) and Res2Net (timm res2net*).  For the five the issue
lists (FAMILIES) and the other members the same files build (VARIANTS):

* counts: parameters and buffers of the compiled module equal the reference's
  (and the figure the issue states), and the reference's state_dict loads into
  it with strict=True (same names, same shapes) -- checked on the meta device,
  so even EfficientNet-B7 costs nothing;
* MACs: `Network.costs()` at 224x224 equals torch's FlopCounterMode total // 2
  on the reference (run on the meta device: shapes only, no arithmetic);
* per-module output shapes at 224x224 equal the IR node of the same name.

For the five, at a small input size:

* outputs: the reference gets random weights, random BatchNorm statistics and
  affine parameters, random LayerNorm affine parameters and layer scales
  (default init hides differences: a fresh MobileNetV2's logits are ~1e-9), its
  state_dict is loaded strictly, and the eval-mode outputs agree to 1e-5
  (relative to max(1, |logits|));
* a training step: equal outputs under the same seed (stochastic depth and
  dropout draw the same), equal gradients for every parameter, equal updated
  BatchNorm statistics; and the stochastic-depth rate of every block equals
  torchvision's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import resdsl

torch.set_num_threads(1)
EX = Path(__file__).resolve().parent.parent / "examples"


@dataclass(frozen=True)
class Family:
    file: str
    params: dict
    make: Callable[[], nn.Module]       # the reference, built with random init (no pretrained weights)
    n_params: int | None = None         # the figure the issue states, when it states one
    n_buffers: int | None = None
    size: int = 64                      # input size of the output comparison
    bn_scale: tuple[float, float] = (0.75, 1.25)   # range of the random BatchNorm scales


def _timm(name: str, **kw) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, **kw)


def _tv(name: str, **kw) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None, **kw)


# The five the issue lists: counts, MACs, strict load and outputs.
FAMILIES: dict[str, Family] = {
    "seresnet50": Family("seresnet.res", {"depth": 50}, _timm("seresnet50"), 28_088_024, 53_173),
    # BN scales of 1.5..3 so that a quarter of ReLU6's inputs exceed 6: at 0.75..1.25 none does, and
    # relu6 and relu would agree to 2e-5 (checked in the test below).
    "mobilenet_v2": Family("mobilenet_v2.res", {}, _tv("mobilenet_v2"), 3_504_872, bn_scale=(1.5, 3.0)),
    "efficientnet_b0": Family("efficientnet.res", {"variant": "b0"}, _tv("efficientnet_b0"), 5_288_548),
    "convnext_tiny": Family("convnext.res", {"variant": "tiny"}, _tv("convnext_tiny"), 28_589_128),
    "res2net50_26w_4s": Family("res2net.res", {}, _timm("res2net50_26w_4s"), 25_699_120, 59_577),
}

# More members of the same families from the same files: counts and strict loads (meta device).
VARIANTS: dict[str, Family] = {
    **{f"efficientnet_b{i}": Family("efficientnet.res", {"variant": f"b{i}"}, _tv(f"efficientnet_b{i}"))
       for i in range(1, 8)},
    **{f"convnext_{v}": Family("convnext.res", {"variant": v}, _tv(f"convnext_{v}"))
       for v in ("small", "base", "large")},
    "mobilenet_v2_0.5": Family("mobilenet_v2.res", {"width": 0.5}, _tv("mobilenet_v2", width_mult=0.5)),
    "mobilenet_v2_1.4": Family("mobilenet_v2.res", {"width": 1.4}, _tv("mobilenet_v2", width_mult=1.4)),
    "seresnet18": Family("seresnet.res", {"depth": 18}, _timm("seresnet18")),
    "seresnet101": Family("seresnet.res", {"depth": 101}, _timm("seresnet101")),
    "seresnext50_32x4d": Family("seresnet.res", {"depth": 50, "groups": 32, "width_per_group": 4},
                                _timm("seresnext50_32x4d")),
    "res2net50_48w_2s": Family("res2net.res", {"base_width": 48, "scale": 2}, _timm("res2net50_48w_2s")),
    "res2net50_14w_8s": Family("res2net.res", {"base_width": 14, "scale": 8}, _timm("res2net50_14w_8s")),
    "res2net101_26w_4s": Family("res2net.res", {"depth": 101}, _timm("res2net101_26w_4s")),
    "res2next50": Family("res2net.res", {"base_width": 4, "cardinality": 8}, _timm("res2next50")),
}


def numel(tensors) -> int:
    return sum(t.numel() for t in tensors)


class References:
    """Each reference built once per test module, on the meta device (no memory, no init cost)."""

    def __init__(self) -> None:
        self._meta: dict[str, nn.Module] = {}

    def meta(self, name: str) -> nn.Module:
        if name not in self._meta:
            fam = FAMILIES.get(name) or VARIANTS[name]
            with torch.device("meta"):
                self._meta[name] = fam.make().eval()
        return self._meta[name]


@pytest.fixture(scope="module")
def refs() -> References:
    return References()


def load(fam: Family, **extra) -> resdsl.Network:
    return resdsl.load(EX / fam.file, **{**fam.params, **extra})


def compile_meta(net: resdsl.Network) -> nn.Module:
    with torch.device("meta"):
        return resdsl.compile(net)


def load_into(net: resdsl.Network, ref: nn.Module) -> nn.Module:
    """The compiled network with the reference's weights, loaded by name with strict=True.  (Built on the
    CPU and copied into, not assign=True: a layer_scale's bare parameter lives on its scope.)"""
    ours = resdsl.compile(net, seed=0)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours


def randomize(model: nn.Module, seed: int = 0, bn_scale: tuple[float, float] = (0.75, 1.25)) -> None:
    """Give every parameter and buffer of a (meta-built, now empty) model a non-trivial random value.

    Convolution and linear weights ~ N(0, 1/fan_in); BatchNorm scales uniform in `bn_scale`, LayerNorm
    scales in [0.75, 1.25], shifts ~ N(0, 0.1);
    BatchNorm running means ~ N(0, 0.1) and variances in [0.75, 1.25]; any other parameter (ConvNeXt's
    layer scale, 1e-6 at init, which would hide its branch) in [0.5, 1.5].  Fails if a tensor is left
    unset, so a new module type cannot slip through with uninitialised memory."""
    g = torch.Generator().manual_seed(seed)
    done: set[int] = set()

    def put(t: torch.Tensor, value: torch.Tensor) -> None:
        t.copy_(value)
        done.add(id(t))

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                put(m.weight, torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    put(m.bias, torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
                if getattr(m, "running_mean", None) is not None:
                    put(m.running_mean, torch.randn(m.running_mean.shape, generator=g) * 0.1)
                    put(m.running_var, torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                    put(m.num_batches_tracked, torch.tensor(7))
                lo, hi = bn_scale if isinstance(m, nn.modules.batchnorm._BatchNorm) else (0.75, 1.25)
                if m.weight is not None:
                    put(m.weight, torch.rand(m.weight.shape, generator=g) * (hi - lo) + lo)
                if m.bias is not None:
                    put(m.bias, torch.randn(m.bias.shape, generator=g) * 0.1)
        for name, p in model.named_parameters():
            if id(p) not in done:
                put(p, torch.rand(p.shape, generator=g) + 0.5)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if id(t) not in done]
    assert not left, f"randomize() does not know how to set {left[:5]}"


def materialize(name: str, seed: int = 0) -> nn.Module:
    fam = FAMILIES.get(name) or VARIANTS[name]
    with torch.device("meta"):
        ref = fam.make()
    ref.to_empty(device="cpu")
    randomize(ref, seed, fam.bn_scale)
    return ref.eval()


def flops(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops()


# ---------------------------------------------------------------- counts and names (meta device)


@pytest.mark.parametrize("name", list(FAMILIES) + list(VARIANTS))
def test_counts_and_state_dict_names(name, refs):
    fam = FAMILIES.get(name) or VARIANTS[name]
    ref = refs.meta(name)
    net = load(fam)
    n_ref, b_ref = numel(ref.parameters()), numel(ref.buffers())
    if fam.n_params is not None:
        assert n_ref == fam.n_params
    if fam.n_buffers is not None:
        assert b_ref == fam.n_buffers
    assert (net.param_count, net.buffer_count) == (n_ref, b_ref)
    ours = compile_meta(net)
    assert (numel(ours.parameters()), numel(ours.buffers())) == (n_ref, b_ref)
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sorted(set(want) - set(got)) == [] and sorted(set(got) - set(want)) == []
    assert got == want
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)


# ---------------------------------------------------------------- MACs at 224x224


@pytest.mark.parametrize("name", list(FAMILIES) + list(VARIANTS))
def test_macs_at_224_equal_flop_counter(name, refs):
    fam = FAMILIES.get(name) or VARIANTS[name]
    net = load(fam, size=224)
    want = flops(refs.meta(name), torch.empty(1, 3, 224, 224, device="meta")) // 2
    print(f"{name}: {net.costs().total:,} MACs, FlopCounterMode/2 {want:,}")
    assert net.costs().total == want


# ---------------------------------------------------------------- outputs with random weights and statistics


def compare(ours: nn.Module, ref: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert got.shape == want.shape
    return (got - want).abs().max().item(), want.abs().max().item()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_outputs_agree_with_random_statistics(name):
    fam = FAMILIES[name]
    ref = materialize(name)
    ours = load_into(load(fam, size=fam.size), ref).eval()
    x = torch.randn(2, 3, fam.size, fam.size, generator=torch.Generator().manual_seed(1))
    clipped = [0, 0]                            # ReLU6's inputs above 6, all its inputs

    def count(m, args):
        clipped[0] += (args[0] > 6).sum().item()
        clipped[1] += args[0].numel()
    hooks = [m.register_forward_pre_hook(count) for m in ref.modules() if isinstance(m, nn.ReLU6)]
    diff, scale = compare(ours, ref, x)
    for h in hooks:
        h.remove()
    print(f"{name}: max abs diff {diff:.3g} (logits up to {scale:.3g})")
    assert scale > 0.1                          # not a degenerate comparison
    if hooks:                                   # the comparison sees ReLU6 clip
        assert clipped[0] >= 0.1 * clipped[1]
    assert diff <= 1e-5 * max(1.0, scale)


# ---------------------------------------------------------------- shapes of every module at 224x224


def module_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape (no batch) of every module that owns parameters or buffers, by qualified name."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
             for name, m in model.named_modules()
             if list(m.parameters(recurse=False)) or list(m.buffers(recurse=False))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


@pytest.mark.parametrize("name", list(FAMILIES) + list(VARIANTS))
def test_module_shapes_at_224(name, refs):
    net = load(FAMILIES.get(name) or VARIANTS[name], size=224)
    ir = {n.name: n.shape for n in net.nodes}
    by_id = {n.id: n for n in net.nodes}
    # a module owning a bare parameter (ConvNeXt's block and its layer_scale) is our residual region
    ir.update({r.name: by_id[r.merge].shape for r in net.graph.regions if r.name and r.name not in ir})
    shapes = module_shapes(refs.meta(name), torch.empty(1, 3, 224, 224, device="meta"))
    mismatched = {k: (v, ir.get(k)) for k, v in shapes.items() if ir.get(k) != v}
    assert not mismatched
    assert net.outputs == {"logits": (1000,)}


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize("file", sorted({f.file for f in FAMILIES.values()}))
def test_zoo_file_header(file):
    text = (EX / file).read_text()
    first = text.splitlines()[0]
    assert first.startswith("# ") and any(ch.isdigit() for ch in first)     # the paper and its year
    assert f"# Usage: resdsl summary examples/{file}" in text


# ---------------------------------------------------------------- stochastic depth


def reference_drop_rates(ref: nn.Module) -> dict[str, float]:
    """p of every StochasticDepth that acts (on a residual block, p > 0), keyed by its block's name."""
    from torchvision.ops import StochasticDepth
    rates = {}
    for name, m in ref.named_modules():
        block = name.rpartition(".")[0]
        parent = ref.get_submodule(block) if block else ref
        if isinstance(m, StochasticDepth) and m.p > 0 and getattr(parent, "use_res_connect", True):
            rates[block] = m.p
    return rates


@pytest.mark.parametrize("name", ["efficientnet_b0", "convnext_tiny", "convnext_small", "efficientnet_b4"])
def test_stochastic_depth_rates_equal_torchvision(name, refs):
    fam = FAMILIES.get(name) or VARIANTS[name]
    net = load(fam)
    ours = {n.name.rpartition(".")[0]: n.attrs["p"] for n in net.nodes if n.op == "drop_path"}
    want = reference_drop_rates(refs.meta(name))
    assert len(want) >= 9 and sorted(ours) == sorted(want)
    assert ours == {k: pytest.approx(v, rel=1e-12) for k, v in want.items()}


@pytest.mark.parametrize("name", ["efficientnet_b0", "convnext_tiny", "mobilenet_v2", "seresnet50",
                                  "res2net50_26w_4s"])
def test_training_step_matches_reference(name):
    # In training both drop whole residual branches per sample from the same random stream: with equal seeds
    # the outputs agree (BatchNorm uses batch statistics, dropout and stochastic depth draw in the same order),
    # and so do the gradients of every parameter (ConvNeXt's bare layer_scale included) and the updated
    # BatchNorm statistics.
    fam = FAMILIES[name]
    ref = materialize(name).train()
    ours = load_into(load(fam, size=32), ref).train()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1, 7, 3, 999, 0, 5, 500, 2])
    outs = {}
    for seed in (0, 1):
        for who, model in (("ref", ref), ("ours", ours)):
            torch.manual_seed(seed)
            out = model(x)
            if seed == 0:
                nn.functional.cross_entropy(out, y).backward()
            outs[who, seed] = out.detach()
    for seed in (0, 1):
        diff = (outs["ours", seed] - outs["ref", seed]).abs().max().item()
        assert diff <= 1e-5 * max(1.0, outs["ref", seed].abs().max().item())
    if name != "seresnet50" and name != "res2net50_26w_4s":    # timm's have no dropout or drop path by default
        assert (outs["ref", 0] - outs["ref", 1]).abs().max() > 1e-3    # the random draws matter
    grads = dict(ref.named_parameters())
    assert sorted(grads) == sorted(k for k, _ in ours.named_parameters())
    assert not {id(p) for p in ours.parameters()} & {id(p) for p in ref.parameters()}
    assert sum(g.grad.abs().max().item() > 0 for g in grads.values()) > 0.9 * len(grads)   # gradients flow
    worst = max(((p.grad - grads[k].grad).abs().max() / grads[k].grad.abs().max().clamp(min=1e-12)).item()
                for k, p in ours.named_parameters())
    stats = max(((v - ref.state_dict()[k]).abs().max().item() for k, v in ours.state_dict().items()), default=0.0)
    print(f"{name}: worst relative gradient difference {worst:.3g}, state difference {stats:.3g}")
    assert worst <= 1e-4 and stats <= 1e-5
