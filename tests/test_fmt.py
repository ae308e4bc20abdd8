"""The formatter: canonical layout, comments kept, idempotent, and never a change of meaning."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import resdsl
from resdsl.cli import main
from resdsl.fmt import format_source
from resdsl.parser import parse, tokens

sys.path.insert(0, str(Path(__file__).parent))
import fuzzgen  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.res"))


def shape_of_ast(x):
    """An AST with every span removed, for comparing parses of two layouts."""
    if dataclasses.is_dataclass(x):
        return (type(x).__name__,) + tuple(shape_of_ast(getattr(x, f.name)) for f in dataclasses.fields(x)
                                           if f.name not in ("span", "op_span", "file"))
    if isinstance(x, (tuple, list)):
        return tuple(shape_of_ast(i) for i in x)
    return x


def comments(text: str) -> list[str]:
    return [str(t).rstrip() for t in tokens(text) if t.type == "COMMENT"]


def ir(net: resdsl.Network) -> list:
    return [(n.name, n.op, n.inputs, dict(n.attrs), n.shape, n.params, n.buffers, n.label) for n in net.nodes]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_keep_their_meaning_and_comments(path, tmp_path):
    text = path.read_text()
    out = format_source(text)
    assert format_source(out) == out  # idempotent
    assert shape_of_ast(parse(out)) == shape_of_ast(parse(text))
    assert comments(out) == comments(text)
    # The same IR: write the formatted file beside copies of the other examples (imports resolve).
    for p in EXAMPLES:
        (tmp_path / p.name).write_text(p.read_text())
    (tmp_path / path.name).write_text(out)
    try:
        before = resdsl.load(path)
    except resdsl.ResdslError as e:  # a library or a multi-network file: compare the errors instead
        with pytest.raises(resdsl.ResdslError) as info:
            resdsl.load(tmp_path / path.name)
        assert [d.code for d in info.value.diagnostics] == [d.code for d in e.diagnostics]
        return
    after = resdsl.load(tmp_path / path.name)
    assert ir(after) == ir(before)
    assert after.param_count == before.param_count


def test_layout_rules():
    messy = (
        "# header\n"
        "block  unit( c ,s = 1 ){   # the unit\n"
        "  conv(c,kernel_size = 3,stride=s ,padding= 1) ; relu\n"
        "\n\n\n"
        "  y=- c*2+(3 ** 2)//4   # trailing\n"
        "}\n"
        "network n(depth = 18) {\n"
        "\tinput x : [3,8,8]\n"
        "    stages = {18: [2, 2],\n"
        "       34: [3, 4],   # deeper\n"
        "    }[depth]\n"
        "    for i,n in enumerate( stages ){ {i}: unit(4*2**i , s=1) -> t\n"
        "    }\n"
        "    if depth>=50 { relu } else { gelu }\n"
        "    residual(shortcut=\"project\") {\n"
        "        conv(8, 3, padding=1)\n"
        "    }  shortcut {  conv(8, 1) }\n"
        "    output y\n"
        "}\n"
    )
    with pytest.raises(resdsl.ResdslError):  # `x :` with a space is not a label
        format_source(messy)
    messy = messy.replace("input x : [3,8,8]", "input x: [3,8,8]")
    assert format_source(messy) == (
        "# header\n"
        "block unit(c, s=1) {  # the unit\n"
        "    conv(c, kernel_size=3, stride=s, padding=1)\n"
        "    relu\n"
        "\n"
        "    y = -c * 2 + (3 ** 2) // 4  # trailing\n"
        "}\n"
        "network n(depth=18) {\n"
        "    input x: [3, 8, 8]\n"
        "    stages = {\n"
        "        18: [2, 2],\n"
        "        34: [3, 4],  # deeper\n"
        "    }[depth]\n"
        "    for i, n in enumerate(stages) {\n"
        "        {i}: unit(4 * 2 ** i, s=1) -> t\n"
        "    }\n"
        "    if depth >= 50 {\n"
        "        relu\n"
        "    } else {\n"
        "        gelu\n"
        "    }\n"
        "    residual(shortcut=\"project\") {\n"
        "        conv(8, 3, padding=1)\n"
        "    } shortcut {\n"
        "        conv(8, 1)\n"
        "    }\n"
        "    output y\n"
        "}\n"
    )


def test_broken_lists_get_one_item_per_line_and_trailing_commas():
    src = "a = [1,\n  2, 3]\nb = [1, 2, 3,]\nc = f([1,\n2], 3)\n"
    assert format_source(src) == "a = [\n    1,\n    2,\n    3,\n]\nb = [1, 2, 3]\nc = f([\n    1,\n    2,\n], 3)\n"


def test_comments_everywhere_survive():
    src = ("# top\nk = [  # lead\n    # own line\n    1,  # one\n    2,\n]\n"
           "network n() {  # head\n    # inside\n    input x: [3]  # tail\n    relu\n    # last\n}\n# end\n")
    out = format_source(src)
    assert comments(out) == comments(src)
    assert format_source(out) == out
    assert shape_of_ast(parse(out)) == shape_of_ast(parse(src))


def test_signs_and_binary_minus():
    assert format_source("a = -1\nb = a - -1\nc = [-a, +2]\nd = f(-a) - 1\ne = -(a)\n") == \
        "a = -1\nb = a - -1\nc = [-a, +2]\nd = f(-a) - 1\ne = -(a)\n"


@settings(max_examples=fuzzgen.fuzz_examples(40), deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fuzzgen.program())
def test_random_programs_format_to_the_same_parse(src):
    try:
        before = parse(src)
    except resdsl.ResdslError:
        return
    out = format_source(src)
    assert shape_of_ast(parse(out)) == shape_of_ast(before)
    assert format_source(out) == out


def test_cli_check_and_write(tmp_path, capsys):
    f = tmp_path / "a.res"
    f.write_text("network n(){input x:[3]\nrelu}\n")
    assert main(["fmt", "--check", str(f)]) == 1
    cap = capsys.readouterr()
    assert "+network n() {" in cap.out and "1 file would be reformatted" in cap.err
    assert main(["fmt", str(f)]) == 0
    assert capsys.readouterr().out == "network n() {\n    input x: [3]\n    relu\n}\n"
    assert main(["fmt", "--write", str(f)]) == 0
    assert f.read_text() == "network n() {\n    input x: [3]\n    relu\n}\n"
    assert main(["fmt", "--check", str(f)]) == 0
    bad = tmp_path / "bad.res"
    bad.write_text("network n( {\n}\n")
    assert main(["fmt", str(bad)]) == 1
    assert "error[E001]" in capsys.readouterr().err


# ---------------------------------------------------------- token streams the formatter does not expect

class _Spun(Exception):
    """The reader looked at tokens more often than a linear read can: it would have looped (the old bug)."""


def _bounded_reader():
    """The formatter's reader, stopped after 4 looks per token (valid files need at most 2.4: examples, stdlib)."""
    from resdsl import fmt

    class Counting(fmt._Reader):
        looks = 0

        def peek(self):
            self.looks += 1
            if self.looks > 4 * (len(self.toks) + 1):
                raise _Spun(f"{self.looks} looks at {len(self.toks)} tokens")
            return super().peek()
    return Counting


