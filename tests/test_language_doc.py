"""docs/language.md: every ```res example parses and elaborates; the operation table matches resdsl.ops."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import resdsl
from resdsl import ops
from resdsl.parser import parse

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
BLOCKS = re.findall(r"^```res\n(.*?)^```", DOC.read_text(), re.S | re.M)


def wrap(snippet: str) -> str:
    body = "\n".join("    " + ln for ln in snippet.splitlines())
    return f"network doc() {{\n    input x: [3, 32, 32]\n{body}\n}}\n"


def test_the_reference_has_many_examples():
    assert len(BLOCKS) >= 20


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_example_parses_and_elaborates(i):
    text = BLOCKS[i]
    try:
        module = parse(text, f"language.md#{i}")
    except resdsl.ResdslError:  # statements: run them inside a network with an image input
        net = resdsl.loads(wrap(text), name=f"language.md#{i}")
        assert net.nodes[0].op == "input"
        return
    if any(type(item).__name__ == "NetworkDef" for item in module.items):
        net = resdsl.loads(text, name=f"language.md#{i}")
        assert net.outputs
    else:  # constants and blocks only: they must still elaborate in a network
        resdsl.loads(text + wrap("identity"), name=f"language.md#{i}")


def _net(i: int) -> resdsl.Network:
    text = BLOCKS[i]
    try:
        parse(text)
        return resdsl.loads(text)
    except resdsl.ResdslError:
        return resdsl.loads(wrap(text))


def _find(fragment: str) -> int:
    return next(i for i, b in enumerate(BLOCKS) if fragment in b)


def test_claims_made_in_the_text_hold():
    # labels section: "names the convolutions stem, stage1.0, stage1.1, stage2.0, stage2.1"
    n = _net(_find("stage{s + 1}"))
    assert [x.name for x in n.nodes if x.op == "conv"] == ["stem", "stage1.0", "stage1.1", "stage2.0", "stage2.1"]
    # named tensors: concat gives 32 + 16 channels at 32x32, and skip.channels is 16
    n = _net(_find("concat(skip)"))
    assert [x.shape for x in n.nodes if x.op in ("concat", "conv")][-2:] == [(48, 32, 32), (16, 32, 32)]
    # dense: 16 + 3 * 12 = 52 channels; parallel: 24 channels
    assert _net(_find("# 16 + 3 * 12")).nodes[-1].shape == (52, 32, 32)
    n = _net(_find("# 8 + 8 + 4 + 4"))
    assert [x.shape for x in n.nodes if x.op == "concat"] == [(24, 32, 32)]
    # merging: the commented shapes
    n = _net(_find("crop(28)"))
    shapes = {x.op: x.shape for x in n.nodes}
    assert shapes["concat"] == (16, 30, 30) and shapes["crop"] == (16, 28, 28)
    # resampling: the commented shapes
    n = _net(_find("conv_transpose(8, 2, stride=2)"))
    shapes = {x.op: x.shape for x in n.nodes}
    assert (shapes["conv_transpose"], shapes["adaptive_avgpool"], shapes["zeropad"], shapes["flatten"]) == \
        ((8, 64, 64), (8, 4, 4), (16, 2, 2), (64,))
    n = _net(_find("input tokens"))
    assert [x.shape for x in n.nodes if x.op in ("avgpool", "global_maxpool")] == [(16, 50), (16,)]
    # expressions: the commented values
    text = BLOCKS[_find("blocks = sum(stages)")]
    n = resdsl.loads(wrap(text))
    assert [x.shape for x in n.nodes if x.op == "conv"] == [(96, 32, 32), (48, 32, 32)]


def test_operation_table_is_generated_and_current():
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "make_language.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = DOC.read_text()
    for name, spec in ops.OPS.items():
        if spec.user and name != "input":
            assert f"| `{name}` |" in doc


@pytest.mark.parametrize("topic", [
    "--set", "input ", "output ", "-> ", "from ", "block ", "in_channels", "for ", "if ", "} else {",
    'shortcut="project"', 'shortcut="zeropad"', 'shortcut="avgproject"', 'scale="learnable"', "drop_path=",
    "post=", "zero_init_last", "} shortcut {", "dense", "parallel(merge=", "group {", "concat(", "add(",
    "crop=true", 'init="he"', "init_gain", 'import "std:blocks"', "# ", "{i}:", "enumerate(",
])
def test_every_construct_is_covered(topic):
    assert topic in DOC.read_text()


def test_claims_of_the_language_features_hold():
    # recursive blocks: hg.low2.low2.low2 is the innermost conv
    n = _net(_find("hg: hourglass(3, 8)"))
    assert "hg.low2.low2.low2" in [x.name for x in n.nodes]
    # the anonymous label: the block's layers are named in the caller's scope
    n = _net(_find("_: inverted_body(3, 6)"))
    assert [x.name for x in n.nodes if x.params][0] == "features.1.conv.0.0"
    assert [x.name for x in n.nodes if x.params][-1] == "features.1.conv.2"
    # split: Res2Net's pieces concatenate back to 64 channels, through four slices
    n = _net(_find("split(4) -> x{1..4}"))
    assert n.nodes[-1].shape == (64, 32, 32) and [x.op for x in n.nodes].count("slice") == 4
