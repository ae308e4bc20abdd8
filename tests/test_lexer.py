"""Editor support: the Pygments lexer (entry point `resdsl`) and the VS Code TextMate grammar."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String, Token

from resdsl.evaluate import BUILTINS
from resdsl.lexer import ResdslLexer
from resdsl.ops import OPS

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
EXAMPLES = sorted((ROOT / "examples").glob("*.res"))

SAMPLE = '''import "std:blocks"   # library
block unit(c, s=1) {
    layer{s + 1}: residual(shortcut="project", scale=0.5) {
        conv1: conv(c, kernel_size=3, stride=s)
        relu
    } shortcut {
        avgpool(2)
    }
}
network n() {
    input x: [3, 224, 224]
    for i in range(2) { {i}: unit(64 * 2 ** i) -> t }
    out = 'x' if not true else none
    output y
}
'''


def typed(text: str) -> list[tuple[object, str]]:
    return [(t, v) for t, v in ResdslLexer().get_tokens(text) if v.strip()]


def test_entry_point_registers_the_lexer():
    assert isinstance(get_lexer_by_name("resdsl"), ResdslLexer)
    assert isinstance(get_lexer_for_filename("model.res"), ResdslLexer)


def test_token_classes():
    toks: dict = {}
    for t, v in typed(SAMPLE):
        toks.setdefault(v, t)  # the first occurrence of each text
    assert toks["import"] is Keyword and toks["for"] is Keyword and toks["not"] is Keyword
    assert toks["block"] is Keyword.Declaration and toks["unit"] is Name.Function
    assert toks["residual"] is Keyword.Reserved and toks["shortcut"] is Keyword.Reserved
    assert toks["conv"] is Name.Builtin and toks["relu"] is Name.Builtin and toks["avgpool"] is Name.Builtin
    assert toks["range"] is Name.Builtin.Pseudo
    assert toks["layer{s + 1}"] is Name.Label and toks["conv1"] is Name.Label and toks["{i}"] is Name.Label
    assert toks["x"] is Name.Label  # input x:
    assert toks["0.5"] is Number.Float and toks["224"] is Number.Integer
    assert toks['"project"'] is String.Double and toks["'x'"] is String.Single
    assert toks["# library"] is Comment.Single
    assert toks["**"] is Operator and toks["->"] is Operator
    assert toks["true"] is Keyword.Constant and toks["none"] is Keyword.Constant


def test_every_op_is_highlighted_as_an_op():
    for name in OPS:
        if name == "input":
            continue
        assert typed(f"{name}()")[0] == (Name.Builtin, name)
    for name in BUILTINS:
        assert typed(f"y = {name}(1)")[2] == (Name.Builtin.Pseudo, name)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_lex_without_errors_and_round_trip(path):
    text = path.read_text()
    toks = list(ResdslLexer().get_tokens(text))
    assert not [v for t, v in toks if t in Error]
    assert "".join(v for _, v in toks) == text if text.endswith("\n") else text + "\n"


def test_vscode_extension_files():
    pkg = json.loads((VSCODE / "package.json").read_text())
    lang = pkg["contributes"]["languages"][0]
    assert lang["extensions"] == [".res"]
    assert (VSCODE / lang["configuration"]).is_file()
    json.loads((VSCODE / lang["configuration"]).read_text())
    gram = pkg["contributes"]["grammars"][0]
    grammar = json.loads((VSCODE / gram["path"]).read_text())
    assert grammar["scopeName"] == gram["scopeName"] == "source.resdsl"


def _rules(node):
    if isinstance(node, dict):
        if "match" in node:
            yield node
        for v in node.values():
            yield from _rules(v)
    elif isinstance(node, list):
        for v in node:
            yield from _rules(v)


def test_textmate_regexes_compile_and_match():
    grammar = json.loads((VSCODE / "syntaxes" / "resdsl.tmLanguage.json").read_text())
    rules = list(_rules(grammar))
    assert len(rules) >= 10
    for r in rules:
        re.compile(r["match"])  # Oniguruma syntax here is the Python-compatible subset
    # includes point at existing repository entries
    for inc in grammar["patterns"]:
        assert inc["include"][1:] in grammar["repository"]

    def scope_of(word: str, line: str) -> str:
        """The scope the first matching top-level rule gives `word` (TextMate tries patterns in order)."""
        pos = line.index(word)
        best = None
        for inc in grammar["patterns"]:
            for r in _rules(grammar["repository"][inc["include"][1:]]):
                m = re.compile(r["match"]).search(line, 0)
                while m and m.end() <= pos:
                    m = re.compile(r["match"]).search(line, m.end())
                if m and m.start() <= pos < m.end() and (best is None or m.start() < best[0]):
                    name = r.get("name") or next(c["name"] for c in r["captures"].values())
                    best = (m.start(), name)
        return best[1]

    assert scope_of("conv", "    conv(64, 3)") == "support.function.op.resdsl"
    assert scope_of("residual", "    residual {") == "keyword.other.structural.resdsl"
    assert scope_of("# c", "    relu  # c") == "comment.line.number-sign.resdsl"
    assert scope_of("for", "    for i in range(3) {") == "keyword.control.resdsl"
    assert scope_of("1.5", "    y = 1.5") == "constant.numeric.float.resdsl"
    assert scope_of("conv.0.0", "    conv.0.0: conv(8, 1)") == "entity.name.label.resdsl"
    assert scope_of("assert", "    assert params <= 30_000_000") == "keyword.control.resdsl"
    assert scope_of("30_000_000", "    assert params <= 30_000_000") == "constant.numeric.integer.resdsl"


def test_new_statements_are_highlighted():
    toks = typed("    convs.{i}: conv(8, 1) -> skip{i}\n    assert params <= 30_000_000, 'big'\n")
    assert toks[:2] == [(Name.Label, "convs.{i}"), (Token.Punctuation, ":")]
    assert (Keyword, "assert") in toks and (Number.Integer, "30_000_000") in toks


def test_textmate_grammar_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "editors" / "make_grammar.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
