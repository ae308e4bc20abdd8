"""The parser builds the AST inside lark's LALR parse (issue 14).  These tests pin that the result is
exactly what building lark's parse tree and transforming it gives -- every node and every span --
and that the per-process cache returns the same modules."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Lark, Transformer
from lark.exceptions import UnexpectedInput

import resdsl
from resdsl import parser
from resdsl.parser import _Fail, _Newlines, _Seq, _ToAst, _TooDeep, grammar_path, parse

from fuzzgen import SOUP, mutant, program, valid_program

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [p.read_text() for p in sorted((ROOT / "examples").glob("*.res")) + sorted((ROOT / "resdsl" / "stdlib").glob("*.res"))]
DOC = re.findall(r"^```res\n(.*?)^```", (ROOT / "docs" / "language.md").read_text(), re.S | re.M)
# statements are shown bare in the docs: put them in a network body


def _as_file(text: str) -> str:
    try:
        parse(text, "doc.res")
        return text
    except resdsl.ResdslError:
        return "network doc() {\n" + "".join("    " + ln + "\n" for ln in text.splitlines()) + "}\n"


TEXTS += [_as_file(t) for t in DOC]


class _TreeThenTransform(Transformer):
    """The reference: lark's parse tree (propagate_positions) walked by the same rule methods."""

    def __init__(self, file: str):
        super().__init__()
        self.to_ast = _ToAst(file)

    def __default__(self, data, children, meta):
        return getattr(_ToAst, data)(self.to_ast, meta, children)


_REFERENCE = []


def _reference(text: str, file: str):
    if not _REFERENCE:
        _REFERENCE.append(Lark(grammar_path().read_text(), parser="lalr", lexer="contextual", postlex=_Newlines(),
                               propagate_positions=True, maybe_placeholders=True, start=["start", "expr"]))
    return _TreeThenTransform(file).transform(_REFERENCE[0].parse(text + "\n", start="start"))


def _lean(text: str, file: str):
    """The lean driver alone (`parse` would quietly hand a text it fails on to lark)."""
    return parser._driver().run(text + "\n", "start", _ToAst(file), resdsl.Limits().max_nesting)


def _both(text: str) -> tuple[str, str]:
    """(reference, lean driver): the AST's repr, or "error" -- the driver must fail exactly where lark does."""
    out = []
    for how, errors in ((_reference, (UnexpectedInput, _TooDeep, resdsl.ResdslError)),
                        (_lean, (_Fail, _TooDeep, resdsl.ResdslError))):
        try:
            out.append(repr(tuple(how(text, "f.res"))))
        except errors:
            out.append("error")
    return out[0], out[1]


@pytest.mark.parametrize("i", range(len(TEXTS)))
def test_ast_and_spans_equal_tree_then_transform(i):
    parser._CACHE.clear()
    built = parse(TEXTS[i], f"t{i}.res")
    assert repr(built.items) == repr(tuple(_reference(TEXTS[i], f"t{i}.res")))


@pytest.mark.parametrize("i", range(len(TEXTS)))
def test_the_lean_driver_builds_the_same_ast_and_spans(i):
    assert repr(_lean(TEXTS[i], f"t{i}.res")) == repr(tuple(_reference(TEXTS[i], f"t{i}.res")))


def test_the_shipped_tables_are_current_and_equal_those_built_from_the_grammar():
    # resdsl/lalr_tables.py is made by grammar/make_tables.py (run it after editing the grammar); a stale
    # file would be ignored, and cost a lark build at the first parse of every process
    from resdsl import lalr_tables

    assert lalr_tables.GRAMMAR_SHA256 == parser.grammar_digest()
    assert lalr_tables.GRAMMAR == grammar_path().read_text()
    assert parser._shipped_tables() is lalr_tables.TABLES
    assert parser._tables(parser._lark()) == lalr_tables.TABLES  # states renumbered: the same every run
    fresh = parser._Driver(parser._tables(parser._lark()))
    for i, text in enumerate(TEXTS):
        built = fresh.run(text + "\n", "start", _ToAst(f"t{i}.res"), 200)
        assert repr(built) == repr(_lean(text, f"t{i}.res"))


