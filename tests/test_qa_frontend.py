"""Adversarial checks of issue 14's front end: the per-process parse cache (resdsl/parser.py `_CACHE`), the
lean LALR driver against lark on hostile layout, and the caches' interplay with imports, limits, named
sizes and threads.  The property everywhere: a cached or fast path gives exactly what a fresh, slow one
gives -- the same AST and spans, the same diagnostics naming the same file, the same network."""
from __future__ import annotations

import concurrent.futures
import os
import random
import re
import sys
from collections import OrderedDict
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

import resdsl
from qa_programs import program
from resdsl import parser
from resdsl.diagnostics import ResdslError
from resdsl.elaborate import Elaborator
from resdsl.parser import parse
from test_parser_builder import TEXTS, _both
from test_replay import _graph

ROOT = Path(__file__).resolve().parent.parent
NET = "network n(c = 4) {\n    input x: [4]\n    linear(c)\n    relu\n    output y\n}\n"


def _diags(build) -> tuple:
    try:
        build()
    except ResdslError as e:
        return tuple((d.code, str(d.span), d.message, d.hint) for d in e.diagnostics)
    raise AssertionError("no error")


def _fresh(build):
    """What `build()` gives with an empty parse cache (and the cache as it was restored afterwards)."""
    saved = OrderedDict(parser._CACHE)
    parser._CACHE.clear()
    try:
        return build()
    finally:
        parser._CACHE.clear()
        parser._CACHE.update(saved)


# ---------------------------------------------------------------- the parse cache: keys


def test_the_same_text_under_two_names_reports_each_name():
    text = "network n() {\n    input x: [4]\n    linear(undefined_width)\n}\n"
    a = _diags(lambda: resdsl.loads(text, name="a.res"))
    b = _diags(lambda: resdsl.loads(text, name="b.res"))
    assert a[0][1] == "a.res:3:12" and b[0][1] == "b.res:3:12"
    assert a[0][0] == b[0][0] == "E010" and a[0][2:] == b[0][2:]
    # and the ASTs' spans name their own file, on a hit as on a miss
    for name in ("a.res", "b.res", "a.res"):
        assert {s.file for s in _spans(parse(text, name))} == {name}


def test_a_syntax_error_under_two_names_reports_each_name():
    text = "network n() {\n    input x: [4]\n    linear(4\n}\n"
    for name in ("p.res", "q.res", "p.res"):
        (d,) = _diags(lambda: parse(text, name))
        assert d[1].startswith(name + ":")


def _spans(x) -> list:
    out, stack = [], [x]
    while stack:
        v = stack.pop()
        if isinstance(v, resdsl.span.Span):
            out.append(v)
        elif isinstance(v, tuple):
            stack.extend(v)
        elif is_dataclass(v):
            stack.extend(getattr(v, f.name) for f in fields(v))
    return out


def test_edited_files_are_read_again_imports_too(tmp_path):
    """Same size, same modification time: nothing but the content tells the old file from the new."""
    lib, main = tmp_path / "lib.res", tmp_path / "main.res"
    main.write_text('import "lib.res"\nnetwork n() {\n    input x: [4]\n    unit()\n}\n')
    lib.write_text("block unit() { linear(4) }\n")
    st = os.stat(lib)
    assert resdsl.load(main).param_count == 4 * 4 + 4
    lib.write_text("block unit() { linear(8) }\n")
    os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert resdsl.load(main).param_count == 4 * 8 + 8
    # an error in the edited import names the import, at the new text's position
    lib.write_text("block unit() { linear(q) }\n")
    assert _diags(lambda: resdsl.load(main))[0][:2] == ("E010", f"{lib}:1:23")
    main.write_text('import "lib.res"\nnetwork n() {\n    input x: [4]\n    linear(3)\n}\n')
    assert resdsl.load(main).param_count == 4 * 3 + 3  # the main file too (its unit() is gone)


