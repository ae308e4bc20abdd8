"""Write editors/vscode/syntaxes/resdsl.tmLanguage.json from resdsl's own word lists.

    .venv/bin/python editors/make_grammar.py          # rewrite the grammar
    .venv/bin/python editors/make_grammar.py --check  # exit 1 if it is out of date

The word lists (keywords, structural words, op names, builtins) are those of
the Pygments lexer resdsl/lexer.py, which takes op names from resdsl.ops.OPS.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resdsl.evaluate import BUILTINS  # noqa: E402
from resdsl.lexer import CONSTANTS, KEYWORDS, OP_NAMES, STRUCTURAL  # noqa: E402

TARGET = ROOT / "editors" / "vscode" / "syntaxes" / "resdsl.tmLanguage.json"


def alternation(ws) -> str:
    return "\\b(" + "|".join(ws) + ")\\b"


def grammar() -> dict:
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "resdsl",
        "scopeName": "source.resdsl",
        "fileTypes": ["res"],
        "patterns": [{"include": f"#{k}"} for k in
                     ("comment", "string", "label", "declaration", "keyword", "structural", "op", "builtin",
                      "number", "operator")],
        "repository": {
            "comment": {"name": "comment.line.number-sign.resdsl", "match": "#.*$"},
            "string": {"patterns": [
                {"name": "string.quoted.double.resdsl", "match": '"(?:[^"\\\\\\n]|\\\\.)*"'},
                {"name": "string.quoted.single.resdsl", "match": "'(?:[^'\\\\\\n]|\\\\.)*'"}]},
            "label": {"match": "((?:[A-Za-z_]|\\{[^{}\\n]*\\})(?:\\w|\\{[^{}\\n]*\\})*"
                               "(?:\\.(?:\\w|\\{[^{}\\n]*\\})+)*)(:)(?![:=])",
                      "captures": {"1": {"name": "entity.name.label.resdsl"},
                                   "2": {"name": "punctuation.separator.label.resdsl"}}},
            "declaration": {"match": "\\b(block|network)\\s+([A-Za-z_]\\w*)",
                            "captures": {"1": {"name": "storage.type.resdsl"},
                                         "2": {"name": "entity.name.function.resdsl"}}},
            "keyword": {"patterns": [
                {"name": "keyword.control.resdsl", "match": alternation(KEYWORDS)},
                {"name": "constant.language.resdsl", "match": alternation(CONSTANTS)}]},
            "structural": {"name": "keyword.other.structural.resdsl", "match": alternation(STRUCTURAL)},
            "op": {"name": "support.function.op.resdsl", "match": alternation(OP_NAMES)},
            "builtin": {"name": "support.function.builtin.resdsl",
                        "match": alternation(sorted(BUILTINS) + ["in_channels", "in_shape"])},
            "number": {"patterns": [
                {"name": "constant.numeric.float.resdsl",
                 "match": "\\b(?:\\d[\\d_]*\\.[\\d_]*|\\.\\d[\\d_]*)(?:[eE][-+]?\\d[\\d_]*)?\\b"
                          "|\\b\\d[\\d_]*[eE][-+]?\\d[\\d_]*\\b"},
                {"name": "constant.numeric.integer.resdsl", "match": "\\b\\d[\\d_]*\\b"}]},
            "operator": {"name": "keyword.operator.resdsl", "match": "->|\\*\\*|//|==|!=|<=|>=|[-+*/%<>=]"},
        },
    }


def main() -> int:
    text = json.dumps(grammar(), indent=2) + "\n"
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print("the TextMate grammar is out of date: run .venv/bin/python editors/make_grammar.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
