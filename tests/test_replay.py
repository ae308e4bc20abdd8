"""Replayed bodies (resdsl/replay.py): a loop body, group, branch or block call that ran before under the
same key is emitted again instead of run.  Every result must be the one running it gives: each test
elaborates with replay on and off and compares the whole graph (every node, scope, region and structure
field, names included), or the whole list of diagnostics; and the replayed nodes are counted, against
closed forms, so that the tests also show replay happens where it should.
"""
import pytest

import resdsl
from resdsl.diagnostics import ResdslError
from resdsl.elaborate import Elaborator
from resdsl.loader import load_program
from resdsl.models import get_network, list_models

CHAIN = 'network chain(K = 10) { input x: [16]\n for i in range(K) { residual { relu; linear(16) } }\n output y }'


def _graph(net: resdsl.Network) -> tuple:
    g = net.graph
    return (g.name, g.params, g.inputs, g.outputs, [repr(n) for n in g.nodes], [repr(r) for r in g.regions],
            [repr(s) for s in g.scopes], list(g.structure),
            [(repr(c.test), repr(c.message), sorted(c.env.items(), key=repr), c.span) for c in g.contracts])


def _both(build) -> tuple:
    """What `build()` gives (a graph, or the diagnostics it raises) with replay on, and with it off."""
    out = []
    for on in (True, False):
        Elaborator.replay_bodies = on
        try:
            out.append(_graph(build()))
        except ResdslError as e:
            out.append(("error", e.diagnostics))
        finally:
            Elaborator.replay_bodies = True
    return tuple(out)


def _replayed(text: str, **params) -> int:
    el = Elaborator(load_program(text, "t.res"))
    el.network(None, params)
    return el.replayed


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_is_the_same_with_replay(name):
    on, off = _both(lambda: get_network(name))
    assert on == off


def test_chain_replays_every_block_but_the_first_two():
    for K in (1, 2, 3, 50):
        on, off = _both(lambda: resdsl.loads(CHAIN, K=K))
        assert on == off
        # 3 nodes a block (relu, linear, add); the first run of the body records, the second replays
        assert _replayed(CHAIN, K=K) == 3 * max(K - 1, 0)


def test_resnet152_replays_the_repeated_bottlenecks():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "examples/resnet.res").read_text()
    # stages of 3, 8, 36, 3 bottlenecks; a stage's first differs (stride or projection), its second
    # records, the rest replay: 10 nodes each (3 x conv-bn-relu minus the last relu, add, relu)
    assert _replayed(text, depth=152) == 10 * ((3 - 2) + (8 - 2) + (36 - 2) + (3 - 2))