def test_a_nesting_limit_is_not_answered_from_a_parse_under_another():
    deep = "x = " + "(" * 30 + "1" + ")" * 30 + "\nnetwork n() {\n    input x: [4]\n}\n"
    assert parse(deep, "deep.res").items  # cached under the default limit of 200
    tight = resdsl.Limits(max_nesting=10)
    hit = _diags(lambda: resdsl.loads(deep, name="deep.res", limits=tight))
    assert hit[0][0] == "E040" and hit == _fresh(lambda: _diags(lambda: resdsl.loads(deep, name="deep.res", limits=tight)))
    # and the other way round: refused under 10, then accepted under 200
    assert resdsl.loads(deep, name="deep.res").param_count == 0


@pytest.mark.parametrize("limit", ["max_steps", "max_nodes"])
def test_elaboration_limits_are_not_answered_from_a_load_under_others(limit):
    text = "network n(K = 40) {\n    input x: [4]\n    for i in range(K) { residual { linear(4) } }\n}\n"
    big = resdsl.loads(text, name="lim.res")
    small = resdsl.Limits(**{limit: 30})
    hit = _diags(lambda: resdsl.loads(text, name="lim.res", limits=small))
    assert hit[0][0] == "E040" and hit == _fresh(lambda: _diags(lambda: resdsl.loads(text, name="lim.res", limits=small)))
    assert resdsl.loads(text, name="lim.res").param_count == big.param_count == 40 * 20


# ---------------------------------------------------------------- what the API returns cannot poison it


def _walk_immutable(x, path: str, bad: list) -> None:
    if isinstance(x, (list, dict, set, bytearray)):
        bad.append((path, type(x).__name__))
    elif isinstance(x, tuple):
        for i in x:
            _walk_immutable(i, path, bad)
    elif is_dataclass(x):
        if not type(x).__dataclass_params__.frozen:
            bad.append((path, "not frozen"))
        for f in fields(x):
            _walk_immutable(getattr(x, f.name), f"{type(x).__name__}.{f.name}", bad)
    elif not isinstance(x, (str, int, float, bool, type(None))):
        bad.append((path, type(x).__name__))


def test_cached_asts_are_deeply_immutable():
    """Every value in a cached module is a frozen dataclass, a tuple or a scalar: nobody holding the
    module a load returned can change what the next load gets."""
    bad: list = []
    for i, text in enumerate(TEXTS):
        _walk_immutable(parse(text, f"imm{i}.res"), "Module", bad)
    assert not bad, bad[:5]
    with pytest.raises(AttributeError):
        parse(NET, "imm.res").items[0].body = ()


def test_mutating_what_a_load_returns_does_not_change_the_next_load():
    first = resdsl.loads(NET, name="mut.res")
    expected = repr(_graph(first))
    prog = resdsl.loader.load_program(NET, "mut.res")
    prog.networks.clear()
    prog.blocks["x"] = None
    prog.constants.append(None)
    first.graph.nodes.reverse()
    first.graph.nodes[0] = None
    first.graph.params["c"] = 99
    first.graph.scopes.clear()
    first.graph.outputs.clear()
    second = resdsl.loads(NET, name="mut.res")
    assert repr(_graph(second)) == expected
    assert second.param_count == 4 * 4 + 4 and second.outputs == {"y": (4,)}


# ---------------------------------------------------------------- the parse cache: size and threads


class _CountingDict(OrderedDict):
    iterated = 0

    def __iter__(self):
        for k in super().__iter__():
            _CountingDict.iterated += 1
            yield k


def test_the_cache_stays_within_its_bound_without_rescanning_itself(monkeypatch):
    """Many distinct texts: at most _CACHE_CHARS characters are kept, the newest stays, and an insert does
    not walk every entry (it summed all keys at every insert: 20,000 small texts took 10 s, not 0.3)."""
    monkeypatch.setattr(parser, "_CACHE", _CountingDict())
    monkeypatch.setattr(parser, "_CACHE_CHARS", 5000)
    _CountingDict.iterated = 0
    texts = [f"x{i} = {i}\n" for i in range(2000)]
    for t in texts:
        parse(t, "many.res")
    assert sum(len(k[1]) for k in parser._CACHE.keys()) <= 5000
    assert ("many.res", texts[-1], 200) in parser._CACHE
    assert len(parser._CACHE) >= 5000 // 14  # (texts of 12 to 13 characters)
    assert _CountingDict.iterated <= 2000, _CountingDict.iterated  # (the check above iterates ~500)


