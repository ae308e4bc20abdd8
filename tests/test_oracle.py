"""Differential torch oracle: `check` says ok  <=>  PyTorch runs it.

Cases are generated from the op registry itself (every user op, every argument), with values drawn
inside and just outside the valid ranges -- zeros, negatives, huge ints, float32 overflow, wrong list
lengths, bogus choices -- on random small input shapes (1x1 maps and rank mismatches included), one op
at a time and in short chains.  For every case:

* resdsl accepts it: the network is compiled and run in eval and in train mode (batch 2); torch must not
  raise, and the output shape and numel must equal the static ones (and be finite for finite inputs
  when no learned state can overflow);
* resdsl refuses an argument value (E014 from the op's ranges): the op's own lowering is built with the
  range check bypassed and run in torch, which must refuse too (raise) or produce non-finite values --
  the only places resdsl is deliberately stricter than torch (e.g. a negative eps).

Deterministic seeds; RESDSL_FUZZ_EXAMPLES=N runs N cases per kind instead of the default.
Run as a script to print the counts by outcome:  python tests/test_oracle.py [N [SEED ...]]
"""
from __future__ import annotations

import math
import os
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import resdsl  # noqa: E402
from resdsl import ResdslError, ops  # noqa: E402
from resdsl.backends import modules, pytorch  # noqa: E402