CASES = {
    # the branch body is recorded in the first residual, whose zero_init_last then rewrites its norm; the
    # second replays it and must get the norm as the body made it
    "a branch recorded under zero_init_last, replayed without": """
network n() { input x: [4, 8, 8]
  for i in range(2) { residual(zero_init_last=i == 0) { conv(4, 3, padding=1); batchnorm() } }
  output y }""",
    "block with its own skip and split": """
block unit(c) { conv(c, 3, padding=1) -> a; relu; add(a); split(2) -> p, q; from q; concat(p) }
network n(K = 6) { input x: [4, 8, 8]
  for i in range(K) { unit(4) }
  output y }""",
    "names a loop sets, read after it": """
network n(K = 5, c = 4) { input x: [4, 8, 8]
  for i in range(K) { w = c * 2; conv(w, 1); conv(c, 1) }
  conv(w, 1)
  output y }""",
    "a name a replayed body changes, read after it": """
network n() { input x: [4]
  for j in range(3) { w = 4; for i in range(1) { w = w * 2; linear(w) }; linear(w); linear(4) }
  output y }""",
    "tensors a loop binds, read after it": """
network n(K = 5, c = 4) { input x: [4, 8, 8]
  for i in range(K) { conv(c, 1) -> last; relu }
  conv(c, 1); add(last)
  output y }""",
    "a name set only when a test says so": """
network n(K = 6) { input x: [4]
  b = 4
  for i in range(K) { linear(b); if i == 2 { b = 8 } }
  for i in range(K) { linear(b) }
  output y }""",
    "floats that compare equal but are not the same": """
block sc(v) { scale(v) }
network n() { input x: [4]
  for v in [0.0, 0.0, -0.0, -0.0, 0.0, 1, 1.0, 1] { group { sc(v) } }
  output y }""",
    "the same body in different scopes and regions": """
block pair(c) { residual { conv(c, 3, padding=1); batchnorm } ; relu }
network n() { input x: [8, 8, 8]
  for s in range(3) { stage{s}: group { for i in range(3) { {i}: pair(8) } } }
  residual { for i in range(3) { pair(8) } }
  dense { for i in range(3) { pair(8) } }
  parallel(merge="add") { branch { pair(16); pair(16); pair(16) }; branch { for i in range(3) { pair(16) } } }
  output y }""",
    "zero_init_last reaches into a replayed body": """
network n() { input x: [8, 8, 8]
  residual(zero_init_last=true) { for i in range(3) { conv(8, 3, padding=1); batchnorm } }
  residual(zero_init_last=true) { for i in range(3) { conv(8, 3, padding=1); batchnorm } }
  for i in range(3) { conv(8, 3, padding=1); batchnorm }
  output y }""",
    "shapes that change across iterations": """
network n() { input x: [3, 64, 64]
  for i in range(6) { conv(in_channels * 2, 3, stride=2 if in_shape[1] > 4 else 1, padding=1) }
  output y }""",
    "anonymous and interpolated labels": """
block unit(c) { conv(c, 1); relu }
network n(K = 4) { input x: [4, 8, 8]
  for i in range(K) { _: unit(4); layer{i}: unit(4); unit(4) }
  for i in range(K) { blk{i}: group { unit(4) } }
  output y }""",
    "templated names are run, not replayed": """
network n(K = 4) { input x: [4]
  for i in range(K) { linear(4) -> h{i} }
  for i in range(K) { from h{i}; linear(4) }
  concat(h{0..3})
  output y }""",
    "a table read in a loop": """
network n(K = 5) { input x: [4]
  small = range(200)
  big = range(300)
  for i in range(K) { linear(small[4]) }
  for i in range(K) { linear(big[4]) }
  output y }""",
    "token ids": """
network n() { input ids: int[8]
  embedding(100, 16)
  for i in range(4) { residual { layernorm(1); linear(16, pointwise=true) } }
  output y }""",
}


@pytest.mark.parametrize("case", CASES)
def test_crafted_programs_are_the_same_with_replay(case):
    text = CASES[case]
    on, off = _both(lambda: resdsl.loads(text))
    assert on == off and on[0] != "error", on


def test_the_crafted_programs_replay_where_they_can():
    counts = {case: _replayed(text) for case, text in CASES.items()}
    # conv, relu, add, two slices, concat: the loop body's first run records, the other five replay
    assert counts["block with its own skip and split"] == 5 * 6
    assert counts["templated names are run, not replayed"] == 0
    assert counts["a branch recorded under zero_init_last, replayed without"] == 2  # conv, batchnorm
    # a key holds at most 256 list items: the big table's loop runs each time (it would cost more to key)
    assert counts["a table read in a loop"] == 5 - 1
    assert counts["token ids"] == 3 * 3  # layernorm, linear, add; after the embedding no token ids flow
    # the outer body runs twice (w unset, then 8), the third time it replays; the inner body replays
    # at its second run: it must leave w = 8 behind, or the outer body's linear(w) would be 4 wide
    assert counts["a name a replayed body changes, read after it"] == 1 + 3
    assert counts["tensors a loop binds, read after it"] == 0  # `last` holds a tensor: no key
    # w and last are set by the body: the first run sees neither, the second records, three replay
    assert counts["names a loop sets, read after it"] == 3 * 2