def test_a_text_parsed_again_is_counted_once(monkeypatch):
    module = parse("x = 1\n", "f.res")
    monkeypatch.setattr(parser, "_CACHE", OrderedDict())
    monkeypatch.setattr(parser, "_CACHE_CHARS", 100)
    parser._remember(("f.res", "a" * 60, 200), module)
    parser._remember(("f.res", "a" * 60, 200), module)  # the same key twice (two threads missed at once)
    parser._remember(("g.res", "b" * 30, 200), module)
    assert list(parser._CACHE) == [("f.res", "a" * 60, 200), ("g.res", "b" * 30, 200)]  # 90 characters: kept
    parser._remember(("h.res", "c" * 20, 200), module)
    assert list(parser._CACHE) == [("g.res", "b" * 30, 200), ("h.res", "c" * 20, 200)]  # 110: the oldest goes


def test_threads_loading_at_once_get_what_one_thread_gets(monkeypatch):
    """A few threads loading different files into a small cache (every insert evicts): the same networks as
    loading them one after another, and no `OrderedDict mutated during iteration` from the cache."""
    monkeypatch.setattr(parser, "_CACHE_CHARS", 400)
    texts = [f"network n{i}() {{\n    input x: [4]\n" + "    linear(4)\n" * (1 + i % 5) + "    relu\n}\n"
             for i in range(24)]
    expected = [_graph(resdsl.loads(t, name=f"t{i}.res")) for i, t in enumerate(texts)]

    trees = [repr(parse(t, f"t{i}.res")) for i, t in enumerate(texts)]

    def parses(j: int) -> list:  # parsing alone: the cache's share of the time is largest
        return [(i, repr(parse(texts[i], f"t{i}.res"))) for _ in range(120) for i in range(j, len(texts), 4)]

    def loads(j: int) -> list:
        return [(i, _graph(resdsl.loads(texts[i], name=f"t{i}.res"))) for _ in range(4)
                for i in range(j, len(texts), 4)]

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            parsed = [r for f in [pool.submit(parses, j) for j in range(4)] for r in f.result()]
            results = [r for f in [pool.submit(loads, j) for j in range(4)] for r in f.result()]
    finally:
        sys.setswitchinterval(old)
    assert len(parsed) == 24 * 120 and all(t == trees[i] for i, t in parsed)
    assert len(results) == 24 * 4 and all(g == expected[i] for i, g in results)


def test_threads_taking_tokens_at_once_get_their_own_tokens():
    """`tokens` (the formatter's lexer) shares one lark parser and one token sink per process: two threads
    interleaved their tokens, and `resdsl fmt`'s formatter then looped forever on the mixture."""
    texts = TEXTS[:8]
    expected = [[(t.type, str(t), t.start_pos) for t in parser.tokens(x, f"k{i}.res")] for i, x in enumerate(texts)]

    def work(j: int) -> list:
        return [(i, [(t.type, str(t), t.start_pos) for t in parser.tokens(texts[i], f"k{i}.res")])
                for _ in range(3) for i in range(j, len(texts), 4)]

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = [r for f in [pool.submit(work, j) for j in range(4)] for r in f.result()]
    finally:
        sys.setswitchinterval(old)
    assert len(results) == len(texts) * 3 and all(toks == expected[i] for i, toks in results)


# ---------------------------------------------------------------- the lean driver against lark


