"""Diagnostics that teach: exact rendering per code, notes, hints, several errors per run, docs/errors.md current.

`PINNED` holds the exact text users see for one example of every code in
`resdsl.diagnostics.CODES` (the examples are those of docs/make_errors.py,
which writes docs/errors.md).  A change to a message must change this file.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import resdsl
from resdsl.cli import main
from resdsl.diagnostics import CODES, Diagnostic, render
from resdsl.span import Span

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import make_errors  # noqa: E402

EXAMPLES = {ex.code: ex for ex in make_errors.EXAMPLES}

PINNED = {
    "E001": (
        'main.res:4:5: error[E001]: unexpected `relu`; expected `)`, `and`, `:`, `,`, a comparison, `.`, `else`, `if`\n'
        '  |\n'
        '4 |     relu\n'
        '  |     ^^^^\n'
        '  note: main.res:3:9: this `(` is not closed\n'
        '    |\n'
        '  3 |     conv(64, kernel_size=3\n'
        '    |         ^\n'
        '  hint: close the `(`'
    ),
    "E002": (
        'main.res:1:1: error[E002]: can only import .res files, not `/etc/passwd`\n'
        '  |\n'
        '1 | import "/etc/passwd"\n'
        '  | ^^^^^^^^^^^^^^^^^^^^\n'
        '  hint: write import "blocks.res"'
    ),
    "E003": (
        'b.res:1:1: error[E003]: import cycle through main.res\n'
        '  |\n'
        '1 | import "main.res"\n'
        '  | ^^^^^^^^^^^^^^^^^\n'
        '  note: main.res:1:1: imports b.res\n'
        '    |\n'
        '  1 | import "b.res"\n'
        '    | ^^^^^^^^^^^^^^\n'
        '  note: b.res:1:1: imports main.res again\n'
        '    |\n'
        '  1 | import "main.res"\n'
        '    | ^^^^^^^^^^^^^^^^^\n'
        '  hint: move the shared blocks into a third file that both import'
    ),
    "E004": (
        'main.res:3:21: error[E004]: unknown escape `\\k` in string\n'
        '  |\n'
        '3 |     conv(8, 3, init="he\\k")\n'
        '  |                     ^^^^^^\n'
        '  hint: use \\\\, \\", \\\', \\n or \\t'
    ),
    "E010": (
        'main.res:4:10: error[E010]: undefined name `width`\n'
        '  |\n'
        '4 |     conv(width, 3)\n'
        '  |          ^^^^^\n'
        '  hint: did you mean `widht`?'
    ),
    "E011": (
        'main.res:5:1: error[E011]: block `unit` is defined twice\n'
        '  |\n'
        '5 | block unit() {\n'
        '  | ^^^^^^^^^^^^^^\n'
        '  note: main.res:1:1: first defined here\n'
        '    |\n'
        '  1 | block unit() {\n'
        '    | ^^^^^^^^^^^^^^\n'
        '  hint: rename one of them'
    ),
    "E012": (
        'main.res:4:5: error[E012]: unknown layer or block `batchnrom`\n'
        '  |\n'
        '4 |     batchnrom()\n'
        '  |     ^^^^^^^^^\n'
        '  hint: did you mean `batchnorm`?'
    ),
    "E013": (
        'main.res:3:14: error[E013]: conv has no argument `kernel`\n'
        '  |\n'
        '3 |     conv(16, kernel=3)\n'
        '  |              ^^^^^^^^\n'
        '  hint: did you mean `kernel_size`?'
    ),
    "E014": (
        'main.res:3:25: error[E014]: `padding` must be an int or a list of ints or "same"/"valid", got "full"\n'
        '  |\n'
        '3 |     conv(16, 3, padding="full")\n'
        '  |                         ^^^^^^'
    ),
    "E015": (
        'main.res:3:9: error[E015]: unsupported operand types for `+`: int and string\n'
        '  |\n'
        '3 |     c = 16 + "wide"\n'
        '  |         ^^^^^^^^^^^\n'
        '  hint: convert first: str(n) turns a number into text'
    ),
    "E016": (
        'main.res:3:5: error[E016]: block `stage` recurses more than 100 calls deep without stopping\n'
        '  |\n'
        '3 |     stage(n - 1)\n'
        '  |     ^^^^^\n'
        '  note: main.res:7:5: `stage` called here\n'
        '    |\n'
        '  7 |     stage(3)\n'
        '    |     ^^^^^^^^\n'
        '  note: main.res:3:5: `stage` called here (99 times, nested)\n'
        '    |\n'
        '  3 |     stage(n - 1)\n'
        '    |     ^^^^^^^^^^^^\n'
        '  note: main.res:1:1: defined here\n'
        '    |\n'
        '  1 | block stage(n) {\n'
        '    | ^^^^^^^^^^^^^^^^\n'
        '  hint: stop the recursion with an `if` on a parameter that shrinks, e.g. `if n > 1 { stage(n - 1) }`; '
        'or raise the limit with --limit max_call_depth=N'
    ),
    "E017": (
        'main.res:1:1: error[E017]: main.res defines no network\n'
        '  |\n'
        '1 | block unit() {\n'
        '  | ^\n'
        '  hint: add `network NAME() { input x: [...] ... }`; a file of blocks is a library to import'
    ),
    "E018": (
        'main.res:1:1: error[E018]: network `net` has no parameter `dpeth`\n'
        '  |\n'
        '1 | network net(depth = 18) {\n'
        '  | ^^^^^^^^^^^^^^^^^^^^^^^^^\n'
        '  hint: did you mean `depth`?'
    ),
    "E019": (
        'main.res:4:9: error[E019]: invalid label `block 0`\n'
        '  |\n'
        '4 |         {"block " + str(i)}: conv(8, 3)\n'
        '  |         ^^^^^^^^^^^^^^^^^^^^\n'
        '  hint: labels use letters, digits and underscores, with dots between names (conv.0)'
    ),
    "E020": (
        'main.res:4:5: error[E020]: two layers are labeled `conv1` in the same scope\n'
        '  |\n'
        '4 |     conv1: conv(16, 3)\n'
        '  |     ^^^^^^^^^^^^^^^^^^\n'
        '  note: main.res:3:5: first labeled here\n'
        '    |\n'
        '  3 |     conv1: conv(16, 3)\n'
        '    |     ^^^^^^^^^^^^^^^^^^\n'
        '  hint: labels name modules, so they must be unique within a block or group; inside a loop interpolate the index, e.g. `fc{i}:`'
    ),
    "E021": (
        'main.res:2:5: error[E021]: `input` belongs in a network body, not in a block\n'
        '  |\n'
        '2 |     input y: [3, 8, 8]\n'
        '  |     ^^^^^^^^^^^^^^^^^^\n'
        '  note: main.res:7:5: in block `unit` called here\n'
        '    |\n'
        '  7 |     unit()\n'
        '    |     ^^^^^^\n'
        "  hint: a block's input is the tensor flowing into its call"
    ),
    "E030": (
        'main.res:4:5: error[E030]: residual add: the identity shortcut gives [64, 32, 32] but the branch gives [128, 16, 16]\n'
        '  |\n'
        '4 |     residual {\n'
        '  |     ^^^^^^^^\n'
        '  note: main.res:6:9: the branch ends here, giving [128, 16, 16]\n'
        '    |\n'
        '  6 |         batchnorm()\n'
        '    |         ^^^^^^^^^^^\n'
        "  note: main.res:3:5: the residual's input [64, 32, 32] comes from here\n"
        '    |\n'
        '  3 |     conv(64, 3, padding=1)\n'
        '    |     ^^^^^^^^^^^^^^^^^^^^^^\n'
        '  hint: use shortcut="project" (1x1 conv + batchnorm) or shortcut="zeropad" (option A)'
    ),
    "E031": (
        'main.res:5:5: error[E031]: cannot concatenate [16, 30, 30] and [16, 32, 32] along channels: spatial sizes differ\n'
        '  |\n'
        '5 |     concat(a)\n'
        '  |     ^^^^^^^^^\n'
        '  note: main.res:4:5: operand 1 has shape [16, 30, 30], made here\n'
        '    |\n'
        '  4 |     conv(16, 3)\n'
        '    |     ^^^^^^^^^^^\n'
        '  note: main.res:3:5: operand 2 has shape [16, 32, 32], made here\n'
        '    |\n'
        '  3 |     conv(16, 3, padding=1) -> a\n'
        '    |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^\n'
        '  hint: use concat(..., crop=true) to center-crop to the smaller size'
    ),
    "E032": (
        'main.res:5:5: error[E032]: cannot add tensors of shapes [32, 32, 32] and [16, 32, 32]\n'
        '  |\n'
        '5 |     add(a)\n'
        '  |     ^^^^^^\n'
        '  note: main.res:4:5: operand 1 has shape [32, 32, 32], made here\n'
        '    |\n'
        '  4 |     conv(32, 3, padding=1)\n'
        '    |     ^^^^^^^^^^^^^^^^^^^^^^\n'
        '  note: main.res:3:5: operand 2 has shape [16, 32, 32], made here\n'
        '    |\n'
        '  3 |     conv(16, 3, padding=1) -> a\n'
        '    |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^\n'
        '  hint: resdsl never broadcasts: make the shapes equal (a projection, pooling or crop)'
    ),
    "E033": (
        'main.res:4:5: error[E033]: conv expects a [C, L], [C, H, W] or [C, D, H, W] input, got [3072]\n'
        '  |\n'
        '4 |     conv(16, 3)\n'
        '  |     ^^^^^^^^^^^\n'
        '  hint: convolutions and pooling need a channel and at least one spatial dimension'
    ),
    "E034": (
        'main.res:4:13: error[E034]: maxpool: kernel [8, 8] does not fit the input [3, 4, 4] (spatial dim 1 would have size 0)\n'
        '  |\n'
        '4 |     maxpool(8)\n'
        '  |             ^\n'
        '  hint: use a smaller kernel or stride, add padding, or feed a larger input; x dim 1 = 32 is not a valid size '
        '(H: any size >= 64); nearest: 64 above; x dim 2 = 32 is not a valid size (W: any size >= 64); nearest: 64 above'
    ),
    "E035": (
        'main.res:3:24: error[E035]: conv: input channels 3 are not divisible by groups=4\n'
        '  |\n'
        '3 |     conv(30, 3, groups=4)\n'
        '  |                        ^\n'
        '  hint: choose groups dividing both 3 and 30'
    ),
    "E036": (
        'main.res:2:14: error[E036]: input sizes must be positive, got [3, 0, 32]\n'
        '  |\n'
        '2 |     input x: [3, 0, 32]\n'
        '  |              ^^^^^^^^^^'
    ),
    "E037": (
        'main.res:1:1: error[E037]: network `tiny` has no input\n'
        '  |\n'
        '1 | network tiny() {\n'
        '  | ^^^^^^^^^^^^^^^^\n'
        '  hint: declare one, e.g. `input x: [3, 224, 224]`'
    ),
    "E040": (
        'main.res:3:14: error[E040]: elaboration ran more than 1000000 steps (statements, loop iterations and list items built)\n'
        '  |\n'
        '3 |     for i in range(1000000) {\n'
        '  |              ^^^^^^^^^^^^^^\n'
        '  hint: check loop bounds and list sizes; raise the limit with --limit max_steps=N'
    ),
    "E041": (
        'main.res:3:9: error[E041]: division by zero\n'
        '  |\n'
        '3 |     k = 64 // (2 - 2)\n'
        '  |         ^^^^^^^^^^^^^\n'
        '  hint: the right operand of `//` evaluates to 0'
    ),
    "E042": (
        'main.res:6:12: error[E042]: assertion failed: keep the stem under 5k parameters (params = 5088)\n'
        '  |\n'
        '6 |     assert params <= 5_000, "keep the stem under 5k parameters"\n'
        '  |            ^^^^^^^^^^^^^^^'
    ),
}


def test_every_code_has_a_pinned_example():
    assert set(PINNED) == set(CODES) == set(EXAMPLES)


@pytest.mark.parametrize("code", sorted(PINNED))
def test_rendered_text_is_exact(code):
    out = make_errors.run(EXAMPLES[code])
    assert out == PINNED[code]
    assert out.startswith("main.res:") or out.startswith("b.res:")
    assert f"error[{code}]" in out.split("\n")[0]


def test_errors_md_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "make_errors.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = (ROOT / "docs" / "errors.md").read_text()
    for code in CODES:
        assert f"## {code}" in doc


def src(body: str) -> str:
    return "network n() {\n    input x: [3, 16, 16]\n" + body + "\n}\n"


def diags(text: str, **params) -> tuple[Diagnostic, ...]:
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.loads(text, name="t.res", **params)
    return info.value.diagnostics


def test_independent_errors_are_reported_together():
    ds = diags(src("    conv(8, 3, strid=2)\n    batchnrom()\n    k = undefined_thing\n    from x\n    maxpool(99)"))
    assert [(d.code, d.span.line) for d in ds] == [("E013", 3), ("E012", 4), ("E010", 5), ("E034", 7)]


def test_a_failed_layer_poisons_only_what_depends_on_it():
    # conv fails; the relu and linear after it depend on it and stay quiet; the second chain is independent.
    ds = diags(src("    conv(8, 3, groups=2) -> a\n    relu\n    linear(10)\n    from x\n    conv(8, 3, dilation=0)"))
    assert [(d.code, d.span.line) for d in ds] == [("E035", 3), ("E014", 7)]


def test_an_error_in_a_loop_is_reported_once():
    ds = diags(src("    for i in range(5) {\n        conv(8, 3, padding=-1)\n    }"))
    assert len(ds) == 1 and ds[0].span.line == 4


def test_errors_inside_blocks_point_at_definition_and_call_site():
    text = "block unit(c) {\n    conv(c, 3, stride=0)\n}\n" + src("    unit(8)\n    unit(16)")
    ds = diags(text)
    assert len(ds) == 1  # the same line fails for both calls: reported once, at the first call
    d = ds[0]
    assert (d.code, d.span.line) == ("E014", 2)
    assert [(n.span.line, n.message) for n in d.notes] == [(6, "in block `unit` called here")]


def test_merge_errors_point_at_both_operands():
    d = diags(src("    conv(4, 1) -> a\n    from x\n    conv(5, 1)\n    add(a)"))[0]
    assert d.code == "E032"
    assert [n.span.line for n in d.notes] == [5, 3]
    assert [n.message for n in d.notes] == ["operand 1 has shape [5, 16, 16], made here",
                                            "operand 2 has shape [4, 16, 16], made here"]


def test_residual_mismatch_hint_and_notes():
    d = diags(src("    residual {\n        conv(8, 3, padding=1)\n    }"))[0]
    assert d.code == "E030"
    assert d.hint == 'use shortcut="project" (1x1 conv + batchnorm) or shortcut="zeropad" (option A)'
    assert [n.message for n in d.notes] == ["the branch ends here, giving [8, 16, 16]",
                                            "the residual's input [3, 16, 16] comes from here"]


@pytest.mark.parametrize("body,hint", [
    ("    batchnrom()", "did you mean `batchnorm`?"),
    ("    conv(8, kernal_size=3)", "did you mean `kernel_size`?"),
    ("    residual(shortcut=\"projet\") {\n        relu\n    }", "did you mean `project`?"),
    ("    residual(post=\"rleu\") {\n        relu\n    }", "did you mean `relu`?"),
    ("    depht = 3\n    conv(depth, 3)", "did you mean `depht`?"),
    ("    y = maxx(1, 2)", "did you mean `max`?"),
])
def test_did_you_mean_hints(body, hint):
    assert diags(src(body))[0].hint == hint


@pytest.mark.parametrize("digits,ascii_", [("\u0661\u0662", "12"), ("\uff18", "8"), ("\u0967_\u0966", "10")])
def test_non_ascii_digits_are_refused_with_a_hint_that_works(digits, ascii_):
    # Python's int() reads Arabic-Indic, full-width and Devanagari digits; a .res number takes 0-9 only.
    text = src(f"    conv({digits}, 3)")
    d = diags(text)[0]
    assert (d.code, d.span.line, d.hint) == ("E001", 3, f"write the number with the digits 0-9: `{ascii_}`")
    fixed = resdsl.loads(text.replace(digits, ascii_))
    assert list(fixed.outputs.values())[0][0] == int(ascii_)


def test_network_parameter_hints():
    text = "network n(depth = 18) {\n    input x: [3, 8, 8]\n    relu\n}\n"
    assert diags(text, dpeth=3)[0].hint == "did you mean `depth`?"
    d = diags(text, depth="deep")[0]
    assert (d.code, d.message) == ("E014", 'network parameter `depth` expects a int, got "deep"')


def test_syntax_error_points_at_the_unclosed_bracket():
    d = diags(src("    y = [1, 2,\n    relu"))[0]  # `relu` is read as a third item; the `}` cannot be
    assert d.code == "E001" and d.span.line == 5
    assert [(n.span.line, n.span.col, n.message) for n in d.notes] == [(3, 9, "this `[` is not closed")]


def test_render_caret_width_and_color():
    text = "network n() {\n    input x: [3, 8, 8]\n    conv(8, 3, stride=\"two\")\n}\n"
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.loads(text, name="c.res")
    plain = info.value.render()
    assert plain.split("\n")[3] == "  |                       ^^^^^"
    colored = info.value.render(color=True)
    assert "\x1b[31;1m^^^^^\x1b[0m" in colored and "\x1b[1m" in colored


def test_diagnostic_without_source_renders_location_only():
    d = Diagnostic("E002", "cannot read x.res: no such file", Span("x.res", 1, 1, 1, 2))
    assert render(d) == "x.res:1:1: error[E002]: cannot read x.res: no such file"


def test_cli_reports_all_errors_and_json(tmp_path, capsys):
    f = tmp_path / "bad.res"
    f.write_text(src("    batchnrom()\n    conv(8, 3, strid=2)"))
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.count("error[") == 2 and err.rstrip().endswith("2 errors")
    assert main(["check", str(f), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert [(e["code"], e["line"], e["column"]) for e in out["errors"]] == [("E012", 3, 5), ("E013", 4, 16)]
    assert out["errors"][0]["hint"] == "did you mean `batchnorm`?"


def test_every_code_is_raised_somewhere_in_the_package():
    text = "\n".join(p.read_text() for p in (ROOT / "resdsl").rglob("*.py") if p.name != "diagnostics.py")
    unused = [c for c in CODES if f'"{c}"' not in text]
    assert unused == []


def test_excerpt_expands_tabs_and_windows_long_lines():
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.loads('network n() {\n\tinput x: [3, 8, 8]\n\tconv(8, 3, stride="two")\n}\n', name="tab.res")
    lines = info.value.render().split("\n")
    assert lines[2] == '3 |     conv(8, 3, stride="two")'
    assert lines[3] == "  |                       ^^^^^"
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.loads("network n() {\n input x: [3]\n y = [" + "1, " * 1000 + "zz]\n}\n", name="long.res")
    lines = info.value.render().split("\n")
    assert lines[0] == "long.res:3:3007: error[E010]: undefined name `zz`"
    assert lines[2].startswith("3 | ...") and lines[2].endswith("1, zz]") and len(lines[2]) == 4 + 3 + 100
    assert lines[3].index("^^") == lines[2].index("zz")


# ================================================================== issue 10: hostile input, round two
# One test per class; each covers every member of its class that we could enumerate, not one instance.

import ast as pyast  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402

from resdsl import span as span_mod  # noqa: E402
from resdsl.diagnostics import MAX_SHOWN, ResdslError, did_you_mean  # noqa: E402
from resdsl.loader import read_source  # noqa: E402

NET = "network n() {\n    input x: [3, 8, 8]\n    relu\n}\n"
SECRET = "SECRET_TOKEN = 42 ; do not show me\n"


@pytest.fixture
def no_hang():
    """Fail instead of hanging: a FIFO that blocks or a device that never ends must not stall the suite."""
    def boom(*_):
        raise TimeoutError("a read blocked")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _odd_paths(d: Path) -> dict[str, tuple[str, str]]:
    """Every kind of path that is not a readable .res file: name -> (code, words of the message)."""
    os.mkfifo(d / "fifo.res")
    (d / "dir.res").mkdir()
    os.symlink("loop_b.res", d / "loop_a.res")
    os.symlink("loop_a.res", d / "loop_b.res")
    os.symlink("nowhere.res", d / "dangling.res")
    os.symlink("/dev/zero", d / "zero.res")
    os.symlink("/dev/null", d / "null.res")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "sock.res"))
    (d / "big.res").write_text("# " + "x" * 600_000 + "\n")
    return {"fifo.res": ("E002", "not a regular file"), "dir.res": ("E002", "it is a directory"),
            "loop_a.res": ("E002", "a symbolic link loops"), "dangling.res": ("E002", "No such file"),
            "zero.res": ("E002", "which is not a .res file"), "null.res": ("E002", "which is not a .res file"),
            "sock.res": ("E002", "not a regular file"), "big.res": ("E040", "larger than the limit of 500000 bytes"),
            "missing.res": ("E002", "No such file"), "a\0b.res": ("E002", "NUL")}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs and sockets")
def test_every_reader_refuses_every_kind_of_odd_file(tmp_path, no_hang, capsys):
    """The loader's import, the main file, `check` and `fmt`: all go through one bounded reader."""
    cases = _odd_paths(tmp_path)
    main_file = tmp_path / "main.res"
    for name, (code, words) in cases.items():
        main_file.write_text(f'import "{name.replace(chr(0), "")}"\n' + NET if "\0" not in name else
                             'import "a\0b.res"\n' + NET)
        with pytest.raises(ResdslError) as e:
            resdsl.load(main_file)
        d = e.value.first
        assert d.code == code and words in d.message, (name, d)
        assert (d.span.file, d.span.line, d.span.col) == (str(main_file), 1, 1), name  # at the import
        if "\0" in name or "not a .res" in words:
            continue  # refused from the import path alone (checked above)
        target = str(tmp_path / name)
        direct = {"zero.res": "not a regular file", "null.res": "not a regular file"}.get(name, words)
        with pytest.raises(ResdslError) as e:  # the same file as the main file, and through read_source
            read_source(target)
        assert direct in e.value.first.message, name
        for cmd in (["check", target], ["fmt", target]):
            assert main(cmd) == 1, (cmd, name)
            assert direct in capsys.readouterr().err, (cmd, name)
    with pytest.raises(ResdslError):
        read_source(str(tmp_path / "a\0b.res"))