def _read_bounded(toks: list) -> str:
    """Run the bounded reader on `toks`: 'ok', or 'bug' when it raised the formatter's internal error."""
    from resdsl import fmt
    try:
        _bounded_reader()(toks).body(top=True)
        return "ok"
    except fmt.FormatterBug:
        return "bug"


def test_a_token_stream_that_used_to_loop_raises_an_internal_error():
    from lark import Token
    # A `}` at the top level: `stmt` stopped before it without taking it, and `body` called `stmt` again, forever.
    stray = tokens("a = 1\n") + [Token("RBRACE", "}")] + tokens("b = 2\n")
    assert _read_bounded(stray) == "bug"
    # A body that is never closed: the reader used to fail with an IndexError.
    unclosed = tokens("network n() {\n    relu\n}\n")
    unclosed = unclosed[:max(i for i, t in enumerate(unclosed) if t.type == "RBRACE")]
    assert _read_bounded(unclosed) == "bug"


def test_interleaved_token_streams_end_in_a_linear_number_of_looks():
    """What the threads race of `parser.tokens` produced (q14's bug 4): two files' tokens mixed, some cut short."""
    import random
    rng = random.Random(14)
    streams = [tokens(p.read_text()) for p in EXAMPLES]
    seen = {"ok": 0, "bug": 0}
    for k in range(300):
        a, b = rng.choice(streams), rng.choice(streams)
        mixed, i, j = [], 0, 0
        while i < len(a) or j < len(b):
            if j >= len(b) or (i < len(a) and rng.random() < 0.5):
                mixed.append(a[i]); i += 1
            else:
                mixed.append(b[j]); j += 1
        seen[_read_bounded(mixed[:rng.randrange(len(mixed) + 1)] if k % 2 else mixed)] += 1
    assert seen["ok"] and seen["bug"]  # both outcomes happen, and none spun


def test_cli_reports_a_formatter_bug_as_an_internal_error(tmp_path, monkeypatch, capsys):
    from lark import Token
    import resdsl.fmt
    f = tmp_path / "a.res"
    f.write_text("a = 1\n")
    monkeypatch.setattr(resdsl.fmt, "tokens", lambda *a: [Token("RBRACE", "}")])
    monkeypatch.setattr(resdsl.fmt, "_Reader", _bounded_reader())
    assert main(["fmt", str(f)]) == 70
    err = capsys.readouterr().err
    assert "internal error" in err and "FormatterBug: fmt: unexpected RBRACE at token 0" in err
