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
        '  hint: use a smaller kernel or stride, add padding, or feed a larger input'
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
    "E050": (
        'main.res:1:1: error[E050]: tiny has 12 residual/dense blocks; the unraveled view draws one lane per path (2**12 here) and is limited to 6 blocks\n'
        '  |\n'
        '1 | network tiny() {\n'
        '  | ^^^^^^^^^^^^^^^^\n'
        '  hint: use `resdsl paths FILE` for exact path counts and the length histogram, or render --level block'
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