def test_imports_cannot_leave_the_main_files_folder_and_never_quote_other_files(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "lib.res").write_text(SECRET)
    (outside / "passwd").write_text(SECRET)
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    os.symlink(outside / "lib.res", proj / "link.res")  # a .res link leaving the folder
    os.symlink(outside / "passwd", proj / "secret.res")  # a .res name for a non-.res file
    os.symlink(outside, proj / "dirlink")  # a folder link leaving the folder
    (proj / "sub" / "up.res").write_text('import "../../outside/lib.res"\n')  # nested escape
    for spec, words in [("link.res", "outside"), ("secret.res", "not a .res file"), ("dirlink/lib.res", "outside"),
                        ("../outside/lib.res", "outside"), (str(outside / "lib.res"), "outside"),
                        ("sub/up.res", "outside")]:
        (proj / "main.res").write_text(f'import "{spec}"\n' + NET)
        with pytest.raises(ResdslError) as e:
            resdsl.load(proj / "main.res")
        text = e.value.render()
        assert e.value.first.code == "E002" and words in e.value.first.message, spec
        assert "SECRET" not in text, spec
    # inside the folder (and the standard library) everything works, links included
    (proj / "sub" / "ok.res").write_text("block b() {\n    relu\n}\n")
    os.symlink(proj / "sub" / "ok.res", proj / "alias.res")
    (proj / "main.res").write_text('import "std:blocks"\nimport "alias.res"\n' + NET.replace("relu", "b()"))
    assert [n.op for n in resdsl.load(proj / "main.res").nodes] == ["input", "relu"]
    # a main file that is not a .res source is read (the user named it) but never quoted
    with pytest.raises(ResdslError) as e:
        resdsl.load(proj / "secret.res")
    assert "SECRET" not in e.value.render() and e.value.first.span.line == 1


