"""`resdsl import`: torchvision models -> .res -> compiled modules equal to the originals.

For each model the imported file is checked against the torch module itself: parameter and buffer
counts, the output shape, MACs against torch.utils.flop_counter (resdsl's "torch" convention
counts FLOPs the way FlopCounterMode does), the original's state_dict loading into the compiled
network with strict=True and giving the same eval-mode outputs (BN statistics and affine values
randomised first), and `resdsl fmt` leaving the file unchanged.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import resdsl
from resdsl.fmt import format_source
from resdsl.importer import ImportProblem, import_module

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(2)


def randomize_bn(m: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.1)


def check_import(name: str, shape=(3, 224, 224)) -> str:
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)().eval()
    randomize_bn(tv)
    text = import_module(tv, shape, name, name)  # as `resdsl import NAME` writes it
    assert format_source(text) == text  # what `resdsl fmt` leaves unchanged
    net = resdsl.loads(text, name=f"{name}.res")
    assert net.param_count == sum(p.numel() for p in tv.parameters())
    assert net.buffer_count == sum(b.numel() for b in tv.buffers())
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        want = tv(x)
    assert net.costs("torch").total == fc.get_total_flops()
    ours = net.to_torch(seed=0).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    with torch.no_grad():
        got = ours(x)
    assert tuple(got.shape) == tuple(want.shape) == (1, *net.outputs[next(iter(net.outputs))])
    scale, diff = want.abs().max().item(), (got - want).abs().max().item()
    assert scale > 1e-3 and diff <= 1e-5 and diff <= 1e-4 * scale  # not a comparison of near-zero outputs
    return text


def test_resnet18():
    text = check_import("resnet18")
    # one block for torchvision's BasicBlock; the first of a stage projects its shortcut
    assert 'block basic_block(channels, stride=1, shortcut="identity") {' in text
    assert '0: basic_block(128, stride=2, shortcut="project")' in text
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("$ head -14 resnet18.res\n", 1)[1].split("```", 1)[0]
    assert text.startswith(shown) and len(shown.splitlines()) == 13  # the README quotes the real output


def test_resnet50():
    text = check_import("resnet50")
    # repeated Bottlenecks are one block with their width as parameter; conv3 is written as 4x it
    assert 'block bottleneck(channels, stride=1, shortcut="identity") {' in text and "conv(channels * 4," in text
    assert "for i in range(1, 6) {" in text  # layer3.1 ... layer3.5


def test_densenet121():
    text = check_import("densenet121")
    assert "block dense_layer() {\n    dense {" in text and "denselayer{i}: dense_layer()" in text


def test_mobilenet_v2():
    text = check_import("mobilenet_v2")
    # InvertedResidual with and without its identity shortcut; Conv2dNormActivation as a block inside it
    assert "block conv2d_norm_activation(channels, " in text and "conv: residual {" in text
    assert "2: relu6" in text and "features.1.conv: group {" not in text


def test_convnext_tiny():
    text = check_import("convnext_tiny")
    # CNBlock: the channels-last MLP, the layer scale named like torchvision's parameter, stochastic depth
    assert "block cnblock(" in text and "linear(channels * 4, pointwise=true)" in text
    assert "        layer_scale: layer_scale\n" in text and "stochastic_depth: drop_path(p)" in text
    assert "1: permute([1, 2, 0])" in text and "layernorm2d(eps=1e-06)" in text


# ----------------------------------------------------------------- branches, named tensors, unused heads

def roundtrip(model: nn.Module, shape) -> str:
    """Import, compile, load the module's weights strictly and compare outputs; the imported text."""
    torch.manual_seed(0)
    model.eval()
    randomize_bn(model)
    text = import_module(model, shape, "m")
    assert format_source(text) == text
    ours = resdsl.loads(text).to_torch(seed=0).eval()
    ours.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours(x) - model(x)).abs().max().item() <= 1e-5
    return text


class Inception(nn.Module):  # each branch one submodule, as in torchvision's GoogLeNet
    def __init__(self, c):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(c, 4, 1), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(c, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c, 2, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)


class Fire(nn.Module):  # SqueezeNet's: the two expand branches are not submodules of their own
    def __init__(self, c):
        super().__init__()
        self.squeeze, self.act = nn.Conv2d(c, 4, 1), nn.ReLU()
        self.e1, self.e3 = nn.Conv2d(4, 8, 1), nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, x):
        x = self.act(self.squeeze(x))
        return torch.cat([torch.relu(self.e1(x)), torch.relu(self.e3(x))], 1)


def test_parallel_branches_are_labelled_by_module():
    text = roundtrip(nn.Sequential(nn.Conv2d(3, 8, 3), Inception(8), Inception(12)), (3, 12, 12))
    assert "block inception(" in text
    assert text.count('parallel(merge="concat") {') == 1 and "b2: branch {" in text


