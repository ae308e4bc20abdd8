"""The built wheel ships the grammar and the standard library and runs outside the repo."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(out: Path) -> Path:
    """The wheel, built offline with this environment's hatchling (the `test` extra), else with isolation."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out)], capture_output=True, text=True)
    if r.returncode != 0:  # no hatchling in this environment: build with isolation instead
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                            "-w", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("resdsl-*.whl")
    return whl


def test_wheel_ships_grammar_and_runs(tmp_path):
    whl = build_wheel(tmp_path / "wheel")
    names = zipfile.ZipFile(whl).namelist()
    assert "resdsl/grammar/resdsl.lark" in names
    assert any(n.startswith("resdsl/stdlib/") and n.endswith(".res") for n in names)
    target = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(target)
    # run from an unrelated directory with the unpacked wheel first on the path
    code = ("import resdsl, resdsl.parser as p; assert str(p.grammar_path()).startswith(%r); "
            "n = resdsl.loads('network t() { input x: [3, 8, 8]; conv(4, kernel_size=3); output y }'); "
            "print(n.outputs['y'])" % str(target))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "(4, 6, 6)"


ZOO_SCRIPT = r'''
import json, sys
import torch, torchvision
import resdsl
from pathlib import Path

out = {"file": resdsl.__file__, "models": resdsl.list_models(), "resnets": resdsl.list_models("resnet[0-9]*", exclude_filters="*d")}
torch.manual_seed(0)
tv = torchvision.models.resnet18().eval()
for m in tv.modules():  # non-trivial BN statistics and affine values
    if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.2, 0.2); m.running_var.uniform_(0.5, 1.5)
        m.weight.data.uniform_(0.5, 1.5); m.bias.data.uniform_(-0.2, 0.2)
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    want = tv(x)
    got = resdsl.create("resnet18", weights=tv, size=64).eval()(x)
    torch.save(tv.state_dict(), "rn18.pt")
    got_file = resdsl.create("resnet18", weights="rn18.pt", size=64).eval()(x)
out["diff"] = (got - want).abs().max().item()
out["diff_file"] = (got_file - want).abs().max().item()
out["scale"] = want.abs().max().item()
with torch.device("meta"):
    out["tv50"] = sum(p.numel() for p in torchvision.models.resnet50().parameters())
out["ours50"] = resdsl.get_network("resnet50").param_count
net = resdsl.loads('import "zoo:resnet"\nnetwork t() { input x: [64, 8, 8]; b: bottleneck(16); output y }')
out["zoo_import"] = [net.param_count, list(net.outputs["y"])]
try:
    resdsl.create("resnet51")
except ValueError as e:
    out["unknown"] = str(e)
print(json.dumps(out))
'''


def test_wheel_in_fresh_venv_ships_the_zoo(tmp_path):
    """Install the wheel into a new venv outside the repository; the zoo is importable and creatable by name.

    The venv has no pip and no system site-packages; the wheel goes in with this interpreter's pip
    (--python, --no-deps, offline), and a .pth file lends it this environment's torch/lark/torchvision."""
    import site
    import json
    whl = build_wheel(tmp_path / "wheel")
    zoo = sorted(n for n in zipfile.ZipFile(whl).namelist() if n.startswith("resdsl/zoo/") and n.endswith(".res"))
    assert zoo == sorted(f"resdsl/zoo/{p.name}" for p in (ROOT / "examples").glob("*.res"))
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    py = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                        str(whl)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    (purelib / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([str(py), "-c", ZOO_SCRIPT], cwd=work, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["file"].startswith(str(venv))  # the installed copy, not the checkout
    stems = {p.stem for p in (ROOT / "examples").glob("*.res")} - {"resnet_vae"}
    assert stems <= set(out["models"]) and {"resnet_vae_encoder", "resnet_vae_decoder"} <= set(out["models"])
    assert out["resnets"] == ["resnet101", "resnet152", "resnet18", "resnet200", "resnet34", "resnet50"]
    assert out["scale"] > 0.1 and out["diff"] <= 1e-5 and out["diff_file"] <= 1e-5
    assert out["ours50"] == out["tv50"] == 25557032
    assert out["zoo_import"] == [16 * 64 + 32 + 16 * 16 * 9 + 32 + 64 * 16 + 128, [64, 8, 8]]
    assert "resnet51" in out["unknown"] and "resnet50" in out["unknown"]
    # the console script reads zoo imports from the installed package too
    (work / "t.res").write_text('import "zoo:densenet"\nnetwork t() { input x: [64, 8, 8]; transition(); output y }\n')
    r = subprocess.run([str(venv / "bin" / "resdsl"), "check", "t.res"], cwd=work, capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ok: t (") and "y: [32, 4, 4]" in r.stdout
    r = subprocess.run([str(venv / "bin" / "resdsl"), "check", "zoo:resnet", "--set", "depth=50"], cwd=work,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok: resnet (176 ops, 25,557,032 params) -> logits: [1000]"