def test_encodings_bom_and_bad_bytes_are_located(tmp_path, capsys):
    f = tmp_path / "bom.res"
    f.write_bytes(b"\xef\xbb\xbf" + NET.encode())
    assert [n.op for n in resdsl.load(f).nodes] == ["input", "relu"]
    assert main(["fmt", str(f)]) == 0 and capsys.readouterr().out == NET
    # every kind of invalid UTF-8, anywhere: reported at its line and column, in the file that has it
    for bad in (b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"):
        for line, col in ((1, 1), (3, 5), (4, 2)):
            lines = NET.encode().split(b"\n")
            lines[line - 1] = lines[line - 1][: col - 1] + bad + lines[line - 1][col - 1:]
            f.write_bytes(b"\n".join(lines))
            with pytest.raises(ResdslError) as e:
                resdsl.load(f)
            d = e.value.first
            assert (d.code, d.span.line, d.span.col) == ("E002", line, col), (bad, line, col)
            assert f"at line {line}, column {col}" in d.message


LINE_BREAKS_PYTHON_ONLY = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines breaks here; the lexer does not


@pytest.mark.parametrize("ch", list(LINE_BREAKS_PYTHON_ONLY) + ["\r", "\u202e", "\x00"])
def test_excerpts_quote_the_line_the_lexer_counts(ch):
    """A character Python would treat as a line break, in a comment or string, changes no line number
    and no excerpt: every later error quotes its own line, and only one terminal line is printed."""
    text = (f"# a comment {ch} with it\nnetwork n() {{\n    input x: [3, 8, 8]\n    y = \"s{ch}\"\n"
            f"    conv(8, 3, stride=\"two\")\n    batchnrom()\n}}\n")
    with pytest.raises(ResdslError) as e:
        resdsl.loads(text, name="lb.res")
    lines = text.split("\n")
    for d in e.value.diagnostics:
        rendered = render(d).split("\n")
        assert rendered[2] == f"{d.span.line} | {lines[d.span.line - 1]}", repr(ch)
    assert [(d.span.line, d.span.col) for d in e.value.diagnostics] == [(5, 23), (6, 5)]
    # the comment's own line is shown with the character made visible, never as two lines
    d = Diagnostic("E001", "x", Span("lb.res", 1, 3, 1, 4, 2, 3))
    assert render(d).split("\n")[2] == "1 | # a comment ? with it"


def test_source_lines_and_positions_agree_with_a_brute_force_count():
    rnd = random.Random(7)
    alphabet = "ab \t\n\r" + LINE_BREAKS_PYTHON_ONLY
    for _ in range(200):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        src_ = span_mod.Source("<t>", text)
        for off in range(len(text) + 1):
            before = text[:off]
            assert src_.position(off) == (before.count("\n") + 1, off - (before.rfind("\n") + 1) + 1)
            assert src_.offset(*src_.position(off)) == off
        for n, want in enumerate(text.split("\n"), 1):
            assert src_.line(n) == (want[:-1] if want.endswith("\r") else want)


def test_errors_are_rendered_only_when_shown_and_lines_indexed_once(monkeypatch):
    """The same mistake 20,000 times in a loop in a long file: nothing is rendered while elaborating
    (it was, per occurrence, each time re-splitting the file), and the file's lines are indexed once."""
    from resdsl import diagnostics
    rendered, indexed = [0], [0]
    real_render, real_index = diagnostics.render, span_mod.Source.line_starts.func

    def counting_render(*a, **k):
        rendered[0] += 1
        return real_render(*a, **k)

    def counting_index(self):
        indexed[0] += 1
        return real_index(self)

    prop = __import__("functools").cached_property(counting_index)
    prop.__set_name__(span_mod.Source, "line_starts")
    monkeypatch.setattr(span_mod.Source, "line_starts", prop)
    monkeypatch.setattr(diagnostics, "render", counting_render)
    text = ("# padding\n" * 5000 + "network n() {\n    input x: [3, 8, 8]\n    for i in range(20000) {\n"
            "        y = 1 + \"a\"\n    }\n    relu\n}\n")  # raised 20,000 times, reported once
    with pytest.raises(ResdslError) as e:
        resdsl.loads(text, name="loop.res")
    assert rendered[0] == 0 and [d.span.line for d in e.value.diagnostics] == [5004]
    out = str(e.value)
    assert rendered[0] == 1 and indexed[0] == 1 and '5004 |         y = 1 + "a"' in out


def test_many_errors_are_capped_when_rendered():
    ds = [Diagnostic("E010", f"undefined name `v{i}`", Span("x.res", i + 1, 1, i + 1, 2)) for i in range(MAX_SHOWN + 30)]
    text = ResdslError(ds).render()
    assert text.count("error[E010]") == MAX_SHOWN and text.endswith("... and 30 more errors not shown")
    assert len(ResdslError(ds).diagnostics) == MAX_SHOWN + 30  # JSON output still has them all


# ------------------------------------------------------------------ round trips: names and labels

def test_no_regex_in_the_package_anchors_with_dollar():
    """`$` also matches before a trailing newline: a name check written with it lets `"a\\n"` through.
    Every pattern in resdsl/ that validates text must use fullmatch or \\Z."""
    offenders = []
    for path in (ROOT / "resdsl").rglob("*.py"):
        for node in pyast.walk(pyast.parse(path.read_text())):
            if (isinstance(node, pyast.Call) and isinstance(node.func, pyast.Attribute)
                    and isinstance(node.func.value, pyast.Name) and node.func.value.id == "re"
                    and node.args and isinstance(node.args[0], pyast.Constant) and isinstance(node.args[0].value, str)
                    and node.args[0].value.endswith("$") and not node.args[0].value.endswith("\\$")):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("where", ["label", "shortcut_label", "output"])
@pytest.mark.parametrize("tail", ["\n", "\r", " ", "\t", "\u00e9", "\u0660", "\x00", ".", "-"])
def test_names_with_a_trailing_character_are_refused(where, tail):
    name = repr("a" + tail)[1:-1].replace("'", "\\'")
    body = {"label": f'    {{"{name}"}}: relu',
            "shortcut_label": f'    residual(shortcut="project", shortcut_label="{name}") {{\n        conv(8, 1)\n    }}',
            "output": f'    relu\n    output o{{"{name}"}}'}[where]
    with pytest.raises(ResdslError) as e:
        resdsl.loads("network n() {\n    input x: [3, 8, 8]\n" + body + "\n}\n")
    assert e.value.first.code in ("E004", "E014", "E019") and e.value.first.span.line == (4 if where == "output" else 3)


RESERVED_WORDS = "and or not if else for in true false none input output from import block network".split()


@pytest.mark.parametrize("inner", [f"{w}" for w in RESERVED_WORDS] + [f"1 + {w}" for w in ("if", "for", "else")]
                         + [f'"a\\{c}"' for c in "qxuU0a9 "] + ["1 +", "(", "[1", "1 2", "$", "@", "'a", ""])
@pytest.mark.parametrize("form", ["{%s}: relu", "l{%s}: relu", "relu\n    output o{%s}"])
def test_label_expressions_fail_as_located_diagnostics(inner, form):
    """Every error inside a label's {...} (keywords, bad escapes, syntax) is a diagnostic in the label."""
    text = "network n() {\n    input x: [3, 8, 8]\n    " + form % inner + "\n}\n"
    with pytest.raises(ResdslError) as e:
        resdsl.loads(text, name="lab.res")
    d = e.value.first
    last = text.split("\n")[d.span.line - 1]
    assert d.code in ("E001", "E004", "E010", "E019") and d.span.line in (3, 4), d
    assert "{" in last[: d.span.col] and d.span.col <= len(last) + 1, d  # inside or at the end of the label


# ------------------------------------------------------------------ texts of diagnostics, hints applied

@pytest.mark.parametrize("typo,want", [
    ("Relu", "relu"), ("ReLU", "relu"), ("LeakyReLU", "leaky_relu"), ("BatchNorm", "batchnorm"),
    ("relu6", None), ("lrelu", None), ("conv2dd", "conv2d"), ("maxpol", "maxpool"),
    ("batchnrom", "batchnorm"), ("sigmoidd", "sigmoid"), ("kernel", "kernel_size"), ("bn", None),
])
def test_did_you_mean_prefers_case_then_a_real_typo(typo, want):
    from resdsl.ops import OPS
    hint = did_you_mean(typo, list(OPS) + ["kernel_size", "stride"])
    assert hint == (f"did you mean `{want}`?" if want else None)


def test_each_did_you_mean_for_an_op_names_that_op():
    """For every op, its case variants and one-edit typos (doubled last letter, swapped first two):
    a suggestion, when one is made, is the op the typo came from -- so applying it gives the intended op."""
    from resdsl.ops import OPS
    names = [n for n in OPS if n != "input"]
    made = 0
    for name in names:
        for typo in {name.upper(), name.capitalize(), name[:-1] + name[-1] * 2, name[1] + name[0] + name[2:]} - {name}:
            hint = did_you_mean(typo, names)
            if typo.lower() == name:
                assert hint == f"did you mean `{name}`?", typo  # a case variant always finds its op
            if hint is not None:
                assert hint == f"did you mean `{name}`?", (typo, hint)
                made += 1
    assert made >= 3 * len(names), made


def test_network_option_errors_point_at_networks_and_the_hint_works(tmp_path, capsys):
    f = tmp_path / "two.res"
    f.write_text("network alpha() {\n    input x: [3, 8, 8]\n    relu\n}\n\n"
                 "network beta() {\n    input x: [3, 8, 8]\n    relu\n}\n")
    for chosen, hint in [("nope", "choose one with --network alpha"), ("alpah", "did you mean `alpha`? (--network alpha)")]:
        with pytest.raises(ResdslError) as e:
            resdsl.load(f, network=chosen)
        d = e.value.first
        assert d.span.line == 0 and render(d).startswith(f"{f}: error[E017]")  # no line of the file is to blame
        assert [(n.span.line, n.message) for n in d.notes] == [(1, "network `alpha` is defined here"),
                                                               (6, "network `beta` is defined here")]
        assert d.hint == hint
        assert main(["check", str(f), "--network", hint.split("--network ")[1].rstrip(")")]) == 0
    with pytest.raises(ResdslError) as e:
        resdsl.load(f)
    assert e.value.first.span.line == 1 and e.value.first.hint == "choose one with --network alpha"
    capsys.readouterr()


IF_BODY, BODY = "if true {\n        relu\n    }", "{\n        relu\n    }"


@pytest.mark.parametrize("word,stmt,rest", [
    ("else", IF_BODY, BODY), ("else", IF_BODY.replace("true", "false"), BODY), ("else", IF_BODY, IF_BODY),
    ("shortcut", "residual {\n        conv(3, 1)\n    }", BODY),
])
def test_a_clause_on_the_next_line_and_its_hint_applied(word, stmt, rest):
    text = "network n() {\n    input x: [3, 8, 8]\n    " + stmt + f"\n    {word} " + rest + "\n}\n"
    with pytest.raises(ResdslError) as e:
        resdsl.loads(text)
    d = e.value.first
    assert (d.code, d.span.line, d.span.col) == ("E001", 6, 5) and f"`{word}` must follow" in d.message
    assert d.hint.startswith(f"join the lines: `}} {word}")
    resdsl.loads(text.replace(f"}}\n    {word} ", f"}} {word} "))  # the hint, applied, fixes it


def test_mismatch_notes_point_at_the_users_statement_not_the_library():
    text = ('import "std:blocks"\nnetwork n() {\n    input x: [3, 8, 8]\n    conv(8, 3, padding=1)\n'
            '    b1: basic(8) -> e\n    b2: basic(8, stride=2)\n    concat(e)\n}\n')
    d = diags(text)[0]
    assert d.code == "E031" and [(n.span.file, n.span.line) for n in d.notes] == [("t.res", 6), ("t.res", 5)]
    text = ('import "std:blocks"\nnetwork n() {\n    input x: [3, 8, 8]\n    conv(8, 3, padding=1)\n'
            '    b1: basic(8)\n    residual {\n        conv(16, 3, padding=1)\n    }\n}\n')
    d = diags(text)[0]
    assert d.code == "E030" and [(n.span.file, n.span.line) for n in d.notes] == [("t.res", 7), ("t.res", 5)]
    d = diags(src('    residual(post="relu") {\n        relu\n    }\n    residual {\n        conv(8, 1)\n    }'))[0]
    assert d.code == "E030" and [(n.span.line, n.span.col) for n in d.notes] == [(7, 9), (3, 5)]  # the statement


def test_no_module_reads_a_file_around_the_one_reader():
    """Every read of a user's file goes through loader.read_source (or, for torch.load, is preceded
    by loader.check_regular): a new open()/read_text()/torch.load() elsewhere fails this test."""
    allowed = {("loader.py", "open"), ("parser.py", "read_text"),  # os.open in read_source; the grammar
               ("cli.py", "open"), ("runtime.py", "open")}  # os.devnull on a broken pipe; /proc/meminfo
    found = []
    for path in (ROOT / "resdsl").rglob("*.py"):
        text = path.read_text()
        for node in pyast.walk(pyast.parse(text)):
            if not isinstance(node, pyast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, pyast.Name) else f.attr if isinstance(f, pyast.Attribute) else ""
            if name in ("open", "read_text", "read_bytes", "load", "fromfile") and (path.name, name) not in allowed:
                if name == "load" and not (isinstance(f, pyast.Attribute) and getattr(f.value, "id", "") == "torch"):
                    continue
                before = "\n".join(text.split("\n")[max(0, node.lineno - 3):node.lineno - 1])
                if name == "load" and "check_regular(" in before:
                    continue
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_lesion_weights_and_inputs_refuse_odd_files(tmp_path, no_hang, capsys):
    pytest.importorskip("torch")
    os.mkfifo(tmp_path / "w.pt")
    f = tmp_path / "n.res"
    f.write_text(NET)
    for opt in ("--weights", "--inputs"):
        for target in (tmp_path / "w.pt", tmp_path):
            assert main(["lesion", str(f), opt, str(target)]) == 2, (opt, target)  # a wrong option value
            err = capsys.readouterr().err
            assert "not a regular file" in err or "is a directory" in err or "it is a directory" in err, err


def test_loading_a_big_file_runs_no_garbage_collection():
    """Parsing's million short-lived objects made each full collection walk them all (~40% of a
    480 kB parse); the loader pauses the cyclic collector, and restores it."""
    import gc
    from resdsl.loader import load_program
    runs = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    text = "network n() {\n    input x: [8, 8, 8]\n" + "    conv(8, 3, padding=1)\n" * 15000 + "}\n"
    gc.callbacks.append(count)
    try:
        load_program(text, "big.res")
    finally:
        gc.callbacks.remove(count)
    assert len(runs) <= 1 and 2 not in runs and gc.isenabled(), runs  # (one young collection may start it)


@pytest.mark.parametrize("command", ["check", "fmt"])
def test_size_limit_hint_works_when_applied(tmp_path, capsys, command):
    f = tmp_path / "big.res"
    f.write_text("# " + "x" * 600_000 + "\n" + NET)
    assert main([command, str(f)]) == 1
    err = capsys.readouterr().err
    assert "error[E040]" in err and "hint: raise it with --limit max_source_bytes=N" in err
    assert main([command, str(f), "--limit", "max_source_bytes=700000"]) == 0
    capsys.readouterr()


def _labelled_groups(n: int, labelled: bool = True) -> str:
    return ("network n() {\n    input x: [3, 8, 8]\n" + "".join(f"    {f'g{i}: ' if labelled else ''}group {{\n" for i in range(n))
            + "    conv(3, 3, padding=1)\n" + "    }\n" * n + "}\n")


def test_module_trees_torch_cannot_walk_are_refused_and_the_deepest_allowed_runs():
    """Every labelled level is a level of torch's module tree (walked recursively by named_modules,
    state_dict, to, load_state_dict): refused beyond MODULE_DEPTH_CEILING, and at it the module works."""
    torch = pytest.importorskip("torch")
    from resdsl.limits import MODULE_DEPTH_CEILING, Limits
    deep = Limits(max_nesting=1000)
    with pytest.raises(ResdslError) as e:
        resdsl.loads(_labelled_groups(MODULE_DEPTH_CEILING), limits=deep)
    d = e.value.first
    assert d.code == "E040" and f"nested {MODULE_DEPTH_CEILING + 1} modules deep" in d.message
    assert d.span.line == 3 + MODULE_DEPTH_CEILING
    net = resdsl.loads(_labelled_groups(MODULE_DEPTH_CEILING - 1), limits=deep)
    m = net.to_torch(seed=0).eval()
    assert len(list(m.named_modules())) == MODULE_DEPTH_CEILING + 1  # the root, 399 groups, the conv
    m.load_state_dict(m.to(torch.float64).state_dict())
    assert m(torch.randn(1, 3, 8, 8, dtype=torch.float64)).shape == (1, 3, 8, 8)
    # the hint, applied (unlabelled groups add no module level), fixes it
    assert resdsl.loads(_labelled_groups(MODULE_DEPTH_CEILING, False), limits=deep).nodes[-1].name.count(".") == 0


NEST_SCRIPT = r'''
import sys
import resdsl
from resdsl.limits import CEILINGS, Limits
from resdsl.render import to_dot
n = CEILINGS["max_nesting"] - 10
head = "network n() {\n    input x: [3, 8, 8]\n"
bodies = {f: head + f"    {o}\n" * n + "    relu\n" + "    }\n" * n + "}\n" for f, o in
          [("group", "group {"), ("residual", "residual {"), ("dense", "dense {"), ("if", "if true {"),
           ("for", "for i in range(1) {")]}
exprs = {"list": "[" * n + "1" + "]" * n, "paren": "(" * n + "1" + ")" * n, "neg": "-" * n + "1",
         "add": " + ".join(["1"] * n), "pow": " ** ".join(["1"] * n), "not": "not " * n + "true",
         "cond": "1 if true else " * n + "1", "dict": "{1: " * n + "1" + "}" * n}
bodies.update({f: head + f"    y = {e}\n    relu\n}}\n" for f, e in exprs.items()})
m = CEILINGS["max_call_depth"] - 1
bodies["calls"] = ("".join(f"block b{i}() {{\n    b{i + 1}()\n}}\n" for i in range(m)) +
                   f"block b{m}() {{\n    relu\n}}\n" + head + "    b0()\n}\n")
lim = Limits(max_nesting=CEILINGS["max_nesting"], max_call_depth=CEILINGS["max_call_depth"], max_steps=10**7)
for form, text in bodies.items():
    try:
        net = resdsl.loads(text, limits=lim)
        net.expand(), net.summary(), to_dot(net, level="layer"), to_dot(net, level="block")
        print(form, "ok", flush=True)
    except resdsl.ResdslError as e:
        print(form, e.first.code, e.first.message, flush=True)
'''


def test_nesting_at_the_ceilings_never_crashes():
    """At max_nesting and max_call_depth's ceilings, every nesting form either works in every stage
    (elaborate, expand, summary, diagrams) or gives the diagnostic meant for it: no segfault (a
    subprocess, so a crash is seen), no RecursionError caught as "too deeply to elaborate"."""
    out = subprocess.run([sys.executable, "-c", NEST_SCRIPT], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    results = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert len(results) == 14, results
    expected = {f: "ok" for f in results}
    expected["calls"] = "E040 layer `.....b996.b997.b998.b999.relu` is nested 1001 modules deep"  # torch could not
    for form, got in results.items():
        assert got.startswith(expected[form]), (form, got)


# ---------------------------------------------------------- excerpts quote the text a span was made from

_FIRST = "network first() {\n    input x: [4]\n    linear(4)\n    bogus_one(3)\n    output y\n}\n"
_SECOND = "network second() {\n    input x: [4]\n    relu\n    linear(8)\n    output y\n}\n"


def _excerpt_line(err: resdsl.ResdslError) -> str:
    return err.render().splitlines()[2]  # location, ` |`, then the quoted line


def test_an_error_kept_from_one_load_quotes_its_own_text_after_another_load_of_the_same_name():
    with pytest.raises(resdsl.ResdslError) as first:
        resdsl.loads(_FIRST)  # named "<string>", as is the next one
    resdsl.loads(_SECOND)
    assert _excerpt_line(first.value) == "4 |     bogus_one(3)"  # not `linear(8)`, line 4 of the second text
    resdsl.loads(_FIRST.replace("bogus_one(3)", "relu"))  # and a third text, the first one again (a cache hit)
    with pytest.raises(resdsl.ResdslError) as again:
        resdsl.loads(_FIRST)
    resdsl.loads(_SECOND)
    assert _excerpt_line(first.value) == _excerpt_line(again.value) == "4 |     bogus_one(3)"
    with pytest.raises(resdsl.ResdslError) as syntax:  # E001: made from the parser's source, not from a span
        resdsl.loads(_FIRST.replace("bogus_one(3)", "bogus_one(3"))
    resdsl.loads(_SECOND)
    assert syntax.value.first.code == "E001" and _excerpt_line(syntax.value) == "5 |     output y"
    with pytest.raises(resdsl.ResdslError) as empty:  # a file-wide error, at the file's first character
        resdsl.loads("x = 1\n")
    resdsl.loads(_SECOND)
    assert _excerpt_line(empty.value) == "1 | x = 1"


def test_a_network_s_later_error_quotes_its_own_text_after_another_load_of_the_same_name():
    from resdsl.limits import Limits
    from resdsl.render import check_size, diagram
    net = resdsl.loads(_FIRST.replace("bogus_one(3)", "relu"))
    resdsl.loads(_SECOND)
    with pytest.raises(resdsl.ResdslError) as big:  # the diagram is refused at the network's definition
        check_size(net, diagram(net, "layer"), Limits(max_diagram_size=1))
    assert big.value.first.code == "E040"
    assert _excerpt_line(big.value) == "1 | network first() {"


def test_a_file_that_is_not_a_res_source_is_never_quoted_even_from_a_cached_parse(tmp_path):
    from resdsl.span import forbid_quotes
    text = "network n() {\n    input x: [4]\n    bogus_two(3)\n    output y\n}\n"
    name = str(tmp_path / "secret.txt")
    with pytest.raises(resdsl.ResdslError) as quoted:
        resdsl.loads(text, name=name)  # parsed and cached while the name could still be quoted
    assert _excerpt_line(quoted.value) == "3 |     bogus_two(3)"
    forbid_quotes(name)
    with pytest.raises(resdsl.ResdslError) as hidden:
        resdsl.loads(text, name=name)  # the same AST, from the cache
    assert "bogus_two(3)" not in hidden.value.render() and "bogus_two(3)" not in quoted.value.render()
