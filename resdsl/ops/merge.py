"""Merges: elementwise sum, channel concatenation, multiplication (equal shapes, or a per-channel gate)
and the reparameterised sample of a VAE."""
from __future__ import annotations

from . import rounding
from .base import (center_slice, Expr, Family, Module, Param, Saves, ShapeProblem, Spatial, OpDef, const_label, costs, no_params,
                   numel, out_numel, register)

_TENSORS = Param("tensors", "tensors")


def _add_infer(a, xs):
    first = xs[0]
    for other in xs[1:]:
        if other != first:
            raise ShapeProblem("E032", f"cannot add tensors of shapes {list(first)} and {list(other)}",
                               hint="resdsl never broadcasts: make the shapes equal (a projection, pooling or crop)")
    return first


def _crop_to(xs) -> tuple[int, ...]:
    return tuple(min(x[i] for x in xs) for i in range(1, len(xs[0])))


def _cropped_cat(xs, smallest=None) -> str:
    """torch.cat of the inputs, each center-cropped to the smallest one per dim.  `smallest` (from the backend:
    per spatial dim the input that is the smallest at every valid input size, or None where that changes with
    the size) picks the reference; without it, the first input of the least size at the compiled shapes.  A
    dim with a reference crops every other input to its size in straight-line slicing; a dim without one
    crops all inputs to their least size at run time (`crop_to_smallest`, backends/modules.py)."""
    dims = range(1, len(xs[0]))
    at = [min(range(len(xs)), key=lambda i: xs[i][d]) for d in dims]
    ref = at if smallest is None else list(smallest)
    parts = [f"{{x{i}}}" + center_slice(x, [None if r is None or r == i else f"{{x{r}}}" for r in ref], f"{{x{i}}}")
             for i, x in enumerate(xs)]
    text = "[" + ", ".join(parts) + "]"
    for d, r in zip(dims, ref):
        if r is None:
            text = f"crop_to_smallest({text}, {d + 1})"
    return f"torch.cat({text}, 1)"


def _concat_infer(a, xs):
    ranks = {len(x) for x in xs}
    if len(ranks) != 1:
        raise ShapeProblem("E031", f"cannot concatenate tensors of different ranks: {[list(x) for x in xs]}")
    spatial = _crop_to(xs) if a.get("crop") else xs[0][1:]
    if not a.get("crop"):
        for x in xs[1:]:
            if x[1:] != spatial:
                raise ShapeProblem("E031", f"cannot concatenate {list(xs[0])} and {list(x)} along channels: "
                                   f"spatial sizes differ", hint="use concat(..., crop=true) to center-crop to the smaller size")
    return (sum(x[0] for x in xs),) + tuple(spatial)


register(OpDef(
    "add", Family.MERGE, (_TENSORS,), _add_infer, no_params,
    costs(resdsl=lambda a, xs, y, p: (len(xs) - 1) * numel(y)),  # k-input add: k - 1 per element
    Saves.NOTHING, Spatial.MERGE, lambda a, xs, y: Expr("{xs}", sep=" + "), const_label("+"),
    "elementwise sum of the current tensor and the named ones", arity=(2, -1), merge=True, fresh_output=True))
register(OpDef(
    "concat", Family.MERGE, (_TENSORS, Param("crop", "bool", False, positional=False)), _concat_infer, no_params,
    costs(), Saves.NOTHING, Spatial.MERGE,
    lambda a, xs, y, smallest=None: Expr(_cropped_cat(xs, smallest) if a.get("crop") else "torch.cat([{xs}], 1)"),
    const_label("C"), "concatenate along channels, optionally center-cropping", arity=(2, -1), merge=True,
    rounding=rounding.centered_if_crop, crops_to_smallest=lambda a: bool(a.get("crop"))))

# ----------------------------------------------------------------- multiply


def _gate_rank(x, y) -> int | None:
    """How many trailing 1-dims to add to gate `y` so it multiplies `x` per channel; None: not a gate of x."""
    if len(x) < 2 or not y or y[0] != x[0]:
        return None
    if len(y) == 1:
        return len(x) - 1  # [C] gate
    if len(y) == len(x) and all(d == 1 for d in y[1:]):
        return 0  # [C, 1, 1] gate
    return None


def _mul_infer(a, xs):
    x, y = xs
    if x == y:
        return x
    if _gate_rank(x, y) is not None:
        return x
    if _gate_rank(y, x) is not None:
        return y
    raise ShapeProblem("E032", f"cannot multiply tensors of shapes {list(x)} and {list(y)}",
                       hint="mul takes equal shapes, or a [C, H, W] map and a per-channel gate of shape [C, 1, 1] "
                            "or [C]; resdsl never broadcasts otherwise")


def _mul_lower(a, xs, y) -> Expr:
    x0, x1 = xs
    for gate, other, name in ((x1, x0, "x1"), (x0, x1, "x")):
        k = _gate_rank(other, gate) if gate != other else 0
        if k:  # a [C] gate: index it to [B, C, 1, ..., 1] (a view, no copy)
            fixed = "{" + name + "}[:, :" + ", None" * k + "]"
            return Expr("{x} * " + fixed if name == "x1" else fixed + " * {x1}")
    return Expr("{x} * {x1}")


register(OpDef(
    "mul", Family.MERGE, (_TENSORS,), _mul_infer, no_params, costs(resdsl=out_numel), Saves.INPUT, Spatial.MERGE,
    _mul_lower, const_label("×"),
    "elementwise product with one named tensor: equal shapes, or a per-channel gate [C, 1, 1] / [C] "
    "(squeeze-and-excitation)", arity=(2, 2), merge=True, fresh_output=True))

# ----------------------------------------------------------------- reparameterised sample (VAE)


def _sample_infer(a, xs):
    mu, logvar = xs
    if mu != logvar:
        raise ShapeProblem("E032", f"sample: the mean {list(mu)} and the log-variance {list(logvar)} differ in shape",
                           hint="compute mu and logvar with layers of the same output shape")
    return mu


register(OpDef(
    "sample", Family.MERGE,
    (_TENSORS, Param("eval", "choice", "mean", ("mean", "sample"), positional=False)),
    _sample_infer, no_params,
    costs(resdsl=lambda a, xs, y, p: 3 * numel(y)),  # exp(logvar / 2), times the noise, plus the mean
    Saves.INPUT, Spatial.MERGE,
    lambda a, xs, y: Module("Sample", (), (("eval_mode", str(a["eval"])),), call="{m}({x}, {x1})"),
    const_label("sample z"),
    "z = mu + exp(logvar / 2) * eps with the current tensor as mu and the named one as logvar; eps ~ N(0, 1) in "
    "training, 0 in eval (eval=\"sample\": noise in eval too)", arity=(2, 2), merge=True))