ERRORS = {
    "an error in one iteration": """
network n() { input x: [4, 8, 8]
  for i in range(6) { conv(4, 3, padding=1); if i == 4 { conv(4, 3, padding=bad) } }
  output y }""",
    "a shape error once the shape has shrunk": """
network n() { input x: [4, 16, 16]
  for i in range(8) { residual { conv(4, 3, padding=1) } ; maxpool(2) }
  output y }""",
    "an undefined name after replayed iterations": """
block unit(c) { conv(c, 1); relu }
network n() { input x: [4, 8, 8]
  for i in range(5) { unit(4); w1 = 3 }
  conv(w2, 1)
  output y }""",
    "duplicate labels made by replayed bodies": """
block unit(c) { conv(c, 1); relu }
network n() { input x: [4, 8, 8]
  for i in range(5) { dup: unit(4) }
  output y }""",
    "token ids into a body replayed before on floats of the same shape": """
block b() { relu }
network n() { input ids: int[8]
  input f: [8]
  for i in range(3) { if i == 2 { from ids } else { from f }; b() }
  output y }""",
    "errors inside a block called many times": """
block unit(c) { conv(c, 1); linear(c) }
network n() { input x: [4, 8, 8]
  for i in range(5) { unit(4) }
  output y }""",
}


@pytest.mark.parametrize("case", ERRORS)
def test_diagnostics_are_the_same_with_replay(case):
    on, off = _both(lambda: resdsl.loads(ERRORS[case]))
    assert on == off and on[0] == "error", on


@pytest.mark.parametrize("limit", ["max_steps", "max_nodes"])
def test_limits_hit_inside_replayed_bodies_report_the_same(limit):
    """Sweep the limit across the whole elaboration: wherever it is hit (a replay would cross it, or
    not), the result is the one running every body gives -- the same E040 at the same statement."""
    text = CASES["the same body in different scopes and regions"]
    full = Elaborator(load_program(text, "t.res"))
    full.network(None, {})
    top = full.steps if limit == "max_steps" else len(full.graph.nodes)
    assert top > 80
    errors = 0
    for value in range(1, top + 2, 3):
        on, off = _both(lambda: resdsl.loads(text, limits=resdsl.Limits(**{limit: value})))
        assert on == off
        errors += on[0] == "error"
    assert errors == sum(1 for value in range(1, top + 2, 3) if value < top)


# ---------------------------------------------------------------- reshaped replays
# A body that reads no shape, run again with the same values but a new input shape, is replayed with its
# nodes' shape rules and counts run again (Elaborator._reshape); these count those nodes (`reshaped`).


def _counts(text: str, **params) -> tuple[int, int]:
    """(nodes replayed, of which reshaped)."""
    el = Elaborator(load_program(text, "t.res"))
    el.network(None, params)
    return el.replayed, el.reshaped


RESHAPED = {
    # each dense layer sees 4 more channels: nothing repeats exactly, everything but the first reshapes
    "dense layers": ("""
block layer(k) { dense { batchnorm(); relu; conv(k, 3, padding=1, bias=false) } }
network n(K = 6) { input x: [8, 16, 16]
  for i in range(K) { layer(4) }
  output y }""", 4 * 5),
    # a rank change: [4, 8, 8] then [256]: the rules see the new rank
    "a block on a new rank": ("""
block b() { relu; scale(0.5) }
network n() { input x: [4, 8, 8]
  for r in range(3) { if r == 1 { flatten }; b() }
  output y }""", 2 * 2),
    # the block reads in_channels: each new shape runs it
    "a block that reads in_channels": ("""
block b() { conv(in_channels * 2, 1) }
network n() { input x: [2, 8, 8]
  for i in range(3) { b() }
  output y }""", 0),
    # ... or calls a block that does, or reads .shape: not reshaped either
    "a block calling a block that reads the shape": ("""
block inner() { linear(in_shape[0]) }
block outer() { relu; inner() }
network n() { input x: [4]
  for i in range(4) { outer(); linear(8) }
  output y }""", 0),
    "a block that reads .channels": ("""
block b() { relu -> t; conv(t.channels, 1) }
network n() { input x: [2, 8, 8]
  for i in range(3) { b(); maxpool(2) }
  output y }""", 0),
    # a projection shortcut's attrs come from the shapes; a split's from the channels
    "a projection shortcut": ("""
block b() { residual(shortcut="project") { conv(8, 3, padding=1) } }
network n() { input x: [4, 16, 16]
  for i in range(3) { b(); maxpool(2) }
  output y }""", 0),
    "a split": ("""
block b() { split(2) -> p, q; from p; concat(q) }
network n() { input x: [4, 8, 8]
  for c in [8, 16, 32] { b(); conv(c, 1) }
  output y }""", 0),
    # zero_init_last rewrites a norm the body made: its attrs are no longer its rule's
    "zero_init_last": ("""
block b() { residual(zero_init_last=true) { conv(8, 3, padding=1); batchnorm() }; maxpool(2) }
network n() { input x: [8, 32, 32]
  for i in range(3) { b() }
  output y }""", 0),
    # an identity residual whose add sees the new shape on both sides, in a loop body (a shared body)
    "an identity residual in a loop": ("""
network n() { input x: [4, 32, 32]
  for i in range(4) { residual { relu; conv(4, 3, padding=1) }; maxpool(2) }
  output y }""", 4 * 3),
}


