"""Syntax highlighting for .res files with Pygments (registered as the `resdsl` lexer).

Reads only token shapes, no grammar: keywords, the structural words
(residual, dense, parallel, group, branch, shortcut), operation names from
`resdsl.ops.OPS` (so new ops are highlighted without touching this file),
builtins, labels (`conv1:`, `layer{s + 1}:`), numbers, strings, comments.

    pygmentize -l resdsl examples/resnet.res
"""
from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

from .evaluate import BUILTINS
from .ops import ALIASES, OPS

KEYWORDS = ("import", "block", "network", "input", "output", "from", "for", "in", "if", "else", "and", "or", "not",
            "assert", "where")
CONSTANTS = ("true", "false", "none")
STRUCTURAL = ("residual", "dense", "parallel", "group", "branch", "shortcut", "split")
OP_NAMES = tuple(sorted((set(OPS) | set(ALIASES)) - {"input"}))


class ResdslLexer(RegexLexer):
    """Pygments lexer for the resdsl network description language."""

    name = "resdsl"
    aliases = ["resdsl", "res"]
    filenames = ["*.res"]
    mimetypes = ["text/x-resdsl"]

    tokens = {
        "root": [
            (r"[ \t\f]+", Whitespace),
            (r"\r?\n", Whitespace),
            (r"\\\r?\n", Text),
            (r"#.*$", Comment.Single),
            (r'"(?:[^"\\\n]|\\.)*"', String.Double),
            (r"'(?:[^'\\\n]|\\.)*'", String.Single),
            # labels: `conv1:`, `{i}:`, `layer{s + 1}:`, `conv.0.0:` (not `a: b` inside a dict, which has a space
            # or digit key)
            # (one character per repetition, so a long name that is not a label fails fast)
            (r"((?:[A-Za-z_]|\{[^{}\n]*\})(?:\w|\{[^{}\n]*\})*(?:\.(?:\w|\{[^{}\n]*\})+)*)(:)(?![:=])",
             bygroups(Name.Label, Punctuation)),
            (r"(block|network)(\s+)([A-Za-z_]\w*)", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(STRUCTURAL, suffix=r"\b"), Keyword.Reserved),
            (words(OP_NAMES, suffix=r"\b"), Name.Builtin),
            (words(tuple(sorted(BUILTINS)) + ("in_channels", "in_shape"), suffix=r"\b"), Name.Builtin.Pseudo),
            (r"(\d[\d_]*\.[\d_]*|\.\d[\d_]*)([eE][-+]?\d[\d_]*)?|\d[\d_]*[eE][-+]?\d[\d_]*", Number.Float),
            (r"\d[\d_]*", Number.Integer),
            (r"->|\*\*|//|==|!=|<=|>=|[-+*/%<>=]", Operator),
            (r"[()\[\]{},;:.]", Punctuation),
            (r"[A-Za-z_]\w*", Name),
            (r".", Text),
        ],
    }