def _by_own_lexers_only(tables: dict) -> dict:
    """The tables without the lexers by next character: every token from its state's own lexer."""
    return dict(tables, dispatch=[() for _ in tables["dispatch"]], skip=())


@pytest.mark.parametrize("compile_after", [0, 10**9])
def test_a_state_s_own_lexer_gives_the_same_tokens_one_terminal_at_a_time_or_compiled(monkeypatch, compile_after):
    # where the shared pattern cannot decide, a state tries its terminals one by one, and after a few
    # tokens compiles their union; both must give lark's tokens (the corpus has every kind of case)
    monkeypatch.setattr(parser._StateLexer, "COMPILE_AFTER", compile_after)
    fresh = parser._Driver(_by_own_lexers_only(parser._shipped_tables()))
    for i, text in enumerate(TEXTS):
        built = fresh.run(text + "\n", "start", _ToAst(f"t{i}.res"), 200)
        assert repr(built) == repr(tuple(_reference(text, f"t{i}.res")))
    asked = [lx[0] for lx in fresh.lexers.values() if lx[0].asked]
    assert asked and all((lx.own.compiled is not None) == (compile_after == 0) for lx in asked)


def test_lark_s_parser_for_errors_is_loaded_from_the_shipped_data_and_parses_as_the_grammar_does(monkeypatch):
    # resdsl/lark_data.py (grammar/make_tables.py) spares the first syntax error of a process lark's
    # 50 ms table build; it must be current, be what _new_lark uses, and give the grammar's trees
    import lark

    from resdsl import lark_data

    assert (lark_data.LARK_VERSION, lark_data.GRAMMAR_SHA256) == (lark.__version__, parser.grammar_digest())
    _reference("x = 1", "warm.res")  # the reference parser is built from the grammar, before the patch

    def refuse(*args, **kwargs):
        raise AssertionError("lark's parser was built from the grammar instead of loaded")

    monkeypatch.setattr(lark.Lark, "__init__", refuse)
    loaded = parser._new_lark(postlex=_Newlines())
    for i, text in enumerate(TEXTS):
        tree = loaded.parse(text + "\n", start="start")
        assert repr(tuple(_TreeThenTransform(f"t{i}.res").transform(tree))) == repr(tuple(_reference(text, f"t{i}.res")))


def test_no_parser_is_read_from_or_written_to_lark_s_cache_in_the_temp_dir():
    # lark's cache=True unpickles /tmp/.lark_cache_<user>_<hash>_<python>.tmp, a name anyone can predict
    assert parser._lark().options.cache is False and parser._tree_lark().options.cache is False
    assert parser._token_lark()[0].options.cache is False


@settings(max_examples=150)
@given(st.one_of(program(), valid_program(), mutant().map(lambda m: m[1].decode("utf-8", "replace")),
                 st.lists(SOUP, max_size=40).map(" ".join)))
def test_the_lean_driver_fails_exactly_where_lark_does(text):
    # generated files, mutated examples and token soup: the same AST and spans when lark's parse
    # succeeds, a failure (then lark parses again for the diagnostic) exactly when it does not
    ref, lean = _both(text)
    assert lean == ref


def test_invalid_texts_fail_in_the_driver_and_get_lark_diagnostics():
    texts = ["network n() {\n    conv(\n", "x = 1 +\n", "network n() { for = 1 }\n",
             "network n() {\n    y = " + "(" * 300 + "1" + ")" * 300 + "\n}\n", "x = \"\\q\"\n"]
    for text in texts:
        assert _both(text) == ("error", "error"), text


def test_brackets_and_keywords_are_in_the_spans():
    text = "network n(a = (1 + 2) * 3) {\n    input x: [4]\n    assert (a) == 9, \"m\"\n    y = [\n        1,\n    ]\n}\n"
    parser._CACHE.clear()
    assert repr(parse(text, "b.res").items) == repr(tuple(_reference(text, "b.res")))
    net = parse(text, "b.res").items[0]
    default = net.params[0].default
    assert (default.span.col, default.span.end_col) == (15, 26)     # `(1 + 2) * 3`: the bracket is in
    assert (default.left.span.col, default.left.span.end_col) == (16, 21)  # `1 + 2` itself: without it
    assert net.body[1].span.col == 5                                  # `assert` starts the statement


