"""Write docs/errors.md: every diagnostic code with an example .res file and its exact rendered output.

    .venv/bin/python docs/make_errors.py          # rewrite docs/errors.md
    .venv/bin/python docs/make_errors.py --check  # exit 1 if docs/errors.md is out of date

The examples are run through resdsl itself, so the page always shows what
users really see; tests/test_diagnostics.py checks that the page is current
and that every code in resdsl.diagnostics.CODES has an example here.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402
from resdsl.diagnostics import CODES  # noqa: E402


@dataclass(frozen=True)
class Example:
    code: str
    explain: str  # what the error means and how to fix it (markdown)
    source: str  # the main file, main.res
    files: dict[str, str] = field(default_factory=dict)  # other files beside it (imports)
    params: dict = field(default_factory=dict)  # network parameter overrides (--set)
    network: str | None = None  # --network
    render: str | None = None  # a render level to draw after loading (E050)


NET = "network tiny() {{\n    input x: [3, 32, 32]\n{body}\n}}\n"


def net(body: str) -> str:
    return NET.format(body="\n".join("    " + ln if ln else "" for ln in body.strip("\n").split("\n")))


EXAMPLES: list[Example] = [
    Example("E001", "The file does not follow the grammar. The message lists what could come next; the caret is "
            "on the first token that cannot.", net("conv(64, kernel_size=3\nrelu")),
    Example("E002", "A file could not be read: it does not exist, is not UTF-8 text, is a directory, or is not a "
            ".res file. Imports only ever read `.res` files.", 'import "/etc/passwd"\n' + net("relu")),
    Example("E003", "Two files import each other (directly or through others). Move what both need into a third "
            "file.", 'import "b.res"\n' + net("relu"), files={"b.res": 'import "main.res"\n'}),
    Example("E004", "A string uses an escape other than `\\\\`, `\\\"`, `\\'`, `\\n` or `\\t`.",
            net('conv(8, 3, init="he\\k")')),
    Example("E010", "A name is used before it is given a value, or is misspelt.",
            net("widht = 64\nconv(width, 3)")),
    Example("E011", "A block, network, input or output is defined twice.",
            "block unit() {\n    relu\n}\n\nblock unit() {\n    gelu\n}\n" + net("unit()")),
    Example("E012", "A layer statement names no operation or block. `resdsl ops` lists the operations.",
            net("conv(16, 3)\nbatchnrom()")),
    Example("E013", "A call has an argument that the layer or block does not take, misses a required one, or has "
            "too many positional arguments.", net("conv(16, kernel=3)")),
    Example("E014", "An argument has the right name but a value of the wrong kind or out of range.",
            net("conv(16, 3, padding=\"full\")")),
    Example("E015", "An expression combines values of the wrong types.", net('c = 16 + "wide"\nconv(c, 3)')),
    Example("E016", "A block calls itself (directly or through other blocks) without stopping: the calls nest "
            "deeper than `max_call_depth` (100). A recursive block needs an `if` that ends the recursion, on a "
            "parameter that shrinks with every call.", "block stage(n) {\n    conv(16, 3, padding=1)\n    stage(n - 1)\n}\n" + net("stage(3)")),
    Example("E017", "The file has no network, several networks and no `--network`, or not the one asked for.",
            "block unit() {\n    relu\n}\n"),
    Example("E018", "`--set NAME=VALUE` (or a keyword of `resdsl.load`) names a parameter the network does not "
            "have, or a parameter without a default is not set.",
            "network net(depth = 18) {\n    input x: [3, 32, 32]\n    relu\n}\n", params={"dpeth": 50}),
    Example("E019", "A label is not a plain name after interpolation; labels become module names, so names that "
            "`torch.nn.Module` already uses (`training`, `forward`, `state_dict`...), Python keywords and `self` are "
            "refused too (also when a layer is named after its block).",
            net('for i in range(2) {\n    {"block " + str(i)}: conv(8, 3)\n}')),
    Example("E020", "Two layers in the same scope have the same label, so their modules would share a name.",
            net("conv1: conv(16, 3)\nconv1: conv(16, 3)")),
    Example("E021", "A statement is in a place where it means nothing: `input` inside a block, `branch` outside "
            "`parallel`, a body on an ordinary layer...",
            "block unit() {\n    input y: [3, 8, 8]\n    relu\n}\n" + net("unit()")),
    Example("E030", "The two sides of a residual connection have different shapes. Use a projection "
            "(`shortcut=\"project\"`), zero padding (`shortcut=\"zeropad\"`) or a custom `shortcut { }`.",
            net("conv(64, 3, padding=1)\nresidual {\n    conv(128, 3, stride=2, padding=1)\n    batchnorm()\n}")),
    Example("E031", "Tensors joined by `concat` (or `dense`, or `parallel`) must agree on every dimension but "
            "channels; `crop=true` center-crops them to the smallest.",
            net("conv(16, 3, padding=1) -> a\nconv(16, 3)\nconcat(a)")),
    Example("E032", "Tensors added with `add` (or `parallel(merge=\"add\")`) must have the same shape.",
            net("conv(16, 3, padding=1) -> a\nconv(32, 3, padding=1)\nadd(a)")),
    Example("E033", "An operation got an input of the wrong rank, e.g. a convolution after `flatten`.",
            net("flatten\nconv(16, 3)")),
    Example("E034", "A kernel (with its dilation and padding) is larger than the input it slides over.",
            net("maxpool(8)\nmaxpool(8)")),
    Example("E035", "A grouped convolution or group norm needs channel counts divisible by the number of groups.",
            net("conv(30, 3, groups=4)")),
    Example("E036", "A size came out zero or negative (an input shape, an upsampling size...).",
            "network tiny() {\n    input x: [3, 0, 32]\n    relu\n}\n"),
    Example("E037", "A network needs at least one `input`, and its body must leave a tensor to output.",
            "network tiny() {\n    k = 3\n}\n"),
    Example("E040", "A resource limit was hit. Limits keep `check` fast and small whatever a file says; raise "
            "one with `--limit NAME=N` (names: " + ", ".join(f"`{n}`" for n in resdsl.Limits.names()) + ").",
            net("for i in range(1000000) {\n    for j in range(1000000) {\n    }\n}")),
    Example("E041", "Arithmetic failed while building the network: division by zero, overflow, square root of a "
            "negative number.", net("k = 64 // (2 - 2)\nconv(k, 3)")),
    Example("E042", "An `assert` in the file is false. The message is the assert's own, followed by the values of "
            "the compared expressions. An assert that names `params`, `buffers` or `macs` is checked once the "
            "network is built.", net("for w in [16, 32] {\n    conv(w, 3, padding=1)\n}\n"
                                      "assert params <= 5_000, \"keep the stem under 5k parameters\"")),
]


def run(ex: Example) -> str:
    """Run one example in a scratch directory; return the rendered diagnostics exactly as the CLI prints them."""
    with tempfile.TemporaryDirectory() as tmp:
        old = os.getcwd()
        os.chdir(tmp)
        try:
            Path("main.res").write_text(ex.source)
            for name, text in ex.files.items():
                Path(name).write_text(text)
            try:
                net = resdsl.load("main.res", network=ex.network, **ex.params)
                if ex.render:
                    net.render(None, level=ex.render)
            except resdsl.ResdslError as e:
                out = e.render()
            else:
                raise AssertionError(f"example for {ex.code} did not fail")
        finally:
            os.chdir(old)
        real = os.path.realpath(tmp)
        return out.replace(real + os.sep, "").replace(tmp + os.sep, "")


def page() -> str:
    missing = set(CODES) - {e.code for e in EXAMPLES}
    assert not missing, f"codes without an example: {sorted(missing)}"
    out = ["# Error reference", "",
           "<!-- generated by docs/make_errors.py; edit that file, then run it -->", "",
           "Every problem resdsl finds in a `.res` file is reported with a stable code, the place (`file:line:column`),",
           "the line with a caret under the exact span, notes pointing at related places (a block's definition and",
           "its call site, both operands of a failing add, the first of two definitions) and, where it can, a hint.",
           "Several independent errors are reported in one run. `--json` gives the same facts for machines.", "",
           "| code | meaning |", "|---|---|"]
    out += [f"| [{c}](#{c.lower()}) | {t} |" for c, t in CODES.items()]
    for ex in EXAMPLES:
        out += ["", f"## {ex.code}", "", f"**{CODES[ex.code]}.** {ex.explain}", "", "```res", ex.source.rstrip("\n"), "```"]
        for name, text in ex.files.items():
            out += ["", f"with `{name}`:", "", "```res", text.rstrip("\n"), "```"]
        how = "resdsl check main.res" + "".join(f" --set {k}={v}" for k, v in ex.params.items())
        if ex.render:
            how = f"resdsl render main.res --level {ex.render}"
        out += ["", f"`{how}` prints:", "", "```text", run(ex), "```"]
    return "\n".join(out) + "\n"


def main() -> int:
    target = ROOT / "docs" / "errors.md"
    text = page()
    if "--check" in sys.argv:
        if not target.exists() or target.read_text() != text:
            print("docs/errors.md is out of date: run .venv/bin/python docs/make_errors.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target} ({len(EXAMPLES)} examples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
