"""Static cost model: MACs against FlopCounterMode and the real counting packages, receptive fields
against a brute-force gradient check, memory figures against torch's own numel."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import resdsl
from resdsl.backends.inputs import random_inputs
from resdsl.analysis.cost import CONVENTIONS, analyze

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

DENSENET = """
network dn() {
  input x: [3, 32, 32]
  features: group {
    conv0: conv(16, 7, stride=2, padding=3, bias=false)
    norm0: batchnorm()
    relu0: relu
    pool0: maxpool(3, stride=2, padding=1)
    for b, n in enumerate([2, 2]) {
      denseblock{b + 1}: group {
        for i in range(n) {
          denselayer{i + 1}: dense {
            norm1: batchnorm(); relu1: relu; conv1: conv(16, 1, bias=false)
            norm2: batchnorm(); relu2: relu; conv2: conv(8, 3, padding=1, bias=false)
          }
        }
      }
      if b == 0 {
        transition1: group { norm: batchnorm(); relu: relu; conv: conv(in_channels // 2, 1, bias=false); pool: avgpool(2, stride=2) }
      }
    }
    norm5: batchnorm()
  }
  relu
  adaptive_avgpool(1)
  flatten
  classifier: linear(10)
  output y
}"""

VGG11_BN = """
network vgg(size = 32) {
  input x: [3, size, size]
  features: group {
    i = 0
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"] {
      if v == "M" {
        {i}: maxpool(2, stride=2)
        i = i + 1
      } else {
        {i}: conv(v, 3, padding=1)
        {i + 1}: batchnorm()
        {i + 2}: relu
        i = i + 3
      }
    }
  }
  avgpool: adaptive_avgpool(7)
  flatten
  classifier: group {
    0: linear(4096); 1: relu; 2: dropout(0.5); 3: linear(4096); 4: relu; 5: dropout(0.5); 6: linear(1000)
  }
  output y
}"""


def flop_counter(model, *xs) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*xs)
    return fc.get_total_flops()


def package_counts(model, x) -> dict[str, int]:
    """What each installed package reports for `model` on input `x` (batch 1, eval mode)."""
    model.eval()
    out = {"torch": flop_counter(model, x)}
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    try:
        from fvcore.nn import FlopCountAnalysis
        fa = FlopCountAnalysis(model, x)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        out["fvcore"] = fa.total()
        import torchinfo
        out["torchinfo"] = torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds
        import ptflops
        import thop
        with contextlib.redirect_stdout(io.StringIO()):
            out["thop"] = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False)[0]
            out["ptflops"] = ptflops.get_model_complexity_info(
                copy.deepcopy(model), tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False,
                verbose=False)[0]
    finally:
        logging.disable(logging.NOTSET)
    return out


# ------------------------------------------------------------------ the default convention


def test_resnet50_published_gflops():
    # torchvision's model card: ResNet50_Weights.IMAGENET1K_V1 "GFLOPS": 4.09
    net = resdsl.load(ROOT / "examples/resnet.res", depth=50)
    r = net.costs()
    assert r.total == 4_089_184_256
    assert round(r.total / 1e9, 3) == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["_ops"]
    assert r.by_class["conv/linear"] == r.total and r.unit == "MACs"


@pytest.mark.parametrize("depth,size", [(18, 224), (50, 224), (50, 96)])
def test_flop_counter_is_twice_ours(depth, size):
    net = resdsl.load(ROOT / "examples/resnet.res", depth=depth, size=size)
    flops = flop_counter(net.to_torch(seed=0), torch.randn(1, 3, size, size))
    assert flops == 2 * net.costs().total
    assert flops == net.costs("torch").total


def _example_networks():
    from resdsl.loader import load_file
    out = []
    for p in sorted((ROOT / "examples").glob("*.res")):
        try:
            names = list(load_file(p).networks)
        except resdsl.ResdslError:
            names = [None]
        out += [(p, name) for name in names]
    return out


@pytest.mark.parametrize("path,name", _example_networks(), ids=lambda v: getattr(v, "name", v) or "")
def test_examples_match_flop_counter(path, name):
    net = resdsl.load(path, network=name)
    # on the meta device: FlopCounterMode has no formula for the CPU attention kernel (docs/counting.md)
    with torch.device("meta"):
        try:
            model = net.to_torch(seed=0)
        except NotImplementedError as e:  # not every op lowers
            pytest.skip(f"{path.name} does not lower: {e}")
        xs = random_inputs(net, 1)  # token ids for `input ids: int[N]`
    assert flop_counter(model, *xs) == 2 * net.costs().total


# ------------------------------------------------------------------ other conventions vs the packages


@pytest.mark.parametrize("name,params", [("resnet18", {"depth": 18}), ("resnet50", {"depth": 50}),
                                         ("resnext50_32x4d", {"depth": 50, "groups": 32, "width_per_group": 4})])
def test_conventions_match_packages_resnet(name, params):
    ref = package_counts(getattr(torchvision.models, name)(), torch.randn(1, 3, 64, 64))
    net = resdsl.load(ROOT / "examples/resnet.res", size=64, **params)
    for conv, value in ref.items():
        assert net.costs(conv).total == value, conv


def test_conventions_match_packages_vgg11_bn():
    # conv and linear biases, maxpool, adaptive_avgpool(7) upsampling 2x2 -> 7x7, dropout
    net = resdsl.loads(VGG11_BN, size=64)
    tv = torchvision.models.vgg11_bn()
    assert net.param_count == sum(p.numel() for p in tv.parameters())
    ref = package_counts(tv, torch.randn(1, 3, 64, 64))
    ours = {c: net.costs(c).total for c in ref}
    for conv in ("torch", "fvcore", "torchinfo", "ptflops", "thop"):
        assert ours[conv] == ref[conv], conv


def test_conventions_densenet_functional_tail():
    # torchvision's DenseNet ends with F.relu and F.adaptive_avg_pool2d (functionals, not modules):
    # module-hook counters (thop, ptflops' module hooks) miss them; our conventions assume modules.
    net = resdsl.loads(DENSENET)
    tv = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2,
                                     num_classes=10)
    ref = package_counts(tv, torch.randn(1, 3, 32, 32))
    ours = {c: net.costs(c).total for c in ref}
    tail = net.graph.nodes[-4].shape  # the final relu's output, [C, H, W]
    numel = tail[0] * tail[1] * tail[2]
    for conv in ("torch", "fvcore", "torchinfo"):  # exact
        assert ours[conv] == ref[conv], conv
    assert ours["thop"] - ref["thop"] == numel + tail[0]  # thop's adaptive avg module rule: (H*W + 1) * C
    assert ours["ptflops"] - ref["ptflops"] == 2 * numel  # relu and pool counted once (patch), not twice


def test_unknown_convention():
    with pytest.raises(ValueError):
        resdsl.load(ROOT / "examples/resnet.res", depth=18).costs("flopz")
    assert set(CONVENTIONS) >= {"torchvision", "torch", "fvcore", "torchinfo", "thop", "ptflops"}


# ------------------------------------------------------------------ memory


def test_memory_figures_match_torch_numel():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=18, size=64)
    r = net.costs()
    model = net.to_torch(seed=0)
    n = sum(p.numel() for p in model.parameters())
    assert r.param_bytes("fp32") == 4 * n and r.param_bytes("bf16") == 2 * n == r.param_bytes("fp16")
    assert r.buffer_bytes == sum(b.numel() * b.element_size() for b in model.buffers())
    # every op's output numel, recorded with forward hooks on the leaf modules, appears in ours
    outs: dict[str, int] = {}
    for name, m in model.named_modules():
        if name and not list(m.children()):
            m.register_forward_hook(lambda mod, i, o, name=name: outs.__setitem__(name, o[0].numel()))
    model.eval()(torch.randn(1, 3, 64, 64))
    ours = {l.name: l.out_elems for l in r.layers}
    assert outs and all(ours[k] == v for k, v in outs.items())
    assert r.activation_elems == sum(l.out_elems for l in r.layers)
    assert 0 < r.saved_elems < r.activation_elems


# ------------------------------------------------------------------ receptive fields


RF_NET = """
network rf() {
  input x: [1, 96, 96]
  conv(2, 3, padding=1)
  conv(2, 3, stride=2, padding=1)
  avgpool(2, stride=2)
  conv(2, 3, dilation=2, padding=2)
  residual { conv(2, 5, padding=2); conv(2, 3, padding=1) }
  dense { conv(2, 3, padding=1) }
  conv(1, 3, padding=1, stride=2)
  output y
}"""


def _extent(grad) -> tuple[int, ...]:
    nz = grad.abs().sum(dim=(0, 1)).nonzero()
    return tuple(int(nz[:, d].max() - nz[:, d].min() + 1) for d in range(nz.shape[1]))


def test_receptive_field_brute_force():
    net = resdsl.loads(RF_NET)
    r = net.costs()
    # a truncated copy per layer is simplest: cut the source after the k-th layer statement
    lines = [ln for ln in RF_NET.strip().splitlines()]
    body = lines[2:-2]
    for k in range(1, len(body) + 1):
        src = "\n".join(lines[:2] + body[:k] + ["  output y", "}"])
        sub = resdsl.loads(src)
        rep = sub.costs()
        m = sub.to_torch(seed=0).eval()
        with torch.no_grad():  # positive weights: no cancellation, the gradient's support is the whole field
            for p in m.parameters():
                p.copy_(torch.rand_like(p) + 0.1)
        x = torch.randn(1, 1, 96, 96, requires_grad=True)
        y = m(x)
        c = y.shape[-1] // 2
        y[0, :, c, c].sum().backward()  # all channels: through a concat the field is the max
        assert _extent(x.grad) == rep.layers[-1].rf_size, body[k - 1]
    assert r.layers[-1].rf_jump == (8.0, 8.0)


def test_resnet50_receptive_field():
    # the well-known theoretical receptive field of ResNet-50's last conv layer: 427 pixels, stride 32
    r = resdsl.load(ROOT / "examples/resnet.res", depth=50).costs()
    last = [l for l in r.layers if l.name == "layer4.2.conv3"][0]
    assert last.rf_size == (427, 427) and last.rf_jump == (32.0, 32.0)


# ------------------------------------------------------------------ summary integration


def test_summary_json_has_macs():
    p = subprocess.run([sys.executable, "-m", "resdsl", "summary", "examples/resnet.res", "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["macs"] == 4_089_184_256
    assert sum(l["macs"] for l in out["layers"]) == out["macs"]
    t = subprocess.run([sys.executable, "-m", "resdsl", "summary", "examples/resnet.res", "--convention", "torch"],
                       capture_output=True, text=True, cwd=ROOT)
    assert t.returncode == 0, t.stderr
    assert "8,178,368,512" in t.stdout


def test_analyze_direct():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=18)
    assert analyze(net.graph).total == net.costs().total == 1_814_073_344  # torchvision resnet18: 1.81 GFLOPS


MIXED = """
network mixed() {
  input x: [4, 16, 16]
  conv(8, 3, padding=1, groups=2)
  groupnorm(2); gelu
  conv_transpose(8, 3, stride=2, padding=1, output_padding=1, groups=4)
  instancenorm(affine=true); silu
  avgpool(2); layernorm(); elu
  upsample(scale_factor=2, mode="bilinear")
  maxpool(3, stride=2, padding=1, dilation=1)
  adaptive_avgpool(2); leaky_relu; tanh; sigmoid
  flatten; linear(10); softmax
  output y
}"""


def test_mixed_ops_torch_and_fvcore():
    # grouped and transposed convs, every norm, the activations, pools and bilinear upsampling
    net = resdsl.loads(MIXED)
    model = net.to_torch(seed=0).eval()
    x = torch.randn(1, 4, 16, 16)
    assert flop_counter(model, x) == net.costs("torch").total == 2 * net.costs().total
    from fvcore.nn import FlopCountAnalysis
    logging.disable(logging.WARNING)
    try:
        fa = FlopCountAnalysis(model, x)
        fa.unsupported_ops_warnings(False)
        assert fa.total() == net.costs("fvcore").total  # fvcore traces aten ops: functionals count too
    finally:
        logging.disable(logging.NOTSET)


def test_mixed_ops_all_packages_on_module_version():
    # the same network written the torchvision way (every op an nn.Module) for the module-hook counters
    nn = torch.nn
    seq = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.GroupNorm(2, 8), nn.GELU(),
        nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1, groups=4),
        nn.InstanceNorm2d(8, affine=True), nn.SiLU(),
        nn.AvgPool2d(2), nn.LayerNorm([8, 16, 16]), nn.ELU(),
        nn.Upsample(scale_factor=2, mode="bilinear"),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(2), nn.LeakyReLU(), nn.Tanh(), nn.Sigmoid(),
        nn.Flatten(), nn.Linear(32, 10), nn.Softmax(dim=1))
    net = resdsl.loads(MIXED)
    assert net.param_count == sum(p.numel() for p in seq.parameters())
    ref = package_counts(seq, torch.randn(1, 4, 16, 16))
    for conv, value in ref.items():
        assert net.costs(conv).total == value, conv


NEW_OPS = """
network newops() {
  input x: [4, 16, 16]
  conv(8, 3, padding=1); relu6; hardswish
  -> a
  adaptive_avgpool(1); conv(2, 1); mish; conv(8, 1); hardsigmoid
  mul(a)
  layernorm2d()
  permute([1, 2, 0]); linear(16, pointwise=true); gelu(approximate="tanh"); permute([2, 0, 1])
  layer_scale()
  slice(2, 10)
  exp; silu
  output y
}"""


class _NewOpsRef(torch.nn.Module):
    """NEW_OPS as torchvision writes such blocks: SqueezeExcitation's `scale * input`, convnext's
    LayerNorm2d, Permute + nn.Linear, a bare layer_scale Parameter, a channel slice."""

    def __init__(self):
        super().__init__()
        from torchvision.models.convnext import LayerNorm2d
        nn = torch.nn
        self.conv, self.act1, self.act2 = nn.Conv2d(4, 8, 3, padding=1), nn.ReLU6(), nn.Hardswish()
        self.pool, self.fc1, self.mid, self.fc2, self.gate = (nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 2, 1), nn.Mish(),
                                                              nn.Conv2d(2, 8, 1), nn.Hardsigmoid())
        self.ln, self.lin, self.gelu = LayerNorm2d(8), nn.Linear(8, 16), nn.GELU(approximate="tanh")
        self.layer_scale = nn.Parameter(torch.full((16, 1, 1), 1e-6))
        self.silu = nn.SiLU()

    def forward(self, x):
        x = self.act2(self.act1(self.conv(x)))
        x = self.gate(self.fc2(self.mid(self.fc1(self.pool(x))))) * x
        x = self.gelu(self.lin(self.ln(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return self.silu(torch.exp((self.layer_scale * x)[:, 2:10]))


def test_new_ops_match_every_package():
    net = resdsl.loads(NEW_OPS)
    ref = _NewOpsRef().eval()
    x = torch.randn(1, 4, 16, 16)
    assert net.param_count == sum(p.numel() for p in ref.parameters())
    assert flop_counter(ref, x) == net.costs("torch").total
    counts = package_counts(ref, x)
    got = {conv: net.costs(conv).total for conv in counts}
    assert got == counts