BASE = "network n() {\n  input x: [4]\n  linear(4)\n  output y\n}\n"
LAYOUT = {
    "empty file": "",
    "only a comment, no newline": "# nothing",
    "only comments": "# a\n   # b\n\n",
    "only blank lines": "\n\n\n",
    "CRLF": BASE.replace("\n", "\r\n"),
    "CR alone": BASE.replace("\n", "\r"),
    "tabs": BASE.replace("  ", "\t"),
    "form feeds": BASE.replace("  ", "\f"),
    "vertical tab": BASE.replace("  ", "\v"),
    "byte-order mark": "\ufeff" + BASE,
    "no newline at the end": BASE.rstrip("\n"),
    "a comment at the end, no newline": BASE + "# end",
    "a backslash joins lines": "network n() {\n  input x: [4]\n  linear(\\\n4)\n}\n",
    "a backslash at the end of the file": BASE + "\\",
    "a backslash before CRLF": "network n() {\r\n  input x: [4]\r\n  linear(4) \\\r\n  relu\r\n}\r\n",
    "a backslash before a comment": "network n() {\n  input x: [4]\n  linear(4) \\ # c\n  relu\n}\n",
    "a backslash then a tab": "x = 1 + \\\t\n 2\n",
    "a non-ASCII name": "network n() {\n  input x: [4]\n  é = 4\n  linear(é)\n}\n",
    "a non-ASCII label": "network n() {\n  input x: [4]\n  λ: linear(4)\n}\n",
    "a no-break space": BASE.replace("  ", "\u00a0"),
    "a zero-width space": BASE.replace("linear", "lin\u200bear"),
    "`where` as a name": "network n() {\n  input x: [4]\n  where = 4\n  linear(where)\n}\n",
    "`where` as a label": "network n() {\n  input x: [4]\n  where: linear(4)\n}\n",
    "`where` as a parameter": "network n(where = 4) {\n  input x: [where]\n}\n",
    "`where` as a block": "block where(a) { relu }\nnetwork n() {\n  input x: [4]\n  where(1)\n}\n",
    "`where` after where": "network n() {\n  input x: [4, H] where H >= 2, where == 3\n}\n",
    "`for`, `in`, `if` as labels": "network n() {\n  input x: [4]\n  for: relu; in: relu; if: relu\n}\n",
    "`in` as a name": "network n() {\n  input x: [4]\n  in = 4\n}\n",
    "`else` as a name": "network n() {\n  input x: [4]\n  else = 4\n}\n",
    "`shortcut`, `branch` as names": "network n() {\n  input x: [4]\n  shortcut = 4\n  branch = 3\n  linear(shortcut)\n}\n",
    "empty statements": "network n() { input x: [4];;; linear(4);; }\n",
    "a very long line": "network n() { input x: [4]; " + "relu; " * 3000 + "}\n",
    "string escapes": 'x = "a\\"b\\\\c\\n\\t\\\'"\n',
    "CRLF inside a string": 'x = "a\r\nb"\n',
    "a comment before CRLF": "# a\r\nx = 1\r\n",
    "number forms": "x = 1_000 + 0.5e3 + 1e-3 + .5 + 5.\n",
    "hex is not a number": "x = 0x10\n",
    "a dict over lines": "x = {\n 1: 2,\n\n 3: 4,\n}\n",
    "else on the next line": "network n() {\n input x: [4]\n if true { relu }\n else { relu }\n}\n",
    "spaces in a label's braces": "network n() {\n input x: [4]\n for i in range(2) { l{ i + 1 }: relu }\n}\n",
    "a brace in a string in a label": 'network n() {\n input x: [4]\n l{"}"}: relu\n}\n',
    "a NUL character": "x = 1\0\n",
    "a lone surrogate in a string": 'x = "\ud800"\n',
    "CR in the middle": "x = 1\ry = 2\n",
}


@pytest.mark.parametrize("case", LAYOUT)
def test_hostile_layout_parses_as_lark_parses_it(case):
    """The lean driver succeeds exactly where lark does, with the same AST and spans; `parse` gives that
    AST or a located E001/E040, never a traceback, and the same answer on a cache hit."""
    text = LAYOUT[case]
    ref, lean = _both(text)
    assert ref == lean
    first = _outcome(lambda: parse(text, "lay.res"))
    assert first == _outcome(lambda: parse(text, "lay.res"))  # the hit
    if ref == "error":
        assert first[0] in ("E001", "E040") and first[1].startswith("lay.res:"), first
    else:
        assert first == ("ok", ref.replace("f.res", "lay.res"))


def _outcome(build) -> tuple:
    try:
        return ("ok", repr(build().items))
    except ResdslError as e:
        d = e.diagnostics[0]
        return (d.code, str(d.span), d.message)


