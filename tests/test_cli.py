"""The command line: exit codes, output formats, --set, --json, --help."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from resdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
RESNET = str(ROOT / "examples" / "resnet.res")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_ok(capsys):
    code, out, _ = run(capsys, "check", RESNET, "--set", "depth=18")
    assert code == 0
    assert out.strip() == "ok: resnet (70 ops, 11,689,512 params) -> logits: [1000]"


def test_check_error_is_located_without_traceback(tmp_path, capsys):
    f = tmp_path / "bad.res"
    f.write_text("network n() {\n    input x: [3, 8, 8]\n    conv(8, kernel_size=3, strid=2)\n}\n")
    code, out, err = run(capsys, "check", str(f))
    assert code == 1
    assert err.startswith(f"{f}:3:28: error[E013]: conv has no argument `strid`")
    assert "    conv(8, kernel_size=3, strid=2)\n  |                            ^^^^^^^" in err
    assert "hint: did you mean `stride`?" in err
    assert "Traceback" not in err and out == ""


def test_check_json_reports_errors(tmp_path, capsys):
    f = tmp_path / "bad.res"
    f.write_text("network n() {\n    input x: [3, 8, 8]\n    batchnrm()\n}\n")
    code, out, _ = run(capsys, "check", str(f), "--json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    e = data["errors"][0]
    assert (e["code"], e["line"], e["column"], e["hint"]) == ("E012", 3, 5, "did you mean `batchnorm`?")


def test_summary_json(capsys):
    code, out, _ = run(capsys, "summary", RESNET, "--set", "depth=50", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["network"] == "resnet"
    assert data["inputs"] == {"x": [3, 224, 224]} and data["outputs"] == {"logits": [1000]}
    assert (data["params"], data["trainable_params"], data["buffers"]) == (25557032, 25557032, 53173)
    layers = data["layers"]
    assert layers[1]["name"] == "conv1" and layers[1]["op"] == "conv" and layers[1]["shape"] == [64, 112, 112]
    assert layers[1]["params"] == 64 * 3 * 7 * 7
    assert sum(l["params"] for l in layers) == data["params"]


def test_summary_table_depth(capsys):
    code, out, _ = run(capsys, "summary", RESNET, "--set", "depth=18", "--depth", "1")
    assert code == 0
    lines = out.splitlines()
    assert any(l.split()[:2] == ["layer2", "group"] and l.endswith("525,568") for l in lines)
    assert not any(l.strip().startswith("0 ") for l in lines)  # blocks collapsed at depth 1
    assert "params: 11,689,512" in out


def test_usage_errors_exit_2(capsys):
    assert run(capsys, "check", RESNET, "--set", "depth")[0] == 2
    assert run(capsys, "check", RESNET, "--limit", "nonsense=3")[0] == 2
    code, out, err = run(capsys, "check")
    assert (code, out) == (2, "")
    assert err == "resdsl check: error: the following arguments are required: file (see resdsl check --help)\n"


def test_unknown_parameter_hint(capsys):
    code, _, err = run(capsys, "check", RESNET, "--set", "dept=18")
    assert code == 1 and "E018" in err and "did you mean `depth`?" in err


def test_set_parses_literals(capsys):
    code, out, _ = run(capsys, "check", RESNET, "--set", "depth=18", "--set", "variant=d", "--set", "classes=10")
    assert code == 0 and "logits: [10]" in out


def test_missing_file(capsys):
    code, _, err = run(capsys, "check", "/nonexistent/x.res")
    assert code == 1 and "E002" in err and "cannot read" in err


def test_expand_cli(capsys):
    code, out, _ = run(capsys, "expand", RESNET, "--set", "depth=18")
    assert code == 0 and out.startswith("# resnet(depth=18") and "network resnet() {" in out


def test_console_entry_points():
    # python -m resdsl and --help with examples
    r = subprocess.run([sys.executable, "-m", "resdsl", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "examples:" in r.stdout and "summary" in r.stdout
    r = subprocess.run([sys.executable, "-m", "resdsl", "summary", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "resdsl summary examples/resnet.res" in r.stdout