def test_the_cache_returns_the_same_module_and_keys_on_name_text_and_limit():
    parser._CACHE.clear()
    text = TEXTS[0]
    a = parse(text, "same.res")
    assert parse(text, "same.res") is a
    assert parse(text, "other.res") is not a and parse(text, "other.res").file == "other.res"
    assert parse(text, "same.res", resdsl.Limits(max_nesting=50)) is not a
    assert parse(text + "\n", "same.res") is not a


def test_the_cache_is_bounded_by_source_size(monkeypatch):
    parser._CACHE.clear()
    monkeypatch.setattr(parser, "_CACHE_CHARS", 1000)
    for i in range(50):
        parse(f"x{i} = {'1 + ' * 100}1\n", f"f{i}.res")
    assert sum(len(k[1]) for k in parser._CACHE) <= 1000 and len(parser._CACHE) >= 1
    assert ("f49.res", f"x49 = {'1 + ' * 100}1\n", 200) in parser._CACHE   # the newest stays


def test_empty_bodies_are_distinct_values():
    # the builder tells values apart by identity: an empty body must not be the shared `()`
    m = parse("block a() {}\nblock b() {}\n", "e.res")
    assert type(m.items[0].body) is _Seq and m.items[0].body is not m.items[1].body
    assert m.items[1].span.end_col == 13


def test_long_names_lex_in_linear_time():
    # The label terminal once read `(?:\w+|...)+:`, which backtracks through every way of cutting a
    # name into pieces before giving up on it: a 22-character name at a statement's start took 0.4 s,
    # each further character doubling it.  These 60-character names would take centuries that way.
    name = "a" * 60
    net = resdsl.loads(f"network n() {{\n    input x: [4]\n    {name} = 1\n    {name}_2: relu -> {name}\n"
                       f"    from {name}\n}}\n")
    assert [m.name for m in net.nodes] == ["x", f"{name}_2"]
    terminals = [ln for ln in grammar_path().read_text().splitlines() if ln.startswith(("LABEL", "OUTNAME"))]
    assert len(terminals) == 2 and not any("\\w+" in ln or "\\w*" in ln for ln in terminals)


def test_the_highlighters_label_patterns_are_linear_too():
    import json

    from resdsl.lexer import ResdslLexer

    toks = list(ResdslLexer().get_tokens("    " + "b" * 60 + "(1)\n"))
    assert toks[1][1] == "b" * 60
    grammar = (ROOT / "editors" / "vscode" / "syntaxes" / "resdsl.tmLanguage.json").read_text()
    label = json.loads(grammar)["repository"]["label"]["match"]
    assert re.match(label, "c" * 60 + " = 1") is None and re.match(label, "conv.0.0: x").group(1) == "conv.0.0"


@pytest.mark.parametrize("expr,col", [("-" * 300 + "1", 208), (" + ".join(["1"] * 300), 9),
                                      ("not " * 300 + "true", 805)])
def test_too_deep_is_reported_where_the_tree_walk_reports_it(expr, col):
    # the builder notices the depth bottom-up; the diagnostic still names the node a top-down walk
    # of the parse tree meets first.  The columns are those the tree-then-transform parser printed
    # (measured with it before the change; the bottom-up node would be at 108 / 9 / 405).
    with pytest.raises(resdsl.ResdslError) as e:
        resdsl.loads(f"network n() {{\n    input x: [1]\n    y = {expr}\n}}\n")
    d = e.value.first
    assert (d.code, d.span.line, d.span.col) == ("E040", 3, col)