torch.set_num_threads(1)
N_SINGLE = int(os.environ.get("RESDSL_FUZZ_EXAMPLES", "220"))
N_CHAIN = max(1, N_SINGLE // 3)

INTS = (-2, -1, 0, 1, 1, 2, 2, 3, 4, 7, 10 ** 6)
FLOATS = ("-1.0", "0.0", "1e-6", "0.1", "0.5", "1.0", "2.0", "1e39", "-1e39", "3e38", "0.999")
DIMS = (1, 1, 2, 3, 4, 6)

# ops that are resdsl's own (backends/modules.py helpers, not torch modules): their ranges are resdsl's
RESDSL_DEFINED = {"zeropad", "crop"}
# per-op overrides where a uniform draw would almost never be valid (the draw still goes outside often)
GENERATORS: dict[str, object] = {}


def _shape(rng: random.Random) -> list[int]:
    rank = rng.choice((1, 2, 3, 3, 3, 4))
    return [rng.choice((2, 3, 4, 6, 8))] + [rng.choice(DIMS + (5, 8)) for _ in range(rank - 1)]


def _value(p: ops.Param, rng: random.Random, rank: int) -> str:
    k = p.kind
    if k == "bool":
        return rng.choice(("true", "false"))
    if k in ("int", "posint"):
        if p.name in ("dim", "dim0", "dim1", "start_dim"):
            return str(rng.randint(-rank - 1, rank))
        return str(rng.choice(INTS))
    if k == "float":
        return rng.choice(FLOATS)
    if k in ("ints", "padding", "size"):
        if k == "padding" and rng.random() < 0.2:
            return rng.choice(('"same"', '"valid"'))
        if p.name in ("dims", "shape", "sizes"):
            n = rng.choice((rank, rank, rank - 1, rank + 1))
            pool = range(-1, rank + 1) if p.name == "dims" else (-1, 1, 2, 3, 4, 6, 12)
            return "[" + ", ".join(str(rng.choice(list(pool))) for _ in range(max(1, n))) + "]"
        if rng.random() < 0.7:
            return str(rng.choice(INTS[:-1]))
        n = rng.choice((rank - 1, rank - 1, rank))
        items = [("none" if k == "size" and rng.random() < 0.2 else str(rng.choice(INTS[:-1])))
                 for _ in range(max(1, n))]
        return "[" + ", ".join(items) + "]"
    if k == "float_or_list":
        return rng.choice(FLOATS + ("2", "[2.0, 1.5]"))
    if k in ("choice", "choice_or_none"):
        return rng.choice([f'"{c}"' for c in p.choices] + ['"bogus"'])
    if k == "str":  # a layer's name (linear's tie=): not a torch argument, nothing to draw
        return "none"
    raise AssertionError(f"no generator for argument kind {k}")


def _call(op: ops.OpDef, rng: random.Random, rank: int) -> str:
    args = []
    for p in op.params:
        if p.kind == "tensors":
            continue
        if p.default is not ops.REQUIRED and rng.random() < 0.5:
            continue
        args.append(f"{p.name}={_value(p, rng, rank)}")
    return ", ".join(args)


def _layer(name: str, rng: random.Random, rank: int) -> str:
    op = ops.OPS[name]
    args = _call(op, rng, rank)
    if op.merge:  # merge with a tensor made from the same input: equal shapes, a gate, or something else
        make = rng.choice(("relu", "global_avgpool", "adaptive_avgpool(1)", "conv(3, 1)", "flatten"))
        extra = f", {args}" if args else ""
        return f"-> a\n {make}\n -> b\n from a\n {name}(b{extra})"
    return f"{name}({args})" if args or op.params else name


USER_OPS = sorted(n for n, o in ops.OPS.items() if o.user)
for _n in USER_OPS:
    GENERATORS[_n] = _layer


def cases(seed: int, n_single: int, n_chain: int):
    """(id, input shape, body) triples: every op n_single/len(ops) times (at least twice), then chains."""
    rng = random.Random(seed)
    per_op = max(2, n_single // len(USER_OPS))
    for name in USER_OPS:
        for k in range(per_op):
            shape = _shape(rng)
            yield f"{name}#{k}", shape, GENERATORS[name](name, rng, len(shape))
    for k in range(n_chain):
        shape = _shape(rng)
        body = "\n ".join(GENERATORS[o](o, rng, len(shape)) for o in rng.sample(USER_OPS, rng.choice((2, 3))))
        yield f"chain#{k}", shape, body


def _source(shape, body) -> str:
    return f"network t() {{\n input x: {shape}\n {body}\n output y\n}}\n"


class _Self:  # what generated expressions may read from `self`
    def __init__(self, training: bool):
        self.training = training


def _run_lowered(op: ops.OpDef, attrs: dict, xs: list[tuple[int, ...]], training: bool):
    """Build the op's lowering directly (no static checks) and run it on random inputs."""
    low = pytorch._interpret(op.lower(attrs, xs, None), op.name)
    ns = {"torch": torch, "nn": nn, "F": F, "self": _Self(training), **{k: getattr(modules, k) for k in modules.EXPORTS}}
    args = [f"x{i}" for i in range(len(xs))]
    for a, s in zip(args, xs):
        ns[a] = torch.randn((2,) + tuple(s))
    if low.ctor:
        m = eval(low.ctor, ns)  # our own lowering text (resdsl/ops/), not user input
        m.train(training)
        ns["m"] = m
        if low.init:
            exec(low.init.format(m="m"), ns)  # the reset_parameters statement, e.g. init_weight(m, "he", gain)
    return eval(low.call("m" if low.ctor else None, args), ns)


def judge(shape, body) -> str:
    """The outcome of one case; raises AssertionError when static and torch disagree."""
    src = _source(shape, body)
    try:
        net = resdsl.loads(src)
    except ResdslError as e:
        return _judge_refusal(e, shape, body)
    model = net.to_torch(seed=0)
    want = net.outputs["y"]
    assert sum(p.numel() for p in model.parameters()) == net.param_count, f"parameter count differs:\n{src}"
    assert sum(b.numel() for b in model.buffers()) == net.graph.buffer_count, f"buffer count differs:\n{src}"
    for training in (False, True):
        model.train(training)
        x = torch.randn((2,) + tuple(net.inputs["x"]), generator=torch.Generator().manual_seed(0),
                        requires_grad=training)
        try:
            with torch.set_grad_enabled(training):
                y = model(x)
                if training:  # the backward pass too: in-place ops must not break autograd
                    y.float().sum().backward()
        except Exception as e:  # noqa: BLE001 -- any torch error is the bug we look for
            raise AssertionError(f"check says ok, torch refuses ({'train' if training else 'eval'}):\n{src}\n{e}") from e
        assert tuple(y.shape) == (2,) + tuple(want), f"static shape {want} != torch {tuple(y.shape)}:\n{src}"
        assert y.numel() == 2 * math.prod(want)
    return "accepted: ran forward in eval, forward and backward in train; shapes and counts equal"


# Refusals where resdsl is deliberately stricter than torch, which would run: (op, message fragment) -> why.
STRICTER = {
    ("linear", "flat [features]"): "nn.Linear on [C, H, W] acts on W; resdsl asks for pointwise=true",
    ("layernorm2d", "normalizes the channels"): "on [C] it is layernorm (torchvision's LayerNorm2d needs 4-d input)",
}
_DIM_PARAMS = {"dim", "dims", "dim0", "dim1", "start_dim", "sizes", "shape"}


def _judge_refusal(e: ResdslError, shape, body) -> str:
    """A refused one-op case: build the op's lowering from the raw arguments and ask torch."""
    d = e.first
    name = body.split("(")[0].strip()
    op = ops.lookup(name)
    if "\n" in body.strip() or op is None or op.lower is None:
        return f"refused statically ({d.code}, chain or merge: not compared)"
    attrs = _attrs_of(body, op) if "(" in body else {}
    if attrs is None:
        return f"refused statically ({d.code}, argument kind)"
    full = {p.name: p.default for p in op.params if p.default is not ops.REQUIRED and p.kind != "tensors"}
    full.update(attrs)
    try:
        out = op.infer(full, [tuple(shape)])
        derived = {**full, **(out.derived if isinstance(out, ops.Inferred) else {})}
        how = "range"
    except ops.ShapeProblem:
        # rank errors (E033) have no raw form: the lowering picks the torch module by the input's rank
        derived, how = (None if d.code == "E033" else _raw(op, full, shape)), "shape rule"
        if derived is None:
            return f"refused statically ({d.code}, {how}; no raw torch form to compare)"
    except Exception:  # noqa: BLE001 -- arithmetic on a value the range check exists to refuse
        return f"refused statically ({d.code}, value unusable)"
    try:
        y = _run_lowered(op, derived, [tuple(shape)], training=True)
        y2 = _run_lowered(op, derived, [tuple(shape)], training=False)
    except Exception:  # noqa: BLE001 -- torch refuses too: consistent
        return f"refused statically ({how}), torch refuses too"
    if y.numel() == 0 or y2.numel() == 0:  # resdsl shapes have positive sizes only
        return f"refused statically ({how}), torch gives an empty tensor"
    if not (torch.isfinite(y).all() and torch.isfinite(y2).all()):
        return f"refused statically ({how}), torch gives non-finite values"
    if "finite float32" in d.message:  # torch rounds it to inf and computes on (e.g. 1 / sqrt(var + inf) = 0)
        return "refused statically (beyond float32), torch silently computes with inf"
    if name in RESDSL_DEFINED:
        return "refused statically (an op resdsl defines, no torch counterpart)"
    for (o, frag), why in STRICTER.items():
        if o == name and frag in d.message:
            return f"refused statically, deliberately stricter than torch ({why})"
    raise AssertionError(f"resdsl refuses what torch runs cleanly:\n{_source(shape, body)}\n{d.message}")


def _raw(op: ops.OpDef, full: dict, shape) -> dict | None:
    """The arguments as torch would take them (ints spread over the spatial dims), without resdsl's checks;
    None where the op's torch form cannot be written without resdsl's own normalisation."""
    n = len(shape) - 1
    names = {p.name for p in op.params}
    if names & _DIM_PARAMS or set(op.derived) - names or not 1 <= n <= 3 and op.spatial is not ops.Spatial.POINT:
        return None
    raw = dict(full)
    for p in op.params:
        v = raw.get(p.name)
        if p.kind not in ("ints", "padding", "size", "float_or_list"):
            continue
        if v is None and p.name == "stride":
            v = raw.get("kernel_size")
        if v == "valid":
            v = 0
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = (v,) * n
        raw[p.name] = v
    return raw


def _attrs_of(body: str, op: ops.OpDef) -> dict | None:
    """The keyword arguments of a one-layer body, evaluated by resdsl's own evaluator."""
    from resdsl.elaborate import _check_kind
    from resdsl.span import Span
    text = body[body.index("(") + 1: body.rindex(")")]
    if not text.strip():
        return {}
    params = {p.name: p for p in op.params}
    try:
        values = {k.strip(): _literal(v.strip()) for k, v in (part.split("=", 1) for part in _split(text))}
        return {k: _check_kind(params[k], v, Span("<oracle>", 1, 1, 1, 1)) for k, v in values.items()}
    except Exception:  # noqa: BLE001 -- a kind error, not a range error
        return None


def _split(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        cur += ch
    return parts + [cur]


def _literal(v: str):
    if v in ("true", "false"):
        return v == "true"
    if v == "none":
        return None
    if v.startswith('"'):
        return v[1:-1]
    if v.startswith("["):
        return tuple(_literal(x.strip()) for x in _split(v[1:-1]))
    return float(v) if any(c in v for c in ".e") else int(v)


def run(seed: int, n_single: int, n_chain: int) -> Counter:
    counts: Counter = Counter()
    for cid, shape, body in cases(seed, n_single, n_chain):
        counts[judge(shape, body)] += 1
    return counts


@pytest.mark.parametrize("seed", [0, 1])
def test_static_checks_agree_with_torch(seed):
    counts = run(seed, N_SINGLE // 2, N_CHAIN // 2)
    assert sum(counts.values()) >= len(USER_OPS) * 2
    assert counts["accepted: ran forward in eval, forward and backward in train; shapes and counts equal"] > 0
    assert counts["refused statically (range), torch refuses too"] > 0
    assert counts["refused statically (shape rule), torch refuses too"] > 0


def test_every_user_op_has_a_generator():
    assert set(USER_OPS) <= set(GENERATORS)


@pytest.mark.parametrize("layer,shape", [  # the instances reported in issue 10, each refused with a located E014/E033
    ("softmax(3)", [3, 8, 8]), ("maxpool(2, dilation=0)", [3, 8, 8]), ("zeropad(6, -1)", [3, 8, 8]),
    ("instancenorm()", [3, 1, 1]), ("batchnorm(eps=-1)", [3, 8, 8]), ("scalar_scale(1e39)", [3, 8, 8]),
    ("leaky_relu(1e39)", [3, 8]), ("maxpool(3, padding=2, dilation=2)", [3, 8, 8]),
    ('upsample(scale_factor=2, align_corners=true)', [3, 4, 4]), ("ghost_batchnorm(1)", [3, 1, 1]),
])
def test_reported_instances_are_refused_with_a_located_hint(layer, shape):
    with pytest.raises(ResdslError) as e:
        resdsl.loads(_source(shape, layer))
    assert e.value.first.code in ("E014", "E033") and e.value.first.span.line == 3 and e.value.first.hint
    assert judge(shape, layer).startswith("refused statically")  # and the oracle agrees with torch on it


def test_upsample_size_with_none_is_a_diagnostic():  # found by this oracle: a TypeError traceback before
    with pytest.raises(ResdslError) as e:
        resdsl.loads(_source([3, 4, 4], "upsample(size=[none, 2])"))
    assert e.value.first.code == "E014" and e.value.first.span.line == 3


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N_SINGLE
    seeds = [int(a) for a in sys.argv[2:]] or [0, 1]
    total: Counter = Counter()
    for s in seeds:
        total += run(s, n, max(1, n // 3))
    for k, v in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"{v:6d}  {k}")
    print(f"{sum(total.values()):6d}  total")
