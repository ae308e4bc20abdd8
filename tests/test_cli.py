"""The command line: exit codes, output formats, --set, --json, --help."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import fuzzgen
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


def test_console_entry_points(capsys):
    # python -m resdsl (one subprocess: the entry point itself), and --help with examples
    r = subprocess.run([sys.executable, "-m", "resdsl", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "examples:" in r.stdout and "summary" in r.stdout
    with pytest.raises(SystemExit) as e:  # --help exits 0 through SystemExit, as argparse does
        main(["summary", "--help"])
    assert e.value.code == 0 and "resdsl summary examples/resnet.res" in capsys.readouterr().out


# ------------------------------------------------------------------ hostile command lines

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "t.res").write_text(fuzzgen.TINY)
    (d / "adir").mkdir()
    (d / "full.dot").symlink_to("/dev/full")
    (d / "full.pt2").symlink_to("/dev/full")
    return d


# (argv with T for the tiny file and D for its directory, exit code, text the one message contains).
# Exit 1: diagnostics about the file; 2: usage (one line); 3: a missing tool.  Never 70, never a traceback.
ATTACKS = [
    # output files that cannot be written: refused before any work, or reported with the file's name
    ("render T -o /nonexistent/dir/x.svg", 2, "cannot write output /nonexistent/dir/x.svg: no directory"),
    ("render T -o D/full.dot", 2, "full.dot: No space left on device"),
    ("compile T -o /dev/full", 2, "cannot write /dev/full: No space left on device"),
    ("compile T --export D/full.pt2", 2, "full.pt2: No space left on device"),  # torch's writer aborted
    ("compile T -o D/adir", 2, "it is a directory"),
    ("compile T -o /nonexistent/x.py", 2, "no directory '/nonexistent'"),
    ("compile T --onnx /nonexistent/x.onnx", 2, "no directory"),
    ("paths T --plot /nonexistent/x.png", 2, "cannot write plot"),
    ("variance T --plot /nonexistent/x.png", 2, "cannot write plot"),
    ("paths T --plot D/x.txt", 2, "the file type comes from the suffix"),
    ("render T -o D/x.bogus", 2, "cannot tell the format"),
    # parameters named like load()'s keywords are the file's business
    ("check T --set network=x", 1, "E018"),
    ("check T --set limits=3", 1, "E018"),
    ("check T --set input_shapes=3", 1, "E018"),
    # numbers: ASCII digits only, everywhere (argparse's int() would take these)
    ("summary T --depth ３", 2, "expected an integer in ASCII digits"),
    ("summary T --depth ٣", 2, "expected an integer in ASCII digits"),
    ("lesion T --batch ²", 2, "in ASCII digits"),
    ("compile T --opset ３", 2, "expected an integer in ASCII digits"),
    ("compile T --seed 1e3", 2, "expected an integer in ASCII digits"),
    ("compile T --seed 99999999999999999999", 2, "out of range"),
    ("summary T --depth 99999999999999999999999", 2, "expected an integer"),
    ("check T --limit max_nodes=３", 2, "--limit expects NAME=N"),
    ("check T --limit max_nodes=²", 2, "--limit expects NAME=N"),
    ("check T --limit max_nodes=-1", 2, "--limit expects NAME=N"),
    ("check T --limit max_nodes=99999999999999999999999", 2, "--limit expects NAME=N"),
    ("check T --input x=３,8,8", 2, "--input expects NAME=SHAPE"),
    ("check T --input x=²,8,8", 2, "--input expects NAME=SHAPE"),
    ("check T --input x=3,,8", 2, "--input expects NAME=SHAPE"),
    ("check T --sizes --input x=3,H%３２,W", 2, "--input expects NAME=SHAPE"),
    ("check T --set size=٥٠", 2, "write numbers in ASCII digits"),
    # option values out of range
    ("summary T --depth -1", 2, "--depth must be 0 or more"),
    ("summary T --convention bogus", 2, "--convention must be one of"),
    ("ops --family bogus", 2, "no op family 'bogus'; the families are act, conv,"),
    ("compile T --batch 0", 2, "--batch must be at least 1"),
    ("compile T --batch -5", 2, "--batch must be at least 1"),
    ("compile T --json", 2, ""),  # --json: the message is in the JSON on stdout
    ("check T --sizes --input x=3,H%0,W", 2, "--input expects NAME=SHAPE"),
    ("check T --sizes --input x=H,8,8", 1, "the channel dimension (the first) cannot be symbolic"),
    ("check T --size-range 1:5", 2, "unrecognized arguments: --size-range"),
    ("variance T --batch 1", 2, "--batch must be at least 2"),
    ("paths T --band 5", 2, "--band expects LO:HI"),
    # argparse's own errors, in one line
    ("bogus", 2, "invalid choice: 'bogus'"),
    ("check", 2, "the following arguments are required: file"),
    ("check T --set", 2, "expected one argument"),
    ("render T --level bogus", 2, "invalid choice"),
    ("paths T --length bogus", 2, "invalid choice"),
    ("fmt --check --write T", 2, "not allowed with argument"),
    ("--color bogus check T", 2, "invalid choice"),
    # --set values that are not literals
    ("check T --set =3", 2, "is not a parameter name"),
    ("check T --set size=", 2, "cannot read ''"),
    ("check T --set size=[", 2, "cannot read '['"),
    ("check T --set size=__import__('os')", 2, "cannot read"),
    ("check T --set size=1e999", 2, "cannot read"),
    ("check T --set size=10**10**10", 2, "cannot read"),
    # mistakes in or about the file: located diagnostics
    ("check T --set size=-5", 1, "error["),
    ("check T --set size=1.5", 1, "error["),
    ("check T --input y=3,8,8", 1, "no input `y`"),
    ("check T --input x=3x8", 1, "error["),
    ("check T --input x=0,0,0", 1, "error["),
    ("check T --network nope", 1, "error["),
    ("check T --limit max_nodes=2", 1, "more than 2 operations"),
    ("check /dev/null", 1, "error["),
    ("check D", 1, "E002"),
    ("check /nonexistent/x.res", 1, "E002"),
    ("check \udcff.res", 1, "E002"),
    ("fmt /nonexistent.res", 1, "cannot read"),
    # and fine
    ("summary T --depth 0", 0, ""),
    ("ops --family norm", 0, ""),
    ("check T --sizes --input x=3,H%4096,W%4096", 0, ""),  # exact: bounded passes, no scan
]


def _argv(line: str, d: Path) -> list[str]:
    return [{"T": str(d / "t.res"), "D": str(d)}.get(a, a.replace("D/", f"{d}/")) for a in line.split(" ")]


NO_DEV_FULL = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")


@pytest.mark.parametrize("line,code,text", [pytest.param(*a, marks=[NO_DEV_FULL] if "full" in a[0] else [])
                                            for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_hostile_command_lines(tiny, capsys, line, code, text):
    got, out, err = run(capsys, *_argv(line, tiny))
    assert got == code, (got, out, err)
    assert "Traceback" not in out + err and "internal error" not in err
    if code == 2 and "--json" not in line:  # one error line, the last (after any status lines of work done)
        lines = err.splitlines()
        assert lines[-1].startswith("resdsl") and sum(": error: " in x for x in lines) == 1, err
    if code == 1:
        assert err.rstrip().splitlines()[-1].endswith(("1 error", "errors")) or "cannot read" in err, err
    assert text in err


def test_errors_with_json_are_json_only(tiny, capsys):
    bad = tiny / "bad.res"
    bad.write_text("network n() {\n    input x: [3, 8, 8]\n    batchnrm()\n}\n")
    for argv, code in [(["check", str(bad), "--json"], 1), (["check", str(tiny / "t.res"), "--json", "--set", "size"], 2),
                       (["compile", str(tiny / "t.res"), "--json"], 2), (["summary", str(bad), "--json"], 1),
                       (["check", str(tiny / "t.res"), "--json", "--input", "x=3,9,9"], 0)]:
        got, out, err = run(capsys, *argv)
        assert (got, err) == (code, ""), (argv, err)
        data = json.loads(out)
        assert data["ok"] is (code == 0)
        if code == 2:
            assert data["error"]["exit"] == 2 and data["error"]["message"]
        if code == 1:
            assert data["errors"][0]["code"] == "E012"


def test_check_json_carries_warnings(capsys):
    code, out, err = run(capsys, "check", RESNET, "--json", "--input", "x=3,450,600")
    assert (code, err) == (0, "")
    (w,) = json.loads(out)["warnings"]
    assert w.startswith("at input x: [3, 450, 600], 9 op(s) round sizes; the first is maxpool")


def test_plot_without_matplotlib_is_refused_before_any_work(tiny, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    # a file that does not exist: had the command loaded it first, this would be exit 1
    for cmd in ("paths", "variance"):
        code, out, err = run(capsys, cmd, str(tiny / "missing.res"), "--plot", str(tiny / "p.png"))
        assert code == 3 and out == ""
        assert err == f"resdsl {cmd}: error: --plot needs matplotlib: pip install matplotlib " \
                      "(or pip install 'resdsl[plot]')\n"


def test_ctrl_c_prints_one_line_and_exits_130(tiny, capsys, monkeypatch):
    import signal

    import resdsl.commands.summary as summary

    def interrupted(args):
        signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers: KeyboardInterrupt at the next bytecode
        return 0

    monkeypatch.setattr(summary, "run", interrupted)
    code, out, err = run(capsys, "summary", str(tiny / "t.res"))
    assert (code, out, err) == (130, "", "resdsl: interrupted\n")


def test_status_lines_go_to_stderr(tiny, capsys):
    out_file = tiny / "t.dot"
    code, out, err = run(capsys, "render", str(tiny / "t.res"), "-o", str(out_file))
    assert (code, out, err) == (0, "", f"wrote {out_file}\n")
    code, out, err = run(capsys, "compile", str(tiny / "t.res"), "-o", str(tiny / "t.py"))
    assert code == 0 and out == "" and err.startswith(f"wrote {tiny / 't.py'} (")


def test_nothing_else_draws_progress_with_a_bare_carriage_return():
    """Every '\\r' progress line goes through resdsl/progress.py, which checks isatty."""
    hits = [str(p.relative_to(ROOT)) for p in (ROOT / "resdsl").rglob("*.py")
            if p.name != "progress.py" and 'f"\\r' in p.read_text()]
    assert hits == []


def test_commands_do_not_import_the_cli():
    """cli imports the commands; the commands share resdsl/commands/_common.py, never resdsl.cli."""
    import ast

    offenders = []
    for p in sorted((ROOT / "resdsl" / "commands").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = "." * node.level + (node.module or "")
                if mod in ("..cli", "resdsl.cli") or (mod == ".." and any(a.name == "cli" for a in node.names)):
                    offenders.append(f"{p.name}:{node.lineno}")
    assert offenders == []


@NO_DEV_FULL
def test_stdout_on_a_full_disk_is_one_message(tiny):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "resdsl", "check", str(tiny / "t.res")], stdout=full,
                           stderr=subprocess.PIPE, text=True)
    assert r.returncode == 2
    assert r.stderr == "resdsl check: error: cannot write standard output: No space left on device\n"
