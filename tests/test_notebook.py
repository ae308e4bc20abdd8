"""The notebook view: `Network._repr_html_` (summary table + diagram), `show(level=...)`, no Graphviz needed."""
import re
import shutil
from pathlib import Path

import pytest

import resdsl
from resdsl.notebook import MISSING_DOT
from resdsl.summary import summary_rows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def net():
    return resdsl.load(ROOT / "examples" / "unravel4.res")


def _cells(html: str) -> list[list[str]]:
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)]


def test_html_table_matches_the_summary(net):
    html = net._repr_html_()
    rows, _ = summary_rows(net, 2)
    assert _cells(html) == [[name, op, shape, f"{m:,}", f"{p:,}"] for name, op, shape, p, m in rows]
    assert f"params: {net.param_count:,}" in html and f"ops: {len(net.nodes)}" in html


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_html_has_the_diagram(net):
    html = net._repr_html_()
    assert html.count("<svg") == 1 and "<?xml" not in html and MISSING_DOT not in html
    shown = net.show(level="unraveled")
    assert shown._repr_html_().count("<svg") == 1 and "<svg" in net._repr_svg_()


def test_without_graphviz_the_table_still_shows(net, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot anywhere
    html = net._repr_html_()
    assert "<svg" not in html and html.count(MISSING_DOT) == 1
    assert len(_cells(html)) == len(summary_rows(net, 2)[0]) > 0
    assert net._repr_svg_() is None  # IPython shows nothing for None instead of an error
    view = net.show(level="layer", depth=None)
    assert len(_cells(view._repr_html_())) == len(summary_rows(net, None)[0]) > len(net.nodes) and repr(view) == net.summary(None)
    ipython = pytest.importorskip("IPython.core.formatters")
    data, _ = ipython.DisplayFormatter().format(net)  # what a notebook does with the cell's value
    assert "text/html" in data and "image/svg+xml" not in data and MISSING_DOT in data["text/html"]
    out = capsys.readouterr()
    assert out.out == out.err == ""  # a formatter that raised would print its traceback here


def test_text_is_escaped():
    html = resdsl.loads("network t() { input x: [4]; fc: linear(2); output y }")._repr_html_()
    assert "from &lt;string&gt;" in html and "<string>" not in html
    with pytest.raises(ValueError, match="level must be one of"):
        resdsl.loads("network t() { input x: [4]; output y }").show(level="blocks")