NESTING = {
    "parentheses": lambda d: "x = " + "(" * d + "1" + ")" * d + "\n",
    "lists": lambda d: "x = " + "[" * d + "1" + "]" * d + "\n",
    "dicts": lambda d: "x = " + "{1: " * d + "1" + "}" * d + "\n",
    "minus signs": lambda d: "x = " + "-" * d + "1\n",
    "nots": lambda d: "x = " + "not " * d + "true\n",
    "a chain of +": lambda d: "x = " + " + ".join(["1"] * (d + 1)) + "\n",
    "a chain of **": lambda d: "x = " + " ** ".join(["2"] * (d + 1)) + "\n",
    "indexing": lambda d: "x = a" + "[0]" * d + "\n",
    "calls": lambda d: "x = " + "abs(" * d + "1" + ")" * d + "\n",
    "conditionals": lambda d: "x = " + "1 if true else " * d + "1\n",
    "groups": lambda d: "network n() {\ninput x: [4]\n" + "group {\n" * d + "relu\n" + "}\n" * d + "}\n",
    "ifs": lambda d: "network n() {\ninput x: [4]\n" + "if true {\n" * d + "relu\n" + "}\n" * d + "}\n",
    "a label's braces": lambda d: "network n() {\ninput x: [4]\nl{" + "(" * d + "1" + ")" * d + "}: relu\n}\n",
    "a name's braces": lambda d: "network n() {\ninput x: [4]\nrelu -> s{" + "(" * d + "1" + ")" * d + "}\n}\n",
}


@pytest.mark.parametrize("form", NESTING)
@pytest.mark.parametrize("limit", [4, 9])
def test_nesting_right_at_the_limit_and_one_past_it(form, limit):
    """Around `max_nesting`, the driver and lark's builder agree wherever the driver answers (where it
    fails, `parse` asks the builder), and `parse` through the cache gives what a fresh parse gives."""
    from resdsl.parser import _Fail, _ToAst, _TooDeep

    def via(run, text):
        try:
            return repr(tuple(run(text + "\n", "start", _ToAst("n.res", limit=limit), limit)))
        except (_TooDeep, _Fail, ResdslError):
            return "refused"

    builder = parser._builder()
    outcomes = []
    for d in range(limit - 3, limit + 3):
        text = NESTING[form](d)
        lean = via(parser._driver().run, text)
        built = via(lambda *a: builder.run(parser._lark(), *a), text)
        assert lean in ("refused", built), (d, lean, built)
        limits = resdsl.Limits(max_nesting=limit)
        got = _outcome(lambda: parse(text, "n.res", limits))
        assert got == _fresh(lambda: _outcome(lambda: parse(text, "n.res", limits)))
        assert got[0] in ("ok", "E040", "E001"), got
        outcomes.append(got[0])
    assert "E040" in outcomes  # the sweep crosses the limit


def _relayout(text: str, rng: random.Random) -> str:
    k = rng.randrange(7)
    if k == 0:
        return text.replace("\n", "\r\n")
    if k == 1:
        return text.replace("; ", " ;\t")
    if k == 2:
        return re.sub(r"\n", lambda m: "  # c " + "{" * rng.randrange(2) + "\n", text)
    if k == 3:
        return text.replace(", ", ",\\\n ")
    if k == 4:
        return text.rstrip("\n")
    if k == 5:
        return text.replace("\n", "\n\f\t \n")
    return text.replace("(", "( ").replace(")", " )")


_SPAN = re.compile(r"Span\([^)]*\)")


def test_random_programs_parse_as_lark_parses_them_in_any_layout():
    """300 random programs (tests/qa_programs.py) and a re-laid-out copy of each (CRLF, tabs, form feeds,
    comments, backslash joins, no final newline, spaces in brackets): the driver matches lark, and the
    layout changes the spans only."""
    valid = 0
    for seed in range(300):
        text = program(seed)
        ref, lean = _both(text)
        assert ref == lean, seed
        other = _relayout(text, random.Random(seed))
        ref2, lean2 = _both(other)
        assert ref2 == lean2, (seed, other)
        assert (lean == "error") == (lean2 == "error"), (seed, other)
        if lean != "error":
            valid += 1
            assert _SPAN.sub("", lean).replace("\\r\\n", "\\n") == _SPAN.sub("", lean2).replace("\\r\\n", "\\n"), seed
    assert valid >= 250


# ---------------------------------------------------------------- named sizes, replay and the cache together