def test_branches_across_modules_become_named_tensors():
    text = roundtrip(nn.Sequential(Fire(3), nn.Flatten(), nn.Linear(16 * 6 * 6, 5)), (3, 6, 6))
    assert "-> fork" in text and "concat(cat" in text and "parallel" not in text


class SE(nn.Module):  # timm's squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean(x)))))
    def __init__(self, c):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c // 2, c, 1)

    def forward(self, x):
        s = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


def test_gates_become_block_local_named_tensors():
    text = roundtrip(nn.Sequential(nn.Conv2d(3, 8, 3), SE(8), nn.Conv2d(8, 4, 1), SE(4)), (3, 10, 10))
    assert "block se(channels) {\n    -> fork" in text and "mul(gate" in text
    assert "1: se(4)" in text and "3: se(2)" in text and "fc2: conv(channels * 2, kernel_size=1)" in text


class Double(nn.Sequential):
    def __init__(self, i, o):
        super().__init__(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class UNet(nn.Module):  # skips concatenated before (cat([skip, up])) and after (cat([up, skip])) the upsampling
    def __init__(self):
        super().__init__()
        self.inc, self.down1 = Double(3, 8), nn.Sequential(nn.MaxPool2d(2), Double(8, 16))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), Double(16, 32))
        self.up1, self.conv1 = nn.ConvTranspose2d(32, 16, 2, stride=2), Double(32, 16)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(16, 8, 1))
        self.conv2, self.outc = nn.Sequential(Double(16, 8), nn.GroupNorm(2, 8)), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        y = self.conv1(torch.cat([x2, self.up1(self.down2(x2))], 1))
        return self.outc(self.conv2(torch.cat([self.up2(y), x1], 1)))


def test_unet_skips():
    text = roundtrip(UNet(), (3, 32, 32))
    assert "block double(channels) {" in text and "up1: conv_transpose(16, kernel_size=2, stride=2)" in text
    assert 'upsample(scale_factor=2.0, mode="bilinear", align_corners=false)' not in text  # torch's None default
    assert "-> fork" in text and "concat(fork" in text and "dense {" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small", "squeezenet1_0", "vgg11_bn"])
def test_more_torchvision_models(name):
    # at 96x96 to keep the CPU time down: the structure is the same at any size
    check_import(name, (3, 96, 96))


def test_weights_forward_does_not_use_are_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.aux = nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 1), nn.Linear(4, 2))

        def forward(self, x):
            return self.body(x)
    text = import_module(Net(), (3, 8, 8))
    assert "# not used by forward() and so not here (load with strict=False): aux." in text


# ----------------------------------------------------------------- what cannot be imported


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return self.conv(x)
        return x


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, g):
        return g


class UsesSquare(nn.Module):
    def forward(self, x):
        return Square.apply(x)


@pytest.mark.parametrize("model,message", [
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Identity(), Gate())),
     r"cannot trace module `1.1` \(Gate, .*test_importer.py:\d+\): symbolically traced variables cannot be used "
     r"as inputs to control flow"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.LSTM(4, 4)),
     r"cannot import module `1` \(LSTM, .*\): no resdsl op for torch.nn.modules.rnn.LSTM"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), UsesSquare()),
     r"cannot trace module `1` \(UsesSquare, .*test_importer.py:\d+\): custom autograd function Square "
     r"\(its backward cannot be written in .res\)"),
])
def test_unimportable_modules_are_named(model, message):
    with pytest.raises(ImportProblem, match=message):
        import_module(model, (3, 8, 8))


def test_shared_weights_are_refused():
    conv = nn.Conv2d(3, 3, 1)
    with pytest.raises(ImportProblem, match=r"module `0` \(Conv2d.*\) is applied 2 times: .*shared weights"):
        import_module(nn.Sequential(conv, conv), (3, 8, 8))


def test_cli_import_writes_a_file_that_checks(tmp_path):
    (tmp_path / "mynet.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.Flatten(), nn.Linear(8 * 28 * 28, 10))\n")
    out = tmp_path / "net.res"
    r = subprocess.run([sys.executable, "-m", "resdsl", "import", "mynet:build", "--input", "1,28,28", "-o", str(out)],
                       cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"{out}: build (6 ops, 62,826 params = the module's count) -> logits: [10]"
    net = resdsl.load(out)
    assert [n.name for n in net.nodes] == ["x", "0", "1", "2", "3", "4"]
    r = subprocess.run([sys.executable, "-m", "resdsl", "import", "mynet:nothing"], cwd=tmp_path,
                       capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "resdsl import: error: cannot find `mynet:nothing`" in r.stderr
    assert "Traceback" not in r.stderr
