"""Hostile input: resource limits, checked before allocation, and no code execution.

Every limit in resdsl.limits.Limits is exercised with an adversarial file and
must give E040 with a located message and a hint, within seconds and a
bounded amount of memory (measured in this process with tracemalloc).
"""
from __future__ import annotations

import io
import os
import re
import tokenize
import time
import tracemalloc
from pathlib import Path

import pytest

import resdsl
from resdsl.cli import main
from resdsl.limits import Limits, check_params

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20


def net(body: str, head: str = "") -> str:
    return head + "network n() {\n    input x: [3, 8, 8]\n" + body + "\n}\n"


def fails(text: str, code: str = "E040", limits: Limits = Limits(), **params) -> resdsl.Diagnostic:
    """Elaborate `text`; it must fail with `code` in under 10 s and 300 MB; return the diagnostic."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(resdsl.ResdslError) as info:
            resdsl.loads(text, limits=limits, **params)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t < 10
    assert peak < 300 * MB, f"peak {peak / MB:.0f} MB"
    d = info.value.diagnostics[0]
    assert d.code == code, info.value.render()
    assert d.span.line >= 1 and d.span.col >= 1
    return d


# ------------------------------------------------------------------ nesting (parser)

@pytest.mark.parametrize("expr", [
    "(" * 5000 + "1" + ")" * 5000,
    "[" * 5000 + "1" + "]" * 5000,
    "{1: " * 3000 + "1" + "}" * 3000,
    "-" * 5000 + "1",
    "not " * 5000 + "true",
    " + ".join(["1"] * 20000),
    " ** ".join(["1"] * 5000),
    "1 if true else " * 3000 + "1",
    "[1]" + "[0]" * 5000,
])
def test_deep_expressions_are_refused_by_the_parser(expr):
    d = fails(net(f"    y = {expr}"))
    assert "nested more than 200 deep" in d.message
    assert d.span.line == 3
    assert "max_nesting" in d.hint


@pytest.mark.parametrize("opener", ["group {", "if true {", "residual {", "for i in range(1) {"])
def test_deeply_nested_bodies_are_refused(opener):
    text = net(f"    {opener}\n" * 3000 + "    relu\n" + "    }\n" * 3000)
    d = fails(text)
    assert d.span.line == 2 + 200  # the body that crosses the limit
    assert "nested" in d.message


def test_nesting_just_under_the_limit_works():
    # The network body, 90 nested groups and 100 brackets inside them: 191 levels elaborate fine.
    text = net("    group {\n" * 90 + "    y = " + "[" * 100 + "1" + "]" * 100 + "\n    relu\n" + "    }\n" * 90)
    n = resdsl.loads(text)
    assert [node.op for node in n.nodes] == ["input", "relu"]


def test_max_nesting_can_be_lowered_and_raised():
    text = net("    y = " + "[" * 30 + "1" + "]" * 30)
    fails(text, limits=Limits(max_nesting=20))
    resdsl.loads(text, limits=Limits(max_nesting=40))


# ------------------------------------------------------------------ work (elaborator)

def test_huge_integers_are_refused():
    d = fails(net("    y = 10 ** 10 ** 10"))
    assert d.message == "10 ** 10000000000 is too large (limit is 10**18)"
    d = fails(net("    y = 1" + "0" * 40))
    assert "integer literal with 41 digits" in d.message


def test_huge_lists_are_refused_before_allocation():
    d = fails(net("    y = [0] * 10 ** 9"))
    assert d.message == "list of 1000000000 items is too long (limit 1000000)"
    # nested lists share memory but would make str(), == and loops explode: counted deeply
    d = fails(net("    a = [0] * 1000000\n    y = [a, a]"), limits=Limits(max_steps=10**8))
    assert "more than 1000000 items" in d.message
    d = fails(net("    y = range(10 ** 12)"))
    assert "iterations exceed" in d.message


def test_huge_tensors_are_refused_before_anything_is_built():
    d = fails("network n() {\n    input x: [3, 100000, 100000]\n    conv(64, 3)\n}\n")
    assert d.message.startswith("a tensor of shape [3, 100000, 100000] has 30000000000 elements per sample")
    assert (d.span.line, d.span.col) == (2, 14)
    d = fails(net("    upsample(scale_factor=100000)"))
    assert "elements per sample" in d.message


def test_max_tensor_elements_can_be_lowered():
    text = net("    conv(64, 3, padding=1)")
    resdsl.loads(text)
    d = fails(text, limits=Limits(max_tensor_elements=64 * 8 * 8 - 1))
    assert d.message == "a tensor of shape [64, 8, 8] has 4096 elements per sample; the limit is 4095"
    assert d.span.line == 3


def test_a_million_empty_loop_iterations_hit_max_steps():
    d = fails(net("    for i in range(1000000) {\n        for j in range(1000000) {\n        }\n    }"))
    assert "more than 1000000 steps" in d.message
    assert "max_steps" in d.hint


def test_loops_that_build_big_values_are_charged_for_them():
    d = fails(net("    a = [0] * 100000\n    for i in range(100000) {\n        s = str(a)\n    }"))
    assert "steps" in d.message
    d = fails(net("    a = [0] * 100000\n    b = [0] * 100000\n    for i in range(1000) {\n        c = a == b\n    }"))
    assert "steps" in d.message


def test_limit_errors_are_reported_once_not_per_statement():
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.loads(net("    for i in range(1000) {\n        relu\n        relu\n    }"), limits=Limits(max_nodes=100))
    assert [d.code for d in info.value.diagnostics] == ["E040"]
    assert info.value.diagnostics[0].message == "the network has more than 100 operations"


def test_max_nodes_default_stops_a_million_layers_quickly():
    d = fails(net("    for i in range(300000) {\n        relu\n    }"))
    assert d.message == "the network has more than 100000 operations"


def test_deep_block_call_chains_hit_max_call_depth():
    blocks = "".join(f"block b{i}() {{\n    b{i + 1}()\n}}\n" for i in range(500)) + "block b500() {\n    relu\n}\n"
    d = fails(net("    b0()", head=blocks))
    assert d.message == "block calls nested more than 100 deep"
    assert len(d.notes) >= 100  # the chain of call sites


def test_long_import_chains_are_refused(tmp_path):
    for i in range(300):
        (tmp_path / f"f{i}.res").write_text(f'import "f{i + 1}.res"\n' if i < 299 else "k = 1\n")
    (tmp_path / "main.res").write_text('import "f0.res"\n' + net("    relu"))
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.load(tmp_path / "main.res")
    d = info.value.first
    assert (d.code, d.message) == ("E040", "imports are nested more than 200 files deep")
    assert d.span.file.endswith("f199.res") and d.span.line == 1


@pytest.mark.parametrize("stmt,code", [
    # found by fuzzing: these raised OverflowError / ValueError before (now refused by the ops' torch ranges)
    ("upsample(scale_factor=1e308)", "E014"),
    ("upsample(scale_factor=[1e308, 2])", "E014"),
    ("y = range(0, 10, 0)", "E014"),
    ("zeropad(8, 0)", "E014"),
    # and their neighbours
    ("conv(8, 3, padding=10 ** 17)", "E040"),
    ("conv(8, 10 ** 18)", "E034"),
    ("linear(10 ** 18)", "E033"),
    ("y = 2.0 ** 10000", "E041"),
    ("y = int(1e308) * 10", "E040"),
    ("y = 10 ** 18 + 10 ** 18", "E040"),
    ("y = [1, 2][10 ** 18]", "E014"),
    ("y = log2(0)", "E041"),
    ("y = max([])", "E013"),
    ("input y: [2 ** 20, 2 ** 20]", "E040"),
])
def test_absurd_arguments_give_located_errors(stmt, code):
    d = fails(net(f"    {stmt}"), code=code)
    assert d.span.line == 3


def test_recursive_blocks_are_an_error_not_a_crash():
    d = fails(net("    a()", head="block a() {\n    b()\n}\nblock b() {\n    a()\n}\n"), code="E016")
    assert d.message == "block `a` recurses through a -> b -> a more than 100 calls deep without stopping"
    assert [n.message for n in d.notes] == ["`a` called here", "`b` called here (50 times, nested)",
                                            "`a` called here (49 times, nested)", "defined here"]


def test_max_errors_caps_the_report():
    body = "\n".join(f"    nosuch{i}()" for i in range(200))
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.loads(net(body))
    assert len(info.value.diagnostics) == 50
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.loads(net(body), limits=Limits(max_errors=5))
    assert len(info.value.diagnostics) == 5


def test_max_source_bytes(tmp_path):
    text = net("    relu\n" * 1000)
    d = fails(text, limits=Limits(max_source_bytes=1000))
    assert "limit is 1000" in d.message
    f = tmp_path / "big.res"
    f.write_text(text)
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.load(f, limits=Limits(max_source_bytes=1000))
    assert info.value.first.code == "E040" and info.value.first.span.file == str(f)


def test_check_params_guards_the_backend():
    n = resdsl.loads(net("    flatten\n    linear(1000)\n    linear(1000)"))
    assert n.param_count == 192 * 1000 + 1000 + 1000 * 1000 + 1000
    check_params(n.graph, Limits())
    with pytest.raises(resdsl.ResdslError) as info:
        check_params(n.graph, Limits(max_params=1_000_000))
    d = info.value.first
    assert d.code == "E040" and "1,194,000 parameters" in d.message
    assert d.span.line == 5  # the largest layer: linear(1000) on 1000 features
    assert "max_params" in d.hint


def test_cli_limit_flag(tmp_path, capsys):
    f = tmp_path / "n.res"
    f.write_text(net("    for i in range(50) {\n        relu\n    }"))
    assert main(["check", str(f), "--limit", "max_nodes=10"]) == 1
    assert "more than 10 operations" in capsys.readouterr().err
    assert main(["check", str(f), "--limit", "max_nodes=100"]) == 0
    assert main(["check", str(f), "--limit", "max_bananas=3"]) == 2


def test_every_limit_is_exercised_here():
    names = set(Limits.names())
    text = Path(__file__).read_text()
    assert all(n in text for n in names), names - {n for n in names if n in text}


# ------------------------------------------------------------------ no code execution

def _calls(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every call to eval/exec/compile/__import__ in a Python file (strings and comments ignored)."""
    toks = [t for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)]
    out = []
    for prev, tok, nxt, arg in zip(toks, toks[1:], toks[2:], toks[3:]):
        if (tok.type == tokenize.NAME and tok.string in ("eval", "exec", "compile", "__import__")
                and nxt.string == "(" and prev.string not in (".", "def")):
            if tok.string == "__import__" and re.fullmatch(r"[\"'][\w.]+[\"']", arg.string):
                continue  # importing a fixed module by name (a lazy import) runs no file content
            out.append((tok.start[0], tok.string))
    return out


