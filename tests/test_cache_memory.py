"""The parse cache's memory bound (resdsl/parser.py `_CACHE`), in bytes that tracemalloc counts.

The cache bounds the characters of source it keeps; that bounds memory only if no valid text holds
more than `_CACHE_BYTES_PER_CHAR` bytes of AST per character.  The texts below are the heaviest
shapes found (one token per character or two, each its own AST node with a span).  The cache is
filled with them at a smaller bound (the default, 250,000 characters, takes seconds to parse under
tracemalloc); the default's bytes are the same product.
"""
from __future__ import annotations

import gc
import tracemalloc
from collections import OrderedDict

from pathlib import Path

import pytest

from resdsl import parser
from resdsl.loader import load_file

ROOT = Path(__file__).resolve().parent.parent


def _heavy(shape: str, i: int, chars: int) -> str:
    """About `chars` characters of one hostile shape; `i` makes each text distinct."""
    unit = {"call of comparisons": "a<a,", "call of names": "a,", "bare calls": "f;", "list of negations": "-a,",
            "arrows": "a->b;"}[shape]
    body = unit * (chars // len(unit))
    if shape.startswith("call"):
        return f"network n{i}() {{\nf({body}a)\n}}\n"
    if shape.startswith("list"):
        return f"x{i} = [{body}a]\n"
    return f"network n{i}() {{\n{body}\n}}\n"


@pytest.mark.parametrize("shape", ["call of comparisons", "call of names", "bare calls", "list of negations",
                                   "arrows"])
def test_hostile_texts_fill_the_cache_within_its_byte_bound(monkeypatch, shape):
    bound = 16_000  # characters (the default is 250,000)
    monkeypatch.setattr(parser, "_CACHE", OrderedDict())
    monkeypatch.setattr(parser, "_CACHE_CHARS", bound)
    parser.parse(_heavy(shape, 99, 2_000), "warm.res")  # the driver's tables and memos: once per process
    parser._CACHE.clear()
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(16):  # 16 texts of ~2,000 characters: twice what fits
            parser.parse(_heavy(shape, i, 2_000), "heavy.res")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]  # what the cache keeps: keys (texts), modules, sources
    finally:
        tracemalloc.stop()
    chars = sum(len(k[1]) for k in parser._CACHE)
    assert parser._cached_chars == chars <= bound  # the cache's own accounting
    assert chars > bound - 2_100  # it is full: the bound is what is tested
    assert held <= chars * parser._CACHE_BYTES_PER_CHAR, held / chars  # the bytes, independently
    assert held >= chars * 150  # and these are hostile: a file like the examples holds ~40 bytes per character


def test_the_default_bound_is_under_100_mb_and_keeps_the_typical_files():
    assert parser._CACHE_CHARS * parser._CACHE_BYTES_PER_CHAR <= 100 * 2**20
    parser._CACHE.clear()
    files = sorted((ROOT / "examples").glob("*.res"))
    for f in files:
        load_file(f)
    cached = {k[0] for k in parser._CACHE}
    assert {str(f) for f in files} <= cached and any(n.endswith("blocks.res") for n in cached)  # and the stdlib


def test_a_text_over_the_bound_alone_is_not_kept_and_the_cache_stays(monkeypatch):
    monkeypatch.setattr(parser, "_CACHE", OrderedDict())
    monkeypatch.setattr(parser, "_CACHE_CHARS", 1_000)
    parser.parse("x = 1\n", "small.res")
    big = parser.parse(_heavy("call of names", 0, 2_000), "big.res")
    assert list(k[0] for k in parser._CACHE) == ["small.res"] and parser._cached_chars == 6
    assert parser.parse(_heavy("call of names", 0, 2_000), "big.res") == big  # parsed again, the same AST


def test_many_empty_texts_under_new_names_are_bounded_by_entries(monkeypatch):
    """An empty text costs no characters but still ~1.2 kB (its module, key and source)."""
    monkeypatch.setattr(parser, "_CACHE", OrderedDict())
    monkeypatch.setattr(parser, "_CACHE_ENTRIES", 100)
    for i in range(1_000):
        parser.parse("", f"empty{i}.res")
    assert len(parser._CACHE) == 100 and ("empty999.res", "", 200) in parser._CACHE
