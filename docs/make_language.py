"""Fill the operation table of docs/language.md from resdsl.ops.OPS (between the ops:begin/end markers).

    .venv/bin/python docs/make_language.py          # rewrite the table
    .venv/bin/python docs/make_language.py --check  # exit 1 if it is out of date
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resdsl import ops  # noqa: E402
from resdsl.evaluate import show  # noqa: E402

TARGET = ROOT / "docs" / "language.md"
BEGIN, END = "<!-- ops:begin -->", "<!-- ops:end -->"


def _arg(p: ops.Param) -> str:
    if p.kind == "tensors":
        return "t..."
    text = p.name if p.default is ops.REQUIRED else f"{p.name}={show(p.default)}"
    if p.choices:
        text += " (" + " \\| ".join(show(c) for c in p.choices) + ")"
    return text if p.positional else f"*kw* {text}"


def table() -> str:
    rows = ["| op | arguments | kind | what it does |", "|---|---|---|---|"]
    for name, spec in ops.OPS.items():
        if not spec.user or name == "input":
            continue
        args = ", ".join(_arg(p) for p in spec.params) or "—"
        rows.append(f"| `{name}` | {args} | {spec.family.title} | {spec.doc} |")
    aliases = ", ".join(f"`{a}` = `{t}`" for a, t in sorted(ops.ALIASES.items()))
    if aliases:
        rows += ["", f"Aliases: {aliases}."]
    return "\n".join(rows)


def page() -> str:
    text = TARGET.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    assert pattern.search(text), "docs/language.md lost its ops markers"
    return pattern.sub(lambda m: f"{BEGIN}\n{table()}\n{END}", text)


def main() -> int:
    new = page()
    if "--check" in sys.argv:
        if TARGET.read_text() != new:
            print("docs/language.md's operation table is out of date: run .venv/bin/python docs/make_language.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(new)
    print(f"wrote the operation table of {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