SIZED = """
block unit(c) { residual { conv(c, 3, padding=1); batchnorm() }; relu }
network n() {
    input x: [8, H, W] where H % 4 == 0, W == H
    for i in range(4) { unit(8) }
    if H > 32 { maxpool(2) }
    for i in range(3) { unit(8) }
    output y
}
"""


@pytest.mark.parametrize("size", [16, 36, 64])
def test_one_body_under_two_input_sizes(size):
    """The same cached AST built at another size (the size analysis rebuilds it): each build replays its
    own bodies, and equals the build with replay off and from an empty cache."""
    net = resdsl.loads(SIZED, name="sized.res", input_shapes={"x": (8, size, size)})
    other = resdsl.loads(SIZED, name="sized.res", input_shapes={"x": (8, 2 * size, 2 * size)})
    Elaborator.replay_bodies = False
    try:
        plain = _fresh(lambda: resdsl.loads(SIZED, name="sized.res", input_shapes={"x": (8, size, size)}))
    finally:
        Elaborator.replay_bodies = True
    assert _graph(net) == _graph(plain)
    out = size // 2 if size > 32 else size
    assert net.outputs == {"y": (8, out, out)}
    out2 = size if 2 * size > 32 else 2 * size
    assert other.outputs == {"y": (8, out2, out2)}
    assert net.param_count == other.param_count == 7 * (8 * 8 * 9 + 8 + 2 * 8)
    assert repr(net.costs()) == repr(plain.costs()) and repr(net.paths()) == repr(plain.paths())


def test_the_size_analysis_of_a_body_that_reads_a_size_is_the_same_with_replay():
    on = resdsl.loads(SIZED, name="sized.res")
    Elaborator.replay_bodies = False
    try:
        off = resdsl.loads(SIZED, name="sized.res")
        off_sizes = repr(off.valid_sizes())
    finally:
        Elaborator.replay_bodies = True
    assert _graph(on) == _graph(off)
    assert repr(on.valid_sizes()) == off_sizes


_TOKEN = re.compile(r'\s+|#[^\n]*|"[^"\n]*"|[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d*)?|->|\*\*|//|==|!=|<=|>=|\.\.|[^\sA-Za-z_0-9]')
_INSERTS = ["{", "}", "(", ")", "[", "]", ",", ":", ";", "\n", "\\\n", "->", "where", "for", "in", "if", "else", "..",
            "{i}", "_", "-", "not", ".", "=", "==", "\r", "\t", "#", "'", '"', "0", "1.5", "import", "block", "network",
            "output", "from"]


def test_token_mutants_of_random_programs_fail_where_lark_fails():
    """Delete, insert, replace or duplicate tokens of random programs: the driver accepts exactly what lark
    accepts, with the same AST (a driver that accepted a broken text would give an answer, not E001)."""
    valid = 0
    for seed in range(150):
        toks = _TOKEN.findall(program(seed))
        rng = random.Random(seed)
        for _ in range(4):
            ts = list(toks)
            for _ in range(1 + rng.randrange(3)):
                i, k = rng.randrange(len(ts)), rng.randrange(4)
                if k == 0:
                    del ts[i]
                elif k == 1:
                    ts.insert(i, rng.choice(_INSERTS))
                elif k == 2:
                    ts[i] = rng.choice(_INSERTS)
                else:
                    ts.insert(i, ts[rng.randrange(len(ts))])
            ref, lean = _both("".join(ts))
            assert ref == lean, (seed, "".join(ts))
            valid += ref != "error"
    assert 40 <= valid <= 560, valid


@pytest.mark.parametrize("compile_after", [0, 3, 10**9])
def test_the_lazy_lexers_of_other_interpreters_match_lark_on_hostile_text(compile_after, monkeypatch):
    """Without this interpreter's shipped patterns (another Python), each state's lexer is tried terminal
    by terminal, then compiled: on hostile layout and random programs, still lark's AST wherever it answers."""
    from resdsl.parser import _Fail, _ToAst, _TooDeep

    monkeypatch.setattr(parser._StateLexer, "COMPILE_AFTER", compile_after)
    driver = parser._Driver(parser._shipped_tables(), {})
    texts = list(LAYOUT.values())
    for seed in range(60):
        texts += [program(seed), _relayout(program(seed), random.Random(seed))]
    for text in texts:
        ref, _ = _both(text)
        try:
            got = repr(tuple(driver.run(text + "\n", "start", _ToAst("f.res"), 200)))
        except (_Fail, _TooDeep, ResdslError):
            continue  # parse would ask lark
        assert got == ref, text


