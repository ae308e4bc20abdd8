"""Hypothesis strategies that write random .res programs, for tests/test_fuzz.py and bench/fuzz.py.

The generator follows the grammar (blocks, networks, layers with labels,
residual/dense/parallel/group nesting, for/if, bindings, imports) and mixes
in the mistakes people and scripts make: wrong shapes, unknown names, bad
argument values, huge numbers, odd labels, misplaced statements.  It also
mutates the bytes of the example files.  `check_one` states the property:
an input either elaborates or raises `ResdslError` whose diagnostics all
point at a real place.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hypothesis import strategies as st

import resdsl
from resdsl.diagnostics import CODES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.res"))
# Read once: other people edit examples while a long run goes on, and hypothesis
# needs the same draws to give the same data.
EXAMPLE_BYTES = {p.name: p.read_bytes() for p in EXAMPLES}

# ------------------------------------------------------------------ leaves

SMALL = st.sampled_from([1, 2, 3, 4, 8, 16])
NUMBER = st.one_of(
    SMALL, SMALL, SMALL,
    st.integers(-3, 70),
    st.sampled_from(["0", "-1", "10**30", "10**10**10", "2**62", "1e308*10", "1/0", "0.5", "7//0", "1.5",
                     "99999999999999999999999999999", "in_channels", "in_channels*2", "undefined_name",
                     "len([1, 2])", "max(2, 3)", "sqrt(-1)", "\"text\"", "true", "none", "[2, 2]",
                     "H", "H // 8", "W - H"]),  # a body that reads a named size
).map(str)

LAYERS = [
    "conv({c}, {k})", "conv({c}, kernel_size={k}, stride={s}, padding={p})", "conv({c}, 3, padding=\"same\")",
    "conv({c}, {k}, groups={g})", "conv1d({c}, {k})", "conv3d({c}, {k})", "conv_transpose({c}, {k}, stride={s})",
    "batchnorm()", "batchnorm(eps=1e-3)", "groupnorm({g})", "layernorm()", "instancenorm()",
    "relu", "relu()", "gelu", "silu", "leaky_relu(0.1)", "sigmoid", "tanh", "elu(alpha=1.0)", "softmax(0)",
    "maxpool({k})", "maxpool(kernel_size={k}, stride={s}, padding={p})", "avgpool({k})",
    "adaptive_avgpool(1)", "global_avgpool", "global_maxpool", "flatten", "linear({c})", "linear({c}, bias=false)",
    "dropout(0.1)", "drop_path(0.2)", "identity", "upsample(scale_factor=2)", "crop({k})", "scale(0.5)",
    "scalar_scale(0.0)", "scalar_bias(0.0)", "zeropad({c}, {s})",
    # mistakes
    "batchnrom()", "conv()", "conv({c}, {k}, strides=2)", "conv(\"x\", {k})", "relu(1, 2)", "linear(-{c})",
    "maxpool(0)", "dropout(p=2)", "conv({c}, {k}, padding=\"full\")", "nosuchop", "conv({c}, [1, 2, 3])",
]
LABELS = st.one_of(
    st.just(""), st.just(""), st.just(""),
    st.sampled_from(["conv1: ", "bn: ", "a_b: ", "{i}: ", "layer{i + 1}: ", "x{\"y\"}: ", "0: ", "{1.5}: ",
                     "{none}: ", "{\"a b\"}: ", "{in_channels}: ", "dup: ", "dup: "]),
)
NAMES = st.sampled_from(["t", "u", "skip", "e1", "x"])


@st.composite
def layer(draw) -> str:
    text = draw(st.sampled_from(LAYERS)).format(c=draw(NUMBER), k=draw(st.sampled_from(["1", "2", "3", "7", "0", "100"])),
                                               s=draw(st.sampled_from(["1", "2", "3", "0"])), p=draw(st.sampled_from(["0", "1", "2"])),
                                               g=draw(st.sampled_from(["1", "2", "4", "3"])))
    return draw(LABELS) + text


@st.composite
def body(draw, depth: int, blocks: tuple[str, ...], in_loop: bool = False) -> list[str]:
    """A list of statement lines (already indented relative to the body)."""
    n = draw(st.integers(1, 5))
    lines: list[str] = []
    for _ in range(n):
        kinds = ["layer", "layer", "layer", "assign", "bind", "from", "merge"]
        if blocks:
            kinds += ["call", "call"]
        if depth > 0:
            kinds += ["residual", "residual", "dense", "parallel", "group", "for", "if"]
        kind = draw(st.sampled_from(kinds))
        if kind == "layer":
            lines.append(draw(layer()))
        elif kind == "assign":
            lines.append(f"{draw(st.sampled_from(['k', 'c', 'n']))} = {draw(NUMBER)}")
        elif kind == "bind":
            lines.append(f"{draw(layer())} -> {draw(NAMES)}" if draw(st.booleans()) else f"-> {draw(NAMES)}")
        elif kind == "from":
            lines.append(f"from {draw(NAMES)}")
        elif kind == "merge":
            op = draw(st.sampled_from(["add", "concat"]))
            extra = ", crop=true" if op == "concat" and draw(st.booleans()) else ""
            lines.append(f"{op}({draw(NAMES)}{extra})")
        elif kind == "call":
            name = draw(st.sampled_from(blocks))
            args = draw(st.sampled_from(["", "{c}", "{c}, {c}", "planes={c}", "nope={c}", "{c}, {c}, {c}, {c}"]))
            lines.append(draw(LABELS) + f"{name}({args.format(c=draw(NUMBER))})")
        else:
            inner = ["    " + ln for ln in draw(body(depth - 1, blocks, in_loop or kind == "for"))]
            if kind == "residual":
                opts = draw(st.lists(st.sampled_from([
                    'shortcut="identity"', 'shortcut="project"', 'shortcut="zeropad"', 'shortcut="avgproject"',
                    'shortcut="bogus"', "scale=0.5", 'scale="learnable"', "scale_init=0.1", "drop_path=0.1",
                    'post="relu"', "post=none", 'shortcut_norm="none"', 'shortcut_norm="groupnorm"',
                    "zero_init_last=true", 'shortcut_label="proj"', "unknown=1"]), max_size=3, unique=True))
                head = draw(LABELS) + "residual" + (f"({', '.join(opts)})" if opts else "")
                lines += [head + " {", *inner]
                if draw(st.integers(0, 4)) == 0:
                    sc = ["    " + ln for ln in draw(body(0, blocks))]
                    lines += ["} shortcut {", *sc]
                lines.append("}")
            elif kind == "dense":
                lines += [draw(LABELS) + "dense" + draw(st.sampled_from(["", "(crop=true)"])) + " {", *inner, "}"]
            elif kind == "parallel":
                merge = draw(st.sampled_from(['', '(merge="add")', '(merge="concat")', '(merge="max")']))
                lines.append(draw(LABELS) + "parallel" + merge + " {")
                for _ in range(draw(st.integers(1, 3))):
                    br = ["        " + ln for ln in draw(body(depth - 1, blocks))]
                    lines += ["    branch {", *br, "    }"]
                if draw(st.integers(0, 5)) == 0:
                    lines.append("    relu")  # not a branch: E021
                lines.append("}")
            elif kind == "group":
                lines += [draw(LABELS) + "group {", *inner, "}"]
            elif kind == "for":
                it = draw(st.sampled_from(["i in range({n})", "i, v in enumerate([1, 2])", "i in [1, 2]",
                                           "i in range(10**9)", "i in 3", "i, v in range(2)"]))
                lines += [f"for {it.format(n=draw(st.integers(0, 3)))} {{", *inner, "}"]
            else:
                cond = draw(st.sampled_from(["true", "false", "in_channels > 4", "1 == 1.0", "x", "k > 2", "H > 64"]))
                lines += [f"if {cond} {{", *inner]
                if draw(st.booleans()):
                    lines += ["} else {", *["    " + ln for ln in draw(body(depth - 1, blocks))]]
                lines.append("}")
    if draw(st.integers(0, 40)) == 0:  # rarely: a line that breaks the syntax (each body has this chance)
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(
            ["output y", "input z: [3, 8, 8]", "return", "conv(", ")", "}", "{", "= 3", "# a comment", ";;",
             "x = [1, 2,", "\"unterminated", "a = 'c\\q'", "\u00e9t\u00e9 = 1", "\t relu", "k = 1 if true"])))
    return lines


# Named sizes (`input x: [3, H, W] where ...`, docs/sizes.md): good forms and what people get wrong.
WHERE = st.sampled_from([
    "H % 8 == 0", "H % 16 == 12", "W == H", "W == 2 * H - 1", "H >= 16", "H <= 64", "H < 1024", "(2 * H + 1) % 4 == 3",
    "0 == H % 4", "H % 8 == 0 and W == H", "H >= 10**17", "H % 10**18 == 3", "H % 4 == 7", "H % 4 == -1", "H % 0 == 0",
    "H * W == 196", "H // 2 == 7", "H != 3", "H == 0", "H < 0", "W == -H + 9", "W == H, H == W + 1", "k == 1",
    "true", "H == true", "H >= 1.5", "H % 65537 == 1, H % 65536 == 0", "C == 3", "H == H", "where == 1", "N > 2"])
NAMED_SHAPES = st.sampled_from(["[3, H, W]", "[3, H, W]", "[3, H, H]", "[1, L]", "[2, D, H, W]", "[3, 2 * H, W]",
                                "[C, H, W]", "[3, H, 8]", "[3, size, W]", "[3, sise, W]", "[3, H - 300, W]", "[H]"])


@st.composite
def named_input(draw) -> str:
    """`input x: SHAPE where C1, C2`: named sizes with constraints (or none)."""
    text = draw(NAMED_SHAPES)
    cs = draw(st.lists(WHERE, max_size=3))
    return text + (" where " + ", ".join(cs) if cs else "")


INPUT_SHAPES = st.one_of(
    st.sampled_from(["[3, 8, 8]", "[3, 8, 8]", "[4, 6, 6]", "[2, 16]", "[8]", "[1, 9, 9, 9]",
                     "[3, 100000, 100000]", "[0, 4]", "[]", "3", "[3, -1]", "[\"a\"]", "int[N]", "[3, 8, 8] where 1 == 1"]),
    named_input())


@st.composite
def program(draw) -> str:
    """A whole .res file: imports, constants, blocks, one or more networks."""
    out: list[str] = []
    if draw(st.integers(0, 8)) == 0:
        out.append(draw(st.sampled_from(['import "/etc/passwd"', 'import "missing.res"', 'import "std:nope"',
                                         'import "../x.res"', 'import "/dev/zero"', 'import "std:../../x"'])))
    if draw(st.booleans()):
        out.append(f"k = {draw(NUMBER)}")
    blocks: list[str] = []
    for i in range(draw(st.integers(0, 3))):
        name = f"blk{i}"
        params = draw(st.sampled_from(["", "planes", "planes, stride = 1", "planes = 8, s = 2"]))
        inner = draw(body(2, tuple(blocks + ([name] if draw(st.integers(0, 9)) == 0 else []))))
        out += [f"block {name}({params}) {{", *["    " + ln for ln in inner], "}"]
        blocks.append(name)
    n_nets = draw(st.sampled_from([1, 1, 1, 1, 1, 1, 0, 2]))
    for j in range(n_nets):
        params = draw(st.sampled_from(["", "width = 8", "depth"]))
        lines = [f"input x: {draw(INPUT_SHAPES)}"] if draw(st.integers(0, 15)) else []
        if lines and draw(st.integers(0, 5)) == 0:  # a second input: sizes shared by name, or tied
            lines.append(f"input x2: {draw(st.sampled_from(['[3, H, W]', '[3, H2, W] where H2 == 2 * H', '[3, 8, 8]']))}")
        lines += draw(body(3, tuple(blocks)))
        if draw(st.booleans()):
            lines.append("output " + draw(st.sampled_from(["y", "logits", "x", "t, u"])))
        out += [f"network net{j}({params}) {{", *["    " + ln for ln in lines], "}"]
    sep = draw(st.sampled_from(["\n", "\n", "\r\n", "\n\n"]))
    return sep.join(out) + sep


# ------------------------------------------------------------------ mutation

@st.composite
def mutant(draw) -> tuple[str, bytes]:
    """An example file with a few random byte edits (delete, insert, replace, duplicate a slice)."""
    name = draw(st.sampled_from(sorted(EXAMPLE_BYTES)))
    data = bytearray(EXAMPLE_BYTES[name])
    tokens = [b"{", b"}", b"(", b")", b"[", b"]", b",", b":", b"=", b"->", b"\n", b"#", b'"', b"\\", b"0",
              b"99999", b"-", b"**", b"\xff", b"\xc3", b"\x00", b"residual", b"for", b"import", b"{i}",
              b"\xe2\x80\xae", b"\t", b"\r", b";"]
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            del data[pos: pos + draw(st.integers(1, 8))]
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from(tokens))
        elif op == 2:
            data[pos] = draw(st.integers(0, 255))
        else:
            end = min(len(data), pos + draw(st.integers(1, 40)))
            data[pos:pos] = data[pos:end]
    return name, bytes(data)


# ------------------------------------------------------------------ the property

def check_error(err: resdsl.ResdslError) -> None:
    """Every diagnostic has a registered code, a message and a real place in a file."""
    assert err.diagnostics
    for d in err.diagnostics:
        assert d.code in CODES
        assert d.message
        assert d.span.file and d.span.file != "<unknown>", d
        assert d.span.line >= 1 and d.span.col >= 1, d
        for note in d.notes:
            assert note.span.line >= 1 and note.span.col >= 1, (d, note)
    err.render()  # rendering never fails


def check_one(text: str, name: str = "<fuzz>", **params) -> "resdsl.Network | None":
    """Elaborate `text`; return the network, or None after checking the error is well formed.

    Any exception other than ResdslError propagates: that is a bug."""
    try:
        return resdsl.loads(text, name=name, **params)
    except resdsl.ResdslError as e:
        check_error(e)
        return None


def check_file(path: Path) -> "resdsl.Network | None":
    try:
        return resdsl.load(path)
    except resdsl.ResdslError as e:
        check_error(e)
        return None


def fuzz_examples(default: int) -> int:
    """How many examples a fuzz test tries: RESDSL_FUZZ_EXAMPLES scales every test up (make fuzz)."""
    return int(os.environ.get("RESDSL_FUZZ_EXAMPLES", default))


# ------------------------------------------------------------------ mostly valid programs

@st.composite
def valid_body(draw, depth: int, size: list[int], blocks: tuple[str, ...], labels: list[int] | None = None
               ) -> list[str]:
    """Statements that keep shapes consistent on a [C, H, W] tensor; `size` tracks H (= W).
    `labels` counts the labels given so far, so that no two are the same (loops label 0, 1, ...)."""
    labels = labels if labels is not None else [0]
    lines: list[str] = []
    for i in range(draw(st.integers(1, 4))):
        kinds = ["conv", "conv", "norm", "act", "pool"] + (["call"] if blocks else [])
        if depth > 0:
            kinds += ["residual", "residual", "dense", "parallel", "group", "for", "if", "skip"]
        kind = draw(st.sampled_from(kinds))
        c = draw(st.sampled_from([2, 3, 4, 6, 8]))
        lab = draw(st.sampled_from(["", "", f"l{labels[0]}: ", "{%d}: " % (100 + labels[0])]))
        labels[0] += bool(lab)
        if kind == "conv":
            k = draw(st.sampled_from([1, 3]))
            lines.append(lab + draw(st.sampled_from([
                f"conv({c}, kernel_size={k}, padding={k // 2})", f"conv({c}, {k}, padding=\"same\", bias=false)",
                f"conv({c}, 3, padding=2, dilation=2)", f"conv(in_channels, 1, groups=in_channels)",
                f"conv({c}, 1, init=\"zeros\")"])))
        elif kind == "norm":
            lines.append(lab + draw(st.sampled_from(["batchnorm()", "groupnorm(1)", "instancenorm(affine=true)",
                                                      "batchnorm(momentum=0.2)", "layernorm()"])))
        elif kind == "act":
            lines.append(draw(st.sampled_from(["relu", "gelu", "silu", "leaky_relu(0.2)", "tanh", "dropout(0.0)",
                                               "identity", "scale(0.5)", "scalar_scale(1.0)", "scalar_bias(0.0)"])))
        elif kind == "pool":
            if size[0] >= 4:
                op = draw(st.sampled_from(["maxpool(2)", "avgpool(2)", "maxpool(3, stride=2, padding=1)"]))
                lines.append(lab + op)
                size[0] = size[0] // 2 if op != "maxpool(3, stride=2, padding=1)" else (size[0] + 1) // 2
        elif kind == "call":
            lines.append(lab + f"{draw(st.sampled_from(blocks))}({c})")
        elif kind == "skip":
            op = draw(st.sampled_from(["add", "concat"]))
            lines += ["-> s0", f"conv({c if op == 'concat' else 'in_channels'}, 3, padding=1)", f"{op}(s0)"]
        elif kind == "residual":
            stride = 2 if size[0] >= 4 and draw(st.booleans()) else 1
            sc = draw(st.sampled_from(["project", "project", "avgproject", "zeropad"]))
            extra = draw(st.sampled_from(["", ", post=\"relu\"", ", scale=\"learnable\"", ", drop_path=0.1",
                                          ", scale=0.5", ", zero_init_last=true"]))
            inner = [f"conv({c}, 3, stride={stride}, padding=1, bias=false)", "batchnorm()", "relu"]
            sub = [size[0] // stride if stride == 1 else (size[0] + 1) // 2]
            inner += draw(valid_body(depth - 1, sub, blocks, labels)) if draw(st.booleans()) else []
            if sub[0] != (size[0] if stride == 1 else (size[0] + 1) // 2):
                inner = inner[:3]  # the nested body pooled: keep the branch simple
                sub = [size[0] if stride == 1 else (size[0] + 1) // 2]
            inner += ["conv(%d, 3, padding=1)" % draw(st.sampled_from([4, 8])), "batchnorm()"]
            lines += [lab + f"residual(shortcut=\"{sc}\"{extra}) {{", *["    " + x for x in inner], "}"]
            size[0] = sub[0]
        elif kind == "dense":
            lines += [lab + "dense {", f"    conv({c}, 3, padding=1)", "    relu", "}"]
        elif kind == "parallel":
            merge = draw(st.sampled_from(["concat", "add"]))
            a, b = (c, c) if merge == "add" else (c, draw(st.sampled_from([2, 5])))
            lines += [lab + f"parallel(merge=\"{merge}\") {{", "    branch {", f"        conv({a}, 1)", "    }",
                      "    branch {", f"        conv({b}, 3, padding=1)", "        relu", "    }", "}"]
        elif kind == "group":
            sub = [size[0]]
            lines += [lab + "group {", *["    " + x for x in draw(valid_body(depth - 1, sub, blocks, labels))], "}"]
            size[0] = sub[0]
        elif kind == "for":
            n = draw(st.integers(0, 3))
            lines += [f"for i in range({n}) {{", "    {i}: conv(%d, 3, padding=1)" % c, "    relu", "}"]
        else:
            lines += ["if in_channels > 4 {", "    conv(4, 1)", "} else {", "    conv(6, 1)", "}"]
    return lines


@st.composite
def valid_program(draw) -> str:
    blocks: list[str] = []
    out: list[str] = []
    for i in range(draw(st.integers(0, 2))):
        name = f"unit{i}"
        body_ = draw(valid_body(1, [64], tuple(blocks)))  # blocks must not pool: pretend the size is large
        body_ = [ln for ln in body_ if "pool" not in ln]
        out += [f"block {name}(planes, stride = 1) {{", "    conv(planes, 3, padding=1)",
                *["    " + ln for ln in body_], "}"]
        blocks.append(name)
    size = [draw(st.sampled_from([4, 8, 9, 16]))]
    c = draw(st.sampled_from([1, 3]))
    lines = [f"input x: [{c}, {size[0]}, {size[0]}]", *draw(valid_body(3, size, tuple(blocks)))]
    lines += draw(st.sampled_from([["global_avgpool", "fc: linear(10)"], ["flatten", "linear(5)"], []]))
    out += ["network fuzz(width = 8) {", *["    " + ln for ln in lines], "    output y", "}"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ valid programs over named sizes

NAMED_WHERE = st.sampled_from(["H % 4 == 0", "H % 8 == 4", "W == H", "W == H + 1", "W == 2 * H", "H >= 20",
                               "H <= 96", "H % 16 == 12, W == H", "(2 * H + 1) % 4 == 3", "H % 3 == 1"])
SIZE_OPS = ["conv({c}, 3)", "conv({c}, 3, padding=1)", "conv({c}, 3, stride=2, padding=1)", "conv({c}, 3, stride=2)",
            "conv({c}, [3, 1], padding=[1, 0])", "conv({c}, 3, padding=2, dilation=2)", "maxpool(2)",
            "avgpool(3, stride=2)", "maxpool(3, stride=2, ceil_mode=true)", "conv_transpose({c}, 2, stride=2)",
            "conv_transpose({c}, 3, stride=2, padding=1, output_padding=1)", "upsample(scale_factor=2)",
            "relu", "batchnorm()"]


@st.composite
def named_body(draw, chans: list[int], depth: int, rank: int, labels: list[int]) -> list[str]:
    """Layers that change the spatial sizes (the analysis decides where they fit), skips merged by a
    centre-cropped concat or an add; `chans` tracks the channel count."""
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["op", "op", "op", "skip", "skip"] if depth else ["op"]))
        if kind == "op":
            c = draw(st.sampled_from([2, 3, 4]))
            op = draw(st.sampled_from(SIZE_OPS))
            if rank != 2:
                op = op.replace("[3, 1]", "3").replace("[1, 0]", "1")
            lines.append(op.format(c=c))
            chans[0] = c if "{c}" in op else chans[0]
            continue
        name, before = f"s{labels[0]}", chans[0]
        labels[0] += 1
        # Mostly bodies that fit at some sizes: U-Net's down-and-up for a cropped concat, a stride-2
        # conv undone by an upsampling for an add (even sizes only); sometimes anything.
        c = draw(st.sampled_from([2, 4]))
        inner = draw(st.sampled_from([
            [f"conv({c}, 3)", "maxpool(2)", f"conv({c}, 3)", f"conv_transpose({c}, 2, stride=2)"],
            [f"conv({c}, 3)", f"conv({c}, 3, padding=1)"],
            [f"conv({c}, 3, stride=2, padding=1)", "upsample(scale_factor=2)"],
            [f"conv({c}, 3, padding=1)", "relu"], None]))
        if inner is None:
            inner = draw(named_body(chans, depth - 1, rank, labels))
            after = chans[0]
        else:
            after = _last_channels(inner, before)
        if rank != 2:
            inner = [ln.replace("[3, 1]", "3").replace("[1, 0]", "1") for ln in inner]
        if draw(st.booleans()):
            lines += [f"-> {name}", *inner, f"concat({name}, crop=true)"]
            chans[0] = after + before
        else:
            lines += [f"-> {name}", *inner, f"conv({before}, 1)", f"add({name})"]
            chans[0] = before
    return lines


def _last_channels(lines: list[str], default: int) -> int:
    """The channel count after `lines`: that of the last conv in them, else `default`."""
    import re
    for ln in reversed(lines):
        m = re.match(r"conv(?:_transpose)?\((\d+),", ln)
        if m:
            return int(m.group(1))
    return default


@st.composite
def named_program(draw) -> str:
    """A network over named sizes with `where` constraints, ties and crop skips; rarely a body that reads a size."""
    rank = draw(st.sampled_from([2, 2, 2, 1]))
    chans = [draw(st.sampled_from([1, 3]))]
    dims = "H, W" if rank == 2 else "H"
    cs = draw(st.lists(NAMED_WHERE, max_size=2, unique=True))
    cs = [c for c in cs if "W" not in c] if rank == 1 else cs
    lines = [f"input x: [{chans[0]}, {dims}]" + (" where " + ", ".join(cs) if cs else "")]
    if draw(st.integers(0, 7)) == 0:
        lines += ["if H > 40 {", "    maxpool(2)", "}"]
    lines += draw(named_body(chans, 2, rank, [0]))
    lines += draw(st.sampled_from([[], [], ["global_avgpool", "linear(3)"]]))
    return "\n".join(["network fuzz() {", *["    " + ln for ln in lines], "    output y", "}"]) + "\n"


def _concrete(net, d, X: int) -> dict:
    """The input shapes with analysed size `d` at X (its tied dims following), the others as built."""
    shapes = {k: list(v) for k, v in net.inputs.items()}
    shapes[d.input][d.dim] = X
    for i, k, c, e in d.tied:
        shapes[i][k] = c * X + e
    return {k: tuple(v) for k, v in shapes.items()}


def check_valid_sizes(src: str, net, rep, sizes=range(1, 41), runs: int = 3) -> None:
    """What `check` reports is true: a size is in the valid set exactly when the network elaborates
    there (the ordinary concrete path), and the module compiled once at the example size runs there
    with the shapes elaborating gives (for the first `runs` valid sizes up to 200 and one far beyond)."""
    import torch

    model = None
    for d in rep.dims:
        far = [v for v in d.valid.nearest(1000) if v is not None][:1]
        tried = 0
        for X in [*sizes, *far]:
            try:
                concrete = resdsl.loads(src, name="<fuzz>", input_shapes=_concrete(net, d, X))
            except resdsl.ResdslError:
                concrete = None
            if d.exact and not rep.joint:
                assert (X in d.valid) == (concrete is not None), (X, str(d.valid), d.symbol)
            if concrete is None or X not in d.valid or tried >= runs or (X > 200 and X not in far) \
                    or concrete.param_count != net.param_count or any("read by the network body" in n for n in rep.notes):
                continue
            tried += 1
            if model is None:
                torch.set_num_threads(1)
                model = net.to_torch(seed=0).eval()
                assert all(bool(torch.isfinite(p).all()) for p in model.parameters()), "a parameter is not finite"
            with torch.no_grad():
                ys = _outputs(model(*[torch.randn(1, *s) for s in concrete.inputs.values()]))
            assert [tuple(y.shape[1:]) for y in ys] == [tuple(s) for s in concrete.outputs.values()], X


# ------------------------------------------------------------------ hostile command lines

TINY = """network t(size = 8, width = 4) {
    input x: [3, size, size]
    conv(width, 3, padding=1)
    relu
    residual {
        conv(width, 3, padding=1)
    }
    global_avgpool
    linear(2)
    output y
}
"""
BAD = "network b() {\n    input x: [3, 8, 8]\n    conv(8, kernel_size=3, strid=2)\n}\n"
# What a file argument may be: relative to the workspace (see Workspace.cli) or absolute.
# Devices, a FIFO and links to them (zero.res -> /dev/zero, fifo.res) must be refused before anything reads them:
# an endless or blocking read would hang the fuzzer, which is the point of drawing them.
FILES = ["tiny.res", "tiny.res", "tiny.res", "bad.res", "missing.res", "adir", "/dev/null", "", "-",
         "\udcff.res", "/etc/passwd", "tiny.res/x.res", "/dev/zero", "/dev/urandom", "zero.res", "fifo.res",
         "loop.res"]
# Huge counts that are in range for the option's type: work must stay bounded (or be refused with a reason).
INTS = ["1", "2", "3", "2", "4", "0", "-1", "-5", "３", "٣", "²", "99999999999999999999", "1e3", "", " 2 ", "0x10",
        "nan", "1_000", "2147483647", "1000000", "9223372036854775807"]
FLOATS = ["0", "0.5", "-1", "1e999", "nan", "inf", "３.５", "", "1e-3"]
STRINGS = ["", "x", "-", "=", "a=b", "depth=18", "size=٥٠", "size=[", "x=３,8,8", "x=3,8,8", "x=3x8", "max_nodes=10",
           "max_nodes=²", "max_nodes=999999999999999999", "max_steps=2147483647", "depth=2147483647", "depth=100000",
           "x=3,100000,100000", "x=3,2147483647,1", "1:5", "５:9", "0:3", "9:3", "out.svg", "out.dot", "out.png", "out.py", "out.bogus",
           "adir", "missing/out.png", "full.dot", "/dev/full", "\udcff", "norm", "bogus", "t", "layer1.1", "b0,b1"]


# Options that run an exporter (seconds per input): left out of generated command lines (tests/test_export.py).
SLOW = {"--onnx", "--export"}


def subcommands() -> dict:
    """name -> argparse parser of every `resdsl` subcommand."""
    return next(a for a in _parser()._actions if a.dest == "command").choices


@st.composite
def command_line(draw, name: str) -> list[str]:
    """A command line for subcommand `name`, built from that command's own options (so a new command is
    fuzzed without listing it here): good and hostile files, numbers in other scripts, values out of
    range, unknown choices, output paths that cannot be written, options repeated or missing."""
    from resdsl.commands._common import ascii_float, ascii_int

    sub = subcommands()[name]
    argv = [name]
    positionals = [a for a in sub._actions if not a.option_strings and a.dest != "help"]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help" and not set(a.option_strings) & SLOW]
    for a in positionals:
        if draw(st.integers(0, 9)):  # rarely: left out
            count = 1 if a.nargs in (None, 1) else draw(st.integers(1, 2))
            argv += [draw(st.sampled_from(FILES)) for _ in range(count)]
    for a in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        flag = draw(st.sampled_from(a.option_strings))
        if a.nargs == 0:
            argv.append(flag)
        elif a.choices:
            argv += [flag, draw(st.sampled_from(sorted(map(str, a.choices)) + ["bogus", ""]))]
        else:
            pool = INTS if a.type in (int, ascii_int) else FLOATS if a.type in (float, ascii_float) else STRINGS
            argv += [flag, draw(st.sampled_from(pool))]
    if draw(st.integers(0, 12)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(["--bogus", "-o", "--", "--json", "-h"])))
    return argv


_PARSER = []


def _parser():
    if not _PARSER:
        from resdsl.cli import build_parser
        _PARSER.append(build_parser())
    return _PARSER[0]




# ------------------------------------------------------------------ the registry of fuzzers

OUTCOMES = ("ok", "diagnostic", "usage", "internal")
MAX_CALLS = 20_000_000  # per input: function calls (cProfile) -- the limits' worst case is ~7 million
MAX_PEAK_MB = 300  # per input: peak allocation (tracemalloc)


@dataclass(frozen=True)
class Fuzzer:
    """One generator and the oracle that judges what resdsl does with each input it draws."""

    name: str
    strategy: object  # a hypothesis strategy
    oracle: Callable[[object, "Workspace"], tuple[str, str]]  # -> (outcome in OUTCOMES, detail); raises on a bug
    examples: int  # per test run; RESDSL_FUZZ_EXAMPLES overrides (make fuzz)
    expect: Callable[[dict], None] | None = None  # checks on the counts of a whole run: the fuzzer reaches things
    doc: str = ""


FUZZERS: dict[str, Fuzzer] = {}


def register(name: str, strategy, examples: int, expect=None, doc: str | None = None):
    """Decorator: add an oracle to the registry.  tests/test_fuzz.py runs every registered fuzzer and
    bench/fuzz.py tabulates their outcomes; a new fuzzer needs nothing but this."""
    def deco(oracle):
        FUZZERS[name] = Fuzzer(name, strategy, oracle, examples, expect, doc or (oracle.__doc__ or "").strip())
        return oracle
    return deco


class Workspace:
    """A scratch directory for inputs that must be files (mutants beside copies of the examples, command
    lines run inside it so that relative outputs land there)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._made: set[str] = set()

    def examples(self) -> Path:
        d = self.root / "examples"
        if "examples" not in self._made:
            d.mkdir(parents=True, exist_ok=True)
            for name, data in EXAMPLE_BYTES.items():
                (d / name).write_bytes(data)
            self._made.add("examples")
        return d

    def cli(self) -> Path:
        d = self.root / "cli"
        if "cli" not in self._made:
            (d / "adir").mkdir(parents=True, exist_ok=True)
            (d / "tiny.res").write_text(TINY)
            (d / "bad.res").write_text(BAD)
            if not (d / "full.dot").is_symlink():
                (d / "full.dot").symlink_to("/dev/full")
                (d / "zero.res").symlink_to("/dev/zero")
                (d / "loop.res").symlink_to("loop.res")
                os.mkfifo(d / "fifo.res")  # nobody ever writes to it: opening it for reading would block
            self._made.add("cli")
        return d


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _outputs(y) -> list:
    if isinstance(y, dict):
        return list(y.values())
    if isinstance(y, (tuple, list)):
        return list(y)
    return [y]


