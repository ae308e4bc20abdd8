"""Multi-head self-attention on token sequences [N, D].

`attention(heads)` is the whole layer, nn.MultiheadAttention (batch_first): its parameters load by name from
torchvision's ViT (`in_proj_weight` [3D, D], `in_proj_bias`, `out_proj.weight`, `out_proj.bias`).
`sdpa(heads)` is the core alone, on a fused [N, 3D] q|k|v tensor (GPT-2's `c_attn` output), lowered to
F.scaled_dot_product_attention; its projections are ordinary `linear(..., pointwise=true)` layers.

MACs (docs/counting.md, measured with each tool on nn.MultiheadAttention and on SDPA): torchvision counts
the four projections N*D*D each and the two attention matmuls (Q K^T and A V) N*N*D each -- which is what
FlopCounterMode reports on the meta device (on CPU its SDPA kernel goes uncounted, and the eval/no_grad fast
path `_native_multi_head_attention` hides the projections too); fvcore sees the projections only (its
F.linear calls), torchinfo and thop nothing, ptflops its own multihead_attention_counter_hook formula.
"""
from __future__ import annotations

from .base import (ArgProblem, Expr, Family, Module, Param, Saves, ShapeProblem, Spatial, OpDef, costs, register)
from .tokens import tokens

_HEADS = Param("heads", "posint", lo=1)
_CAUSAL = Param("causal", "bool", False)
_DROPOUT = Param("dropout", "float", 0.0, lo=0, hi=1)


def _heads(d: int, a, op: str) -> int:
    if d % a["heads"]:
        raise ShapeProblem("E035", f"{op}: width {d} is not divisible by heads={a['heads']}", arg="heads",
                           hint=f"choose heads dividing {d} (each head gets width // heads channels)")
    return a["heads"]


def _matmuls(n: int, d: int) -> int:
    """Q K^T and A V: N*N*D multiply-accumulates each (over all heads together)."""
    return 2 * n * n * d


# ----------------------------------------------------------------- the whole layer (nn.MultiheadAttention)


def _mha_infer(a, xs):
    n, d = tokens(xs[0], "attention")
    _heads(d, a, "attention")
    return xs[0]


def _mha_tv(a, xs, y, p) -> int:
    n, d = xs[0]
    return 4 * n * d * d + _matmuls(n, d)


def _mha_ptflops(a, xs, y, p) -> int:
    """ptflops' multihead_attention_counter_hook: q scaling N*D, projections 3*N*D*D (+3*N*D bias), per head
    N*N*(2*dh + 1), final projection N*D*(D + 1) (its bias always counted)."""
    n, d = xs[0]
    return n * d + 3 * n * d * d + (3 * n * d if a["bias"] else 0) + _matmuls(n, d) + a["heads"] * n * n \
        + n * d * (d + 1)


def _mha_lower(a, xs, y):
    d = xs[0][1]
    causal = ", attn_mask=causal_mask({x}), is_causal=True" if a["causal"] else ""
    return Module("nn.MultiheadAttention", (d, a["heads"]),
                  (("dropout", float(a["dropout"])), ("bias", a["bias"]), ("batch_first", True)),
                  call="{m}({x}, {x}, {x}, need_weights=False" + causal + ")[0]")


register(OpDef(
    "attention", Family.LINEAR, (_HEADS, _CAUSAL, _DROPOUT, Param("bias", "bool", True)),
    _mha_infer, lambda a, xs, y: (4 * xs[0][1] * xs[0][1] + (4 * xs[0][1] if a["bias"] else 0), 0),
    costs(_mha_tv, fvcore=lambda a, xs, y, p: 4 * xs[0][0] * xs[0][1] ** 2, ptflops=_mha_ptflops,
          resdsl=lambda a, xs, y, p: _mha_tv(a, xs, y, p) + (4 * xs[0][0] * xs[0][1] if a["bias"] else 0)
          + a["heads"] * xs[0][0] ** 2),
    Saves.INPUT, Spatial.GLOBAL, _mha_lower,
    lambda a, y: f"attention, {a['heads']} heads" + (", causal" if a["causal"] else ""),
    "multi-head self-attention on [N, D] tokens (nn.MultiheadAttention: in_proj_weight [3D, D], out_proj); "
    "causal=true masks later tokens", weighted=True))  # not fresh: batch_first MHA returns a transposed view

# ----------------------------------------------------------------- the core on fused q|k|v (SDPA)


def _sdpa_infer(a, xs):
    n, d3 = tokens(xs[0], "sdpa")
    if d3 % 3:
        raise ShapeProblem("E035", f"sdpa expects fused q|k|v tokens [N, 3D], but the width {d3} is not a multiple "
                           "of 3", hint="put a `linear(3 * width, pointwise=true)` (GPT-2's c_attn) before it")
    _heads(d3 // 3, a, "sdpa")
    return (n, d3 // 3)


register(OpDef(
    "sdpa", Family.LINEAR, (_HEADS, _CAUSAL, _DROPOUT), _sdpa_infer,
    lambda a, xs, y: (0, 0),
    costs(lambda a, xs, y, p: _matmuls(*y),
          resdsl=lambda a, xs, y, p: _matmuls(*y) + a["heads"] * y[0] ** 2),
    Saves.INPUT, Spatial.GLOBAL,
    lambda a, xs, y: Expr("sdpa({x}, {h}, {c}, {p}, self.training)",
                          (("h", a["heads"]), ("c", a["causal"]), ("p", float(a["dropout"])))),
    lambda a, y: f"attention core, {a['heads']} heads" + (", causal" if a["causal"] else ""),
    "scaled dot-product attention on fused q|k|v tokens [N, 3D] -> [N, D] (F.scaled_dot_product_attention)"))
