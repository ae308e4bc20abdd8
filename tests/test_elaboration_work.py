"""Work and garbage of elaboration and the path count, counted (never timed): the speed-ups in
elaborate.py and analysis/paths.py must not change a result, and must keep their bounds.

- elaboration runs with the cyclic garbage collector off, so any reference cycle it made per op
  would pile up: the cycles left after loading a network do not grow with its size;
- the blocks of a chain are counted by one path DP per shape of block, not one per block, and the
  counts stay exact (the closed forms of a chain of K residual blocks: 2^K paths, C(K, k) of length k,
  2^(K-1) through each block's branch).
"""
import gc
from math import comb

import resdsl
from resdsl.analysis import paths as P

CHAIN = 'network chain(K = 100) { input x: [16]\n for i in range(K) { residual { relu; linear(16) } }\n output y }'


def _cycles_left(text: str, **params) -> tuple[int, resdsl.Network]:
    """Reference cycles that only the cyclic collector could free, left by one load."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        net = resdsl.loads(text, **params)
        return gc.collect(), net
    finally:
        if was:
            gc.enable()


def test_elaboration_leaves_no_reference_cycles_per_op():
    _cycles_left(CHAIN, K=2)  # caches (parsed standard library, ...) filled once
    small, net_small = _cycles_left(CHAIN, K=10)
    big, net_big = _cycles_left(CHAIN, K=400)
    assert (len(net_small.nodes), len(net_big.nodes)) == (31, 1201)
    assert big == small


def test_block_calls_leave_no_reference_cycles_per_call():
    text = """
block unit(c, k = 1 + 2) { conv(c, k, padding=1); relu }
network n(K = 4) { input x: [3, 8, 8]
  for i in range(K) { unit(3) }
  output y }"""
    _cycles_left(text, K=1)
    small, net_small = _cycles_left(text, K=2)
    big, net_big = _cycles_left(text, K=100)
    assert (len(net_small.nodes), len(net_big.nodes)) == (5, 201)
    assert big == small


def test_equal_blocks_share_one_path_dp(monkeypatch):
    dps = []
    flat = P._flat
    monkeypatch.setattr(P, "_flat", lambda *args: dps.append(args[2]) or flat(*args))
    K = 300
    counts = resdsl.loads(CHAIN, K=K).paths()
    assert counts.total == 2 ** K
    assert counts.by_length == {k: comb(K, k) for k in range(K + 1)}
    assert [c for _, c in counts.blocks] == [2 ** (K - 1)] * K
    assert len(dps) == 1  # 300 blocks of one shape: one DP, whose result is shifted to every block


def test_path_dp_memo_keeps_blocks_of_different_shapes_apart():
    """A chain mixing plain and doubled (add(x, x)) blocks: the memo must not confuse their shapes."""
    text = """