def test_every_span_points_at_its_own_text():
    """Independent of lark (the reference shares `_ToAst`, so it would share a wrong shift): every span's
    line and column are those of its offsets in the text, and a name's span slices out the name -- in
    labels' and names' braces, after CRLF, tabs, form feeds and backslash joins too."""
    from resdsl import syntax as ast
    from resdsl.span import Source, Span

    texts = list(TEXTS) + list(LAYOUT.values())
    for seed in range(150):
        texts += [program(seed), _relayout(program(seed), random.Random(seed))]
    names = 0
    for i, text in enumerate(texts):
        try:
            module = parse(text, f"s{i}.res")
        except ResdslError:
            continue
        src = Source(f"s{i}.res", text)
        stack = [module]
        while stack:
            v = stack.pop()
            if isinstance(v, tuple):
                stack.extend(v)
                continue
            if not is_dataclass(v) or isinstance(v, Span):
                continue
            sp = getattr(v, "span", None)
            if isinstance(sp, Span):
                assert src.position(sp.start) == (sp.line, sp.col), (i, v)
                assert src.position(sp.end) == (sp.end_line, sp.end_col), (i, v)
                if isinstance(v, ast.Name):
                    assert text[sp.start:sp.end] == v.id, (i, v)
                    names += 1
            stack.extend(getattr(v, f.name) for f in fields(v))
    assert names > 5000, names


def test_threads_analysing_sizes_at_once_get_what_one_thread_gets():
    """The symbolic size analysis (analysis/symbolic.py) kept the run in progress in a module global: with
    two threads analysing at once, one thread's comparisons were decided by the other's run, and resnet's
    W came out valid only for 1..7 ("a comparison outside a symbolic run" elsewhere) -- wrong size sets,
    no error.  The state is per thread now."""
    jobs = [("resnet.res", {"x": (3, "H", "W")}, {"depth": 18}), ("resnet.res", {"x": (3, "H%32", "W")}, {"depth": 18}),
            ("mobilenet_v2.res", None, {}), ("unet.res", {"x": (1, "H", "H")}, {}), ("vit.res", {"x": (3, "H", "W")}, {})]

    def facts(i: int) -> str:
        name, shapes, params = jobs[i]
        try:
            net = resdsl.load(ROOT / "examples" / name, input_shapes=shapes, **params)
            return repr((net.valid_sizes(), net.symbolic_shapes(), net.outputs))
        except ResdslError as e:
            return repr(e.diagnostics)

    expected = [facts(i) for i in range(len(jobs))]
    assert sum("SizeReport" in e for e in expected) >= 4
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            got = list(pool.map(facts, [i for _ in range(2) for i in range(len(jobs))]))
    finally:
        sys.setswitchinterval(old)
    assert got == expected * 2


def test_threads_reporting_syntax_errors_at_once_report_what_one_thread_reports():
    """The error path (lark's parser, its post-lexer and the nesting walk) is shared by the process and
    serialised by the builder's lock: broken texts in 4 threads give the sequential diagnostics."""
    texts = []
    for seed in range(60):
        toks, rng = _TOKEN.findall(program(seed)), random.Random(seed)
        toks.insert(rng.randrange(len(toks)), rng.choice(_INSERTS))
        texts.append("".join(toks))
    texts += ["x = " + "(" * 300 + "1" + ")" * 300 + "\n", "network n() {\n" + "group {\n" * 250 + "}" * 250 + "}\n"]

    def diagnostics(i: int) -> str:
        try:
            resdsl.loads(texts[i], name=f"e{i}.res")
            return "ok"
        except ResdslError as e:
            return repr(e.diagnostics)

    expected = [diagnostics(i) for i in range(len(texts))]
    assert sum(e != "ok" for e in expected) >= 50
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            got = list(pool.map(diagnostics, list(range(len(texts))) * 2))
    finally:
        sys.setswitchinterval(old)
    assert got == expected * 2