def compare_with_torch(net: "resdsl.Network") -> None:
    """The static parameter/buffer counts and output shapes equal those of the built torch module
    (skipped without torch, and for networks too big to build in a moment)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if net.param_count > 2_000_000 or any(n.shape and _numel(n.shape) > 1_000_000 for n in net.nodes):
        return
    torch.set_num_threads(1)
    model = net.to_torch(seed=0)
    assert sum(p.numel() for p in model.parameters()) == net.param_count
    assert sum(b.numel() for b in model.buffers()) == net.buffer_count
    model.eval()
    with torch.no_grad():
        ys = _outputs(model(*[torch.randn(2, *s) for s in net.inputs.values()]))
    assert [tuple(y.shape[1:]) for y in ys] == [tuple(s) for s in net.outputs.values()]


_RUNS = [0]  # inputs judged since the last reset_budget_count(), to pick every N-th for measuring


def reset_budget_count() -> None:
    """Start counting afresh (each fuzz test does: which inputs are measured must not depend on what ran
    before in the same process, which xdist decides)."""
    _RUNS[0] = 0


def budget_every() -> int:
    """Measure the budget of every N-th input: counting calls and bytes makes an input ~5x slower, so CI
    measures every 5th (the same ones each run: the inputs are derandomized); `make fuzz` measures all."""
    return max(1, int(os.environ.get("RESDSL_FUZZ_BUDGET_EVERY", 5)))


def within_budget(fn, measured: bool | None = None) -> tuple[str, str, object]:
    """Run fn (an elaboration) -- under the per-input budgets when this input is measured (see
    budget_every) -> (outcome, detail, network or None).

    A ResdslError is a diagnostic (checked to be well formed); anything else propagates: a bug."""
    from work import Work, measure

    _RUNS[0] += 1
    if measured is None:
        measured = _RUNS[0] % budget_every() == 0
    if measured:
        w = measure(fn)
    else:
        try:
            w = Work(0, 0, None, fn())
        except Exception as e:
            w = Work(0, 0, e)
    if w.error is not None and not isinstance(w.error, resdsl.ResdslError):
        raise w.error
    w.within(MAX_CALLS, MAX_PEAK_MB)
    if w.error is not None:
        check_error(w.error)
        return "diagnostic", w.error.first.code, None
    return "ok", "", w.value


def _at_least(n_codes: int = 0, ok_share: float = 0.0):
    def expect(counts: dict) -> None:
        codes = {d for (o, d) in counts if o == "diagnostic"}
        total = sum(counts.values())
        ok = sum(k for (o, _), k in counts.items() if o == "ok")
        assert len(codes) >= n_codes, f"only {len(codes)} distinct error codes: {sorted(codes)}"
        assert ok >= ok_share * total, f"only {ok} of {total} inputs elaborated"
    return expect


def elaborate_and_compare(src: str, ws: Workspace) -> tuple[str, str]:
    """Elaborate a program: located diagnostics, or a network whose static shapes and counts equal those
    of the PyTorch module built from it."""
    outcome, detail, net = within_budget(lambda: resdsl.loads(src, name="<fuzz>"))
    if net is not None:
        compare_with_torch(net)
    return outcome, detail


register("program", program(), examples=100, expect=_at_least(n_codes=8, ok_share=0.02),
         doc="grammar-aware random programs full of mistakes")(elaborate_and_compare)
register("valid", valid_program(), examples=40, expect=_at_least(ok_share=0.8),
         doc="mostly valid programs, compared with the PyTorch module built from them")(elaborate_and_compare)


@register("named", named_program(), examples=30, expect=_at_least(ok_share=0.5))
def _named(src: str, ws: Workspace) -> tuple[str, str]:
    """Networks over named sizes: the valid sets `check` reports against elaborating every size from 1 to
    40 (and one near 1000), and the module compiled once at the example size run at valid sizes."""
    def analyse():
        net = resdsl.loads(src, name="<fuzz>")
        return net, net.valid_sizes()

    outcome, detail, value = within_budget(analyse)
    if value is not None:
        check_valid_sizes(src, *value)
    return outcome, detail


@register("mutant", mutant(), examples=100, expect=_at_least(n_codes=2))  # 3-6 codes seen, by worker
def _mutant(m: tuple[str, bytes], ws: Workspace) -> tuple[str, str]:
    """Byte-level mutants of every example file (beside copies of the others, so imports resolve)."""
    name, data = m
    f = ws.examples() / f"mutant_{name}"
    f.write_bytes(data)
    outcome, detail, _ = within_budget(lambda: resdsl.load(f))
    return outcome, detail


SOUP = st.sampled_from(["network", "block", "n", "(", ")", "{", "}", "[", "]", ",", ":", "=", "->", "\n", ";",
                        "input", "x:", "output", "from", "for", "in", "if", "else", "residual", "branch",
                        "shortcut", "1", "2.5", "\"s\"", "+", "-", "*", "**", "//", "not", "and", "{i}:", "#c",
                        "conv", "relu", "import", "true", "none", "\\\n", "'", "\"", "é", "\x00", "\t", "1e999",
                        "٣", "\ufeff", "\u2028", "\x0c"])


@register("soup", st.lists(SOUP, max_size=40).map(" ".join), examples=400, expect=_at_least(n_codes=1))
def _soup(src: str, ws: Workspace) -> tuple[str, str]:
    """Token soup for the parser: parses, or a located syntax error."""
    from resdsl.parser import parse

    outcome, detail, _ = within_budget(lambda: parse(src, "<soup>"))
    return outcome, detail


def _cli_expect(counts: dict) -> None:
    assert "usage" in {o for (o, _) in counts} and len(counts) >= 2, counts


def _cli_usage_expect(counts: dict) -> None:
    """Commands whose argument is not a .res file (`import` takes a model name): usage errors at least."""
    assert "usage" in {o for (o, _) in counts}, counts


def run_command_line(argv: list[str], ws: Workspace) -> tuple[str, str]:
    """Hostile command lines, run in-process: exit 0, 1 (diagnostics), 2 (usage) or 3 (missing tool),
    each failure explained on stderr (usage errors in one line), never a traceback, never exit 70."""
    import contextlib
    import io

    from resdsl.cli import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ws.cli())
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # --help / --version
                code = e.code
    finally:
        os.chdir(cwd)
    text = err.getvalue()
    assert code != 70 and "Traceback" not in text, f"{argv!r} -> {code}\n{text}"
    assert code in (0, 1, 2, 3), (argv, code, text)
    if code in (1, 2, 3) and "--json" not in argv:
        assert text.strip(), f"{argv!r} -> exit {code} without a message"
    if code == 2 and "--json" not in argv:  # one error line, the last (after any status lines of work done)
        lines = text.strip().splitlines()
        assert lines[-1].startswith("resdsl") and sum(": error: " in x for x in lines) == 1, \
            f"{argv!r}: a usage error is one line:\n{text}"
    return {0: "ok", 1: "diagnostic"}.get(code, "usage"), f"exit {code}"


# `lsp` is a server on stdin/stdout, driven over its protocol by tests/test_lsp.py, not a command line to fuzz
for _name in [n for n in subcommands() if n != "lsp"]:  # one fuzzer per subcommand, each its share of inputs
    register(f"cli:{_name}", command_line(_name), examples=15,
             expect=_cli_usage_expect if _name == "import" else _cli_expect,
             doc=f"hostile `resdsl {_name}` command lines")(run_command_line)