network mix(K = 6) { input x: [4]
  for i in range(K) {
    if i % 2 == 0 { residual { relu } } else { residual { relu -> t; add(t) } }
  }
  output y }"""
    K = 6
    counts = resdsl.loads(text, K=K).paths()
    # even i: 1 + x (skip or branch); odd i: 1 + x(1 + x) -- inside the branch, add(t)'s first operand
    # is a branch edge and `t` a skip
    want = [1]
    for i in range(K):
        step = [1, 1] if i % 2 == 0 else [1, 1, 1]
        want = [sum(want[j] * step[k - j] for j in range(len(want)) if 0 <= k - j < len(step))
                for k in range(len(want) + len(step) - 1)]
    assert counts.by_length == {k: c for k, c in enumerate(want) if c}
    assert counts.total == 2 ** 3 * 3 ** 3


def _naive_power(p: list[int], n: int) -> list[int]:
    q = [1]
    for _ in range(n):
        out = [0] * (len(q) + len(p) - 1)
        for i, a in enumerate(q):
            for j, b in enumerate(p):
                out[i + j] += a * b
        q = out
    return q


def test_power_by_miller_equals_repeated_multiplication():
    """_power computes half of a palindromic power and mirrors it: checked against n multiplications,
    palindromic factors and others, odd and even degrees."""
    factors = [[1, 1], [1, 2, 1], [2, 3, 2], [1, 0, 1], [3, 0, 0, 3], [1, 2], [2, 1, 1], [5], [1, 4, 6, 4, 1],
               [2, 0, 2], [1, 3, 0, 2], [4, 1, 1, 4]]
    for p in factors:
        for n in range(9):
            assert P._power(list(p), n) == _naive_power(p, n), (p, n)
    assert P._power([1, 1], 2001) == [comb(2001, k) for k in range(2002)]


# ---------------------------------------------------------------- pickling and copying a Network

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
CONTRACT = """
network small(c = 8) { input x: [3, 16, 16]
  conv(c, 3, padding=1); batchnorm; relu
  residual(shortcut="project") { conv(2 * c, 3, stride=2, padding=1) }
  dense { conv(4, 3, padding=1) }
  assert params == 3 * c * 9 + c + 2 * c + 2 * c * c * 9 + 2 * c + c * 2 * c + 2 * 2 * c + 2 * c * 9 * 4 + 4
  output y }"""


def _answers(net: resdsl.Network) -> tuple:
    """What a sweep asks of a network: parameters, counts, costs in every convention, paths, names."""
    from resdsl.analysis.cost import CONVENTIONS
    costs = tuple(tuple((c.macs, c.rf_size, c.rf_jump) for c in net.costs(conv).layers) for conv in CONVENTIONS)
    paths = net.paths()
    return (net.name, net.params, net.inputs, net.outputs, net.param_count, net.buffer_count, costs,
            paths.total, paths.by_length, [(n.name, n.op, n.shape, dict(n.attrs)) for n in net.nodes],
            [r.name for r in net.graph.regions], [s.name for s in net.graph.scopes], net.graph.structure)


def _roundtrips(net: resdsl.Network) -> list[resdsl.Network]:
    import copy
    import pickle
    return [pickle.loads(pickle.dumps(net)), pickle.loads(pickle.dumps(net, protocol=0)), copy.deepcopy(net)]


def test_network_pickles_and_deep_copies_with_the_same_answers():
    import torch
    cases = [resdsl.load(ROOT / "examples/resnet.res", depth=18), resdsl.load(ROOT / "examples/gpt2.res"),
             resdsl.loads(CONTRACT), resdsl.load(ROOT / "examples/unet.res", input_shapes={"x": (1, "H", "W")})]
    assert cases[2].graph.contracts and cases[3].symbols and any("tie" in n.attrs for n in cases[1].nodes)
    for net in cases:
        want = _answers(net)
        for other in _roundtrips(net):
            assert other is not net and other.graph.nodes[0] is not net.graph.nodes[0]
            assert other.graph == net.graph and other.symbols == net.symbols and other.limits == net.limits
            assert _answers(other) == want
            other.graph.lint()  # attrs are read-only again, shapes and counts re-derive
            assert type(other.graph.nodes[0].attrs) is type(net.graph.nodes[0].attrs)
        assert [str(c.test) for c in _roundtrips(net)[0].graph.contracts] == [str(c.test) for c in net.graph.contracts]
    net = cases[2]
    m1, m2 = net.to_torch(seed=0), _roundtrips(net)[0].to_torch(seed=0)
    x = torch.randn(2, 3, 16, 16)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert list(s1) == list(s2) and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(m1.eval()(x), m2.eval()(x))
    assert sum(p.numel() for p in m2.parameters()) == net.param_count


def _param_count_in_worker(net: resdsl.Network) -> tuple[int, int]:
    return net.param_count, net.costs().total


def test_network_travels_to_a_worker_process():
    import multiprocessing
    nets = [resdsl.loads(CHAIN, K=K) for K in (3, 5)]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(_param_count_in_worker, nets)
    assert got == [(n.param_count, n.costs().total) for n in nets] == [(3 * 272, 3 * 256), (5 * 272, 5 * 256)]


NAME_CLASHES = [  # (body, whether two layers reach one module name, or one sits inside another)
    ("conv: relu\nconv.0: relu", True),
    ("a.b: relu\na: group { b: relu }", True),
    ("a.b.c: relu\na.b: relu", True),
    ("a.b: group { c: relu }\na: relu", True),  # a scope's own dotted label: `a` is a prefix inside it
    ("a.b: group { c: relu }\na.c: relu", False),
    ("g: group { relu; relu }\ng_1: relu", False),
    ("a.b.c: relu\na.bc: relu\nab: relu", False),
    ("p.q: relu\np: group { z: relu }", False),
]


def _brute_force_clash(names: list[str]) -> bool:
    return len(set(names)) < len(names) or any(m.startswith(n + ".") for n in names for m in names)


def test_layer_name_clashes_are_found_exactly_when_brute_force_finds_them():
    """`_check_names` skips its walk when a quick test says no name can clash; it must agree with every
    pair of names compared (brute force, on the names the same program gets without the check)."""
    from resdsl.diagnostics import ResdslError
    from resdsl.elaborate import Elaborator
    for body, clash in NAME_CLASHES:
        text = "network n() {\n input x: [4]\n" + body + "\n output y }"
        original = Elaborator._check_names
        Elaborator._check_names = lambda self, g: None
        try:
            names = [n.name for n in resdsl.loads(text).graph.nodes]
        finally:
            Elaborator._check_names = original
        assert _brute_force_clash(names) == clash, (body, names)
        try:
            resdsl.loads(text)
            found = False
        except ResdslError as e:
            assert {d.code for d in e.diagnostics} == {"E020"}, e
            found = True
        assert found == clash, body


def _general_paths(monkeypatch) -> None:
    """Every statement, argument list and expression through the general path: no op plan, no bind
    plan, no compiled expression (each evaluated by its Evaluator method)."""
    from resdsl import elaborate as E
    from resdsl import evaluate as V
    monkeypatch.setattr(E, "_make_plan", lambda s: None)
    monkeypatch.setattr(E, "_bind_plan_of", lambda params, args, sig: E._BINDS.setdefault(
        (id(params), id(args)), (params, args, None)))
    monkeypatch.setattr(V, "compile_expr", lambda e: (lambda ev: V._RULES[type(e)](ev, e)))
    for table in (E._PLANS, E._BINDS, V._COMPILED):
        table.clear()


def _result(build) -> tuple:
    from resdsl.diagnostics import ResdslError
    try:
        net = build()
    except ResdslError as e:
        return ("error", e.diagnostics)
    g = net.graph
    return ([repr(n) for n in g.nodes], [repr(r) for r in g.regions], [repr(s) for s in g.scopes], g.structure,
            net.costs().to_json())


def _programs() -> list:
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "docs"))
    import make_errors
    from resdsl.models import get_network, list_models
    out = [(lambda n=name: get_network(n)) for name in list_models()]
    for ex in make_errors.EXAMPLES:
        if not ex.files and ex.render is None:
            out.append(lambda ex=ex: resdsl.loads(ex.source, network=ex.network, **ex.params))
    return out


def test_planned_and_compiled_paths_give_what_the_general_path_gives(monkeypatch):
    """Op plans, bind plans and compiled expressions (elaborate.py `_OpPlan`, `_bind_plan_of`,
    evaluate.py `compile_expr`) are made at a statement's or expression's second run and must do
    exactly what the general path does: the whole zoo and every documented error example, each built
    twice (so the second build runs every plan) against the general path alone."""
    from resdsl import elaborate as E
    from resdsl import evaluate as V
    builds = _programs()
    fast = []
    for build in builds:
        _result(build)
        fast.append(_result(build))
    assert sum(r[0] == "error" for r in fast) > 20 and sum(r[0] != "error" for r in fast) > 50
    assert len(E._PLANS) > 100 and len(V._COMPILED) > 100  # the plans were made and used
    with monkeypatch.context() as m:
        _general_paths(m)
        slow = [_result(build) for build in builds]
        assert all(e[1] is None for e in E._PLANS.values())
    assert slow == fast