def test_no_eval_or_exec_on_file_contents(tmp_path):
    """The only exec in the package is the PyTorch backend executing the code it generated."""
    hits = {str(p.relative_to(ROOT)): _calls(p) for p in (ROOT / "resdsl").rglob("*.py")}
    hits = {k: v for k, v in hits.items() if v}
    assert set(hits) <= {"resdsl/backends/pytorch.py", "resdsl/backends/modules.py"}, hits
    for calls in hits.values():
        assert {name for _, name in calls} <= {"exec", "compile"}
    assert _calls(Path(__file__)) == []  # names in strings and comments do not count
    fake = tmp_path / "probe.py"  # and finds a real call
    fake.write_text("x = 1\ny = eval('x')  # eval(\nz = 'exec(1)'\nt = __import__('torch')\nu = __import__(x)\n")
    assert _calls(fake) == [(2, "eval"), (5, "__import__")]


@pytest.mark.parametrize("spec,message", [
    ("/etc/passwd", "can only import .res files, not `/etc/passwd`"),
    ("../../secrets.txt", "can only import .res files, not `../../secrets.txt`"),
    ("std:../../x", "no standard library module `std:../../x`"),
    ("missing.res", "cannot read"),
])
def test_imports_read_res_files_only(tmp_path, spec, message):
    f = tmp_path / "main.res"
    f.write_text(f'import "{spec}"\n' + net("    relu"))
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.load(f)
    d = info.value.first
    assert d.code == "E002" and message in d.message
    assert (d.span.line, d.span.col) == (1, 1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_importing_a_fifo_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "pipe.res")
    f = tmp_path / "main.res"
    f.write_text('import "pipe.res"\n' + net("    relu"))
    with pytest.raises(resdsl.ResdslError) as info:
        resdsl.load(f)
    assert "not a regular file" in info.value.first.message


