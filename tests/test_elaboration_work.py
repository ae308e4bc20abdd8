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