@pytest.mark.parametrize("case", RESHAPED)
def test_reshaped_replays_are_the_same_and_counted(case):
    text, reshaped = RESHAPED[case]
    on, off = _both(lambda: resdsl.loads(text))
    assert on == off and on[0] != "error", on
    assert _counts(text)[1] == reshaped


def test_densenet121_reshapes_every_dense_layer_but_the_first():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "examples/densenet.res").read_text()
    # 6 + 12 + 24 + 16 dense layers of 7 nodes (norm1, relu1, conv1, norm2, relu2, conv2, concat), at one
    # call site: the first records, every other one (each with more channels, or a smaller size) reshapes;
    # the transitions read in_channels and run
    assert _counts(text) == (7 * (6 + 12 + 24 + 16 - 1),) * 2  # (replayed, of which reshaped)


RESHAPE_ERRORS = {
    # the kernel fits the first shapes and not a later one: the reshape refuses, the body runs and reports
    "a kernel that no longer fits": """
block b() { conv(4, 3); maxpool(2) }
network n() { input x: [4, 16, 16]
  for i in range(4) { b() }
  output y }""",
    # the residual's add sees different shapes once the branch's stride matters: E030 from the run
    "a residual whose branch changes the shape": """
block b() { residual { conv(4, 3, padding=1, stride=2) } }
network n() { input x: [4, 1, 1]
  for i in range(2) { if i == 1 { flatten; unflatten([4, 2, 2]) }; b() }
  output y }""",
    # groups divide the first channel count, not a later one
    "groups that stop dividing": """
block b() { dense { conv(4, 1, groups=4) }; conv(6, 1) }
network n() { input x: [4, 8, 8]
  for i in range(3) { b() }
  output y }""",
}


@pytest.mark.parametrize("case", RESHAPE_ERRORS)
def test_reshaped_bodies_report_the_same_errors(case):
    on, off = _both(lambda: resdsl.loads(RESHAPE_ERRORS[case]))
    assert on == off and on[0] == "error", on
    el = Elaborator(load_program(RESHAPE_ERRORS[case], "t.res"))
    with pytest.raises(ResdslError):
        el.network(None, {})
    # 16 -> 14 -> 7, reshaped to 5 -> 2; then the kernel does not fit 2: refused, run, reported
    assert el.reshaped == {"a kernel that no longer fits": 2}.get(case, 0)


def test_a_reshape_past_the_element_limit_reports_where_running_does():
    text = """
block b() { dense { conv(16, 1) } }
network n() { input x: [16, 32, 32]
  for i in range(6) { b() }
  output y }"""
    for limit in (16 * 32 * 32 * 3, 16 * 32 * 32 * 4 + 1, 16 * 32 * 32 * 6):
        on, off = _both(lambda: resdsl.loads(text, limits=resdsl.Limits(max_tensor_elements=limit)))
        assert on == off and on[0] == "error", on