def test_importing_a_directory_or_binary_file(tmp_path):
    (tmp_path / "dir.res").mkdir()
    (tmp_path / "bin.res").write_bytes(b"block a() {\n    relu\n}\n\xff\xfe")
    for name, msg in [("dir.res", "it is a directory"), ("bin.res", "not UTF-8 text (invalid start byte at line 4, column 1")]:
        f = tmp_path / "main.res"
        f.write_text(f'import "{name}"\n' + net("    relu"))
        with pytest.raises(resdsl.ResdslError) as info:
            resdsl.load(f)
        assert msg in info.value.first.message


@pytest.mark.parametrize("text", [
    'network n() {\n    input x: [3, 8, 8]\n    y = "__import__(\'os\').system(\'touch /tmp/pwned\')"\n    relu\n}\n',
    'network n() {\n    input x: [3, 8, 8]\n    # """; import os; os.system("x") \u202e \u0000\n    relu\n}\n',
    'network n() {\n    input x: [3, 8, 8]\n    {"a\\nb"}: relu\n}\n',
    'network n() {\n    input x: [3, 8, 8]\n    {"x); import os; ("}: relu\n}\n',
    'network n() {\n    input x: [3, 8, 8]\n    r\u00e9lu\n}\n',
    'network n() {\n    input x: [3, 8, 8]\n    residual(shortcut_label="a.b") {\n        relu\n    }\n}\n',
    'network n() {\n    input x: [3, 8, 8]\n    conv(8, 3, init="he\\"); os.system(\\"x")\n}\n',
])
def test_strings_labels_and_comments_cannot_inject(text):
    """Weird text in strings, labels and comments is data: it is either accepted as such or refused."""
    try:
        n = resdsl.loads(text)
    except resdsl.ResdslError as e:
        assert e.first.code in ("E001", "E014", "E019"), e.render()
        return
    assert [node.op for node in n.nodes] == ["input", "relu"]
    assert all(re.fullmatch(r"[A-Za-z0-9_.]*", node.name or "") for node in n.nodes)
    assert not Path("/tmp/pwned").exists()


def test_deep_set_values_are_a_usage_error(tmp_path, capsys):
    f = tmp_path / "n.res"
    f.write_text("network n(a = 1) {\n    input x: [3]\n}\n")
    assert main(["check", str(f), "--set", "a=" + "(" * 300 + "1" + ")" * 300]) == 2
    assert main(["check", str(f), "--set", "a=" + "-" * 3000 + "1"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_formatter_refuses_deep_nesting_cleanly():
    from resdsl.fmt import format_source

    with pytest.raises(resdsl.ResdslError) as info:
        format_source(net("    y = " + "[" * 500 + "]" * 500))
    assert info.value.first.code == "E040"
    deep = net("    y = " + "[" * 150 + "]" * 150)
    assert format_source(format_source(deep)) == format_source(deep)


def test_deep_label_expressions_point_at_the_label():
    d = fails(net("    {" + "(" * 300 + "1" + ")" * 300 + "}: relu"))
    assert (d.message, d.span.line, d.span.col) == ("the label's expression is nested too deeply", 3, 5)