def test_valid_text_is_parsed_without_importing_lark():
    # lark (some 10-15 ms to import) is loaded for syntax errors, the formatter and the tables only; nor
    # hashlib (OpenSSL, a few ms): the shipped tables are checked against the grammar's text itself; nor
    # numpy (~55 ms), which only the size analyses need
    import subprocess
    import sys

    code = ("import sys, resdsl; n = resdsl.load('examples/resnet.res', depth=50); assert n.param_count == 25557032; "
            "print('lark' in sys.modules); resdsl.loads('network n() {\\n  input x: [4]\\n  relu\\n}\\n'); "
            "n.costs().total; "
            "print('lark' in sys.modules, 'hashlib' in sys.modules, 'resdsl.models' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}).stdout.split()
    assert out == ["False", "False", "False", "False", "False"]


def test_the_shipped_compiled_patterns_are_re_compile_s_for_every_lexer_and_are_what_the_driver_uses():
    # resdsl/lalr_tables.py carries each pattern compiled by this interpreter's regex engine (a process
    # would otherwise spend milliseconds in Python's regex compiler at its first parse); it must be
    # exactly what re.compile makes, cover every state's lexer, and be what the driver matches with
    import re as re_

    from resdsl import lalr_tables

    wanted = list(dict.fromkeys([lx[0] for lx in lalr_tables.TABLES["lexers"]] + lalr_tables.TABLES["patterns"]
                                + list(parser._PATTERNS)))
    assert list(lalr_tables.SRE["code"]) == wanted
    if lalr_tables.SRE["key"] != parser._sre_key():  # made by another interpreter: not used, nothing to compare
        assert parser._precompiled() == {}
        return
    assert lalr_tables.SRE == parser._sre_code(wanted)
    compiled = parser._precompiled()
    assert list(compiled) == wanted
    for pattern, made in compiled.items():
        fresh = re_.compile(pattern)
        assert made == fresh and (made.groups, made.groupindex, made.flags) == (fresh.groups, fresh.groupindex,
                                                                                fresh.flags)
    for own, *_ in parser._driver().lexers.values():
        assert own.own.compiled is compiled[own.own.pattern]
    assert all(parser._regex(p) is compiled[p] for p in parser._PATTERNS)


def test_without_shipped_compiled_patterns_the_driver_compiles_its_own_and_builds_the_same(monkeypatch):
    fresh = parser._Driver(parser._shipped_tables(), {})
    for i, text in enumerate(TEXTS):
        built = fresh.run(text + "\n", "start", _ToAst(f"t{i}.res"), 200)
        assert repr(built) == repr(_lean(text, f"t{i}.res"))
    assert not any(lx[0].own.compiled is parser._precompiled().get(lx[0].own.pattern) for lx in fresh.lexers.values())


def test_tables_made_from_another_grammar_are_not_used(monkeypatch):
    from resdsl import lalr_tables

    monkeypatch.setattr(lalr_tables, "GRAMMAR", lalr_tables.GRAMMAR + "\n// edited")
    assert parser._shipped_tables() is None


# -- the lean driver's own shortcuts (issue 14): each must give exactly what lark's lexer and parser do

def _terminals():
    return {t.name: t.pattern.to_regexp() for t in parser._lark().terminals}


def test_first_characters_are_those_the_terminals_begin_with():
    # the lexer by next character tries only the terminals that may begin with it: the analysis must
    # name every character a match can begin with (a superset is safe, a subset would lose tokens)
    firsts = {name: parser._first_chars(regexp) for name, regexp in _terminals().items()}
    letters = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
    assert firsts["NAME"] == letters and firsts["TNAME"] == letters
    assert firsts["INT"] == set("0123456789") and firsts["FLOAT"] == set("0123456789.")
    assert firsts["LABEL"] == letters | set("0123456789{") and firsts["OUTNAME"] == letters | {"{"}
    assert firsts["STRING"] == set("\"'") and firsts["COMMENT"] == {"#"} and firsts["_NL"] == set("\r\n")
    assert firsts["COMP"] == set("=!<>") and firsts["__IGNORE_1"] == set(" \t\f")
    for name, regexp in _terminals().items():  # and every match in the corpus begins with one of them
        pattern = re.compile(regexp)
        for text in TEXTS:
            for pos in range(len(text)):
                m = pattern.match(text, pos)
                if m is not None and m.end() > pos and text[pos].isascii():
                    assert text[pos] in firsts[name], (name, text[pos:pos + 20])


def test_first_characters_are_conservative_where_the_analysis_does_not_look():
    everything = parser._ASCII
    assert parser._first_chars(r"(?i:a)") == everything  # a group that changes flags
    assert parser._first_chars(r"a?b") == {"a", "b"} and parser._first_chars(r"(?=x)y") == {"y"}
    assert parser._first_chars(r"x*") == everything  # may match nothing
    assert parser._first_chars(r"(a)\1") == {"a"} and parser._first_chars(r"(a?)\1b") == everything
    assert parser._first_chars(r"[^a]") == everything - {"a"} and parser._first_chars(r"\d") == set("0123456789")


def test_terminals_that_cannot_hold_a_newline_hold_none_in_the_corpus():
    # lark counts the lines of every token whose pattern it cannot rule out holding a newline; the
    # driver counts those of the terminals the analysis cannot rule out
    one_line = set(parser._shipped_tables()["one_line"])
    assert {"_NL", "__IGNORE_2", "STRING"}.isdisjoint(one_line) and {"NAME", "LABEL", "COMMENT", "TNAME"} <= one_line
    assert not parser._may_hold(r"#[^\n]*", "\n") and parser._may_hold(r"(\r?\n)+", "\n")
    assert parser._may_hold(r"a.b", "\n")  # `.` counted as anything
    for name, regexp in _terminals().items():
        if name in one_line:
            pattern = re.compile(regexp)
            for text in TEXTS:
                for m in pattern.finditer(text):
                    assert "\n" not in m.group(), name


def _own_and_dispatched(driver, lexer: tuple, text: str, pos: int):
    """(type, end) from a state's own pattern and from the lexer by next character (None: no match)."""
    own = re.compile(lexer[0].own.pattern).match(text, pos)
    by_char = lexer[5].get(text[pos])
    if by_char.__class__ is str:
        got = (by_char, pos + 1)
    else:
        m = (by_char or lexer[1])(text, pos)
        got = None if m is None else (m.lastgroup, m.end())
    return (None if own is None else (own.lastgroup, own.end())), got


def test_the_lexer_by_next_character_matches_each_state_s_own_pattern():
    # at every character of a few files and after every ASCII character, for every state's lexer:
    # the same token (type and end) as the state's own union of its terminals, which is lark's
    driver = parser._driver()
    lexers = list({id(lx): lx for lx in driver.lexers.values()}.values())
    texts = [TEXTS[i] for i in range(0, len(TEXTS), 7)]
    texts += [chr(c) + tail for c in range(128) for tail in ("", "x", "1", "=1", " a", "{i}:", "\n#")]
    for lexer in lexers:
        for text in texts:
            for pos in range(len(text)):
                own, got = _own_and_dispatched(driver, lexer, text, pos)
                assert own == got, (lexer[0].own.pattern[:40], text[pos:pos + 20])


def test_only_spaces_are_skipped_before_the_state_is_looked_at():
    driver = parser._driver()
    assert set(driver.skip) == set(" \t\f")
    assert all(lx[5][ch] is driver.spaces for lx in driver.lexers.values() for ch in " \t\f")


def test_the_rules_that_splice_are_classified_as_the_grammar_says():
    # `_sep` never holds a value, `_stmt` and `_top` hold exactly one, the `x*` helpers are lists; no rule
    # needs the generic path
    tables = parser._shipped_tables()
    includes = [filt if filt is not None else (tuple((i, False, 0) for i in range(r[0])), 0)
                for r in tables["rules"] for filt in [r[4]]]
    void, item = parser._symbol_kinds(tables["rules"], includes)
    assert void == {"_sep", "___sep_plus_9"} and item == {"_stmt", "_top"}
    kinds = {plan[0] for plan in parser._plans(tables["rules"])}
    assert parser._SPLICE not in kinds and {parser._LIST_ADD, parser._LIST_NEW, parser._BUILD1} <= kinds


def test_the_children_builder_is_lark_s_child_filter():
    # pick, splice (a list value) and the None placeholders of missing [optional] items, in order
    values = ["x", "a", ["b", "c"], "d"]
    build = parser._builder_of([("nones", 1), ("pick", 1), ("splice", 2), ("nones", 2), ("pick", 3)], 4,
                               as_list=True)
    assert build(values) == [None, "a", "b", "c", None, None, "d"]
    assert parser._builder_of([("pick", 0), ("pick", 2)], 3, as_list=False)(["p", "q", "r"]) == ("p", "r")
    assert parser._builder_of([("pick", 1)], 2, as_list=True)(["p", "q"]) == ["q"]
    assert parser._builder_of([], 2, as_list=True)(["p", "q"]) == []
