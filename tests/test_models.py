"""The zoo by name (resdsl/models.py) and `import "zoo:..."` in a checkout (the wheel: test_packaging.py)."""
from pathlib import Path

import pytest

import resdsl
import resdsl.loader
from resdsl.models import VARIANTS

ROOT = Path(__file__).resolve().parent.parent


def test_every_example_file_is_a_model_and_every_variant_loads():
    names = set(resdsl.list_models())
    for p in (ROOT / "examples").glob("*.res"):
        assert p.stem in names or any(n.startswith(p.stem + "_") for n in names), p.name
    for name, spec in VARIANTS.items():  # every named setting is one the file accepts
        assert name in names
        net = resdsl.get_network(name, size=64) if "size" in _params(spec) else resdsl.get_network(name)
        assert net.params.items() >= spec.params.items()
    assert resdsl.list_models(["wrn*", "unet"]) == ["unet", "wrn", "wrn16_8", "wrn28_10", "wrn40_4"]


def _params(spec) -> set[str]:
    return {p.name for p in next(iter(resdsl.loader.load_file(spec.path).networks.values())).params}


@pytest.mark.parametrize("name,params", [("resnet18", 11689512), ("resnext50_32x4d", 25028904),
                                         ("wide_resnet50_2", 68883240), ("densenet121", 7978856),
                                         ("wrn28_10", 36479194), ("mobilenet_v2", 3504872),
                                         ("efficientnet_b0", 5288548), ("convnext_tiny", 28589128),
                                         ("seresnet50", 28088024), ("res2net50_26w_4s", 25699120)])
def test_named_models_have_the_reference_counts(name, params):
    # torchvision's documented counts and timm's (seresnet50, res2net50_26w_4s); WRN-28-10: test_zoo.py's
    assert resdsl.get_network(name).param_count == params


def test_overrides_and_unknown_names():
    assert resdsl.get_network("resnet18", classes=10).outputs == {"logits": (10,)}
    with pytest.raises(ValueError, match=r"no zoo model `densenet12`; did you mean densenet121"):
        resdsl.get_network("densenet12")
    with pytest.raises(TypeError, match="weights= takes"):
        resdsl.create("unravel4", weights=3)


def test_zoo_import_and_its_diagnostic():
    net = resdsl.loads('import "zoo:wrn"\nnetwork t() { input x: [16, 8, 8]; preact_basic(16); output y }')
    assert net.outputs == {"y": (16, 8, 8)}
    with pytest.raises(resdsl.ResdslError) as e:
        resdsl.loads('import "zoo:resnett"\nnetwork t() { input x: [3]; output y }')
    d = e.value.diagnostics[0]
    assert d.code == "E002" and d.message == "no zoo file `zoo:resnett`" and "zoo:resnet," in d.hint


def test_create_with_a_timm_model_object():
    timm = pytest.importorskip("timm")
    import torch
    torch.manual_seed(0)
    ref = timm.create_model("resnet18d", pretrained=False).eval()
    with torch.no_grad():
        for m in ref.modules():  # non-trivial BN statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        model = resdsl.create("resnet18d", weights=ref, size=64).eval()
        x = torch.randn(2, 3, 64, 64)
        want = ref(x)
        assert want.abs().max() > 0.1 and (model(x) - want).abs().max().item() <= 1e-5


def test_zoo_files_by_scheme_on_the_command_line():
    import subprocess
    import sys
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "resdsl", "check", "zoo:resnet", "--set", "depth=18"],
                       capture_output=True, text=True, env=env, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "ok: resnet (70 ops, 11,689,512 params) -> logits: [1000]"
    assert resdsl.load("zoo:densenet", depth=121).param_count == 7978856
    r = subprocess.run([sys.executable, "-m", "resdsl", "check", "zoo:resnett"], capture_output=True, text=True,
                       env=env, cwd="/")
    assert r.returncode == 1 and "error[E002]: no zoo file `zoo:resnett`" in r.stderr
