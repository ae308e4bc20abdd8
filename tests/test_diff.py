"""`resdsl diff`: layer-by-layer differences, checked against torchvision's own modules and FLOP counts."""
import json
import subprocess
import sys
from pathlib import Path

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import resdsl
from resdsl.diff import diff

ROOT = Path(__file__).resolve().parent.parent
RESNET = ROOT / "examples" / "resnet.res"


def _tv(name):
    with torch.device("meta"):
        m = getattr(torchvision.models, name)()
        with FlopCounterMode(display=False) as fc:
            m(torch.empty(1, 3, 224, 224))
    return m, fc.get_total_flops() // 2  # torchvision convention: MACs = FLOPs / 2


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "resdsl", "diff", *map(str, args)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_resnet18_vs_34_equals_torchvision():
    (tv18, macs18), (tv34, macs34) = _tv("resnet18"), _tv("resnet34")
    r = _cli(RESNET, "--a", "depth=18", "--b", "depth=34", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    n18 = sum(p.numel() for p in tv18.parameters())
    n34 = sum(p.numel() for p in tv34.parameters())
    assert d["totals"]["params"] == {"a": n18, "b": n34, "delta": n34 - n18} == {"a": 11689512, "b": 21797672,
                                                                                 "delta": 10108160}
    assert d["totals"]["MACs"] == {"a": macs18, "b": macs34, "delta": macs34 - macs18}
    # every row is a whole block only in ResNet-34, with that torchvision block's parameters
    blocks18 = {n for n, _ in tv18.named_modules() if n.count(".") == 1 and n.startswith("layer")}
    added = {n: m for n, m in tv34.named_modules() if n.count(".") == 1 and n.startswith("layer") and n not in blocks18}
    assert [r["name"] for r in d["layers"]] == list(added)
    for row in d["layers"]:
        assert row["status"] == "added" and row["a"] is None
        assert row["b"]["params"] == sum(p.numel() for p in added[row["name"]].parameters())
    assert sum(row["b"]["macs"] for row in d["layers"]) == macs34 - macs18
    assert d["unchanged_layers"] == 70  # all of ResNet-18's layers keep their names and shapes


def test_changed_layers_two_files(tmp_path):
    small = tmp_path / "small.res"
    small.write_text(RESNET.read_text().replace("classes=1000", "classes=10"))
    d = diff(resdsl.load(RESNET, depth=18), resdsl.load(small, depth=18))
    assert [(r.name, r.status, r.a.shape, r.b.shape, r.a.params, r.b.params, r.a.macs, r.b.macs) for r in d.rows] == [
        ("fc", "changed", (1000,), (10,), 512 * 1000 + 1000, 512 * 10 + 10, 512 * 1000, 512 * 10)]
    assert d.totals["params"] == (11689512, 11689512 - 512 * 990 - 990)
    r = _cli(RESNET, small, "--set", "depth=18")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("fc "))
    assert row.split() == ["fc", "~", "[1000]", "[10]", "513,000", "5,130", "-507,870", "-506,880"]
    assert "params:         11,689,512 ->       11,181,642          -507,870 (-4.34%)" in r.stdout


def test_usage():
    r = _cli(RESNET)
    assert r.returncode == 2 and "give a second file, or parameter sets with --a/--b" in r.stderr
