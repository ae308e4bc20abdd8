"""The rounding facet: where an op drops or pads pixels that a perfect fit would not.

An op's `rounding(attrs, input shapes, output shape)` returns `Rounds` entries, one per way it can
round in one spatial dimension.  `amount` is integer arithmetic on the sizes (so it also runs on the
symbolic sizes of resdsl/analysis/symbolic.py) and is non-zero exactly where the op rounds; `why()`
says how, at concrete sizes.  The rules the definitions share live here, as `costs` helpers live in
base.py; an op that never rounds has `rounding=None` (tests/test_registry.py says which kinds may).

  window (conv / pool)   stride s > 1: the input length divisible by s; and no input pixel left
                         unread by the last window (when the kernel spans at least the stride:
                         a 1x1 stride-2 conv skips pixels by design)
  crop, concat(crop)     the size difference even (a centered crop)
  adaptive pooling       the input length a multiple of the output length
  upsample(size=...)     the output length a multiple of the input length
  zero-pad shortcut      the input length divisible by the stride
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Rounds:
    dim: int  # spatial dim index (0 = first spatial dim)
    amount: object  # an int, or a symbolic size: non-zero exactly where the op rounds
    why: Callable[[], str]  # the message, at concrete sizes
    alternative: bool = False  # reported only where the previous entry (same dim) is zero


def clip0(x):
    """max(0, x); a symbolic size provides `clip0` so that taking it does not split cases."""
    f = getattr(x, "clip0", None)
    return f() if f is not None else max(0, x)


def _dropped(L, k: int, s: int, p: int, d: int):
    """Input pixels at the far end that no window reads (padding excluded)."""
    eff = d * (k - 1) + 1
    if L + 2 * p < eff:
        return 0
    return clip0((L + 2 * p - eff) % s - p)


def window(a, xs, y) -> list[Rounds]:
    """conv / pool windows: strides that do not divide, pixels left unread at the far end."""
    if a.get("padding") == "same":
        return []
    out = []
    d = a.get("dilation") or (1,) * len(a["kernel_size"])
    for i, (L, k, s, p, di) in enumerate(zip(xs[0][1:], a["kernel_size"], a["stride"], a["padding"], d)):
        if s > 1:
            out.append(Rounds(i, L % s, lambda L=L, s=s, M=y[1 + i]: (
                f"input length {L} is not divisible by the stride {s} (output {M} = "
                f"{'ceil' if M * s > L else 'floor'}({L}/{s}))")))
        if di * (k - 1) + 1 >= s:  # with kernel < stride pixels are skipped by design anyway
            lost = _dropped(L, k, s, p, di)
            out.append(Rounds(i, lost, lambda L=L, k=k, s=s, p=p, lost=lost: (
                f"the last {lost} input pixel(s) of {L} are never read (kernel {k}, stride {s}, padding {p})"),
                alternative=s > 1))
    return out


def centered(a, xs, y) -> list[Rounds]:
    """A center crop of every input to the output's spatial size: the differences must be even."""
    return [Rounds(i, (L - M) % 2, lambda L=L, M=M: f"cropping {L} to {M} cannot be centered (odd difference {L - M})")
            for x in xs for i, (L, M) in enumerate(zip(x[1:], y[1:]))]


def centered_if_crop(a, xs, y) -> list[Rounds]:
    """concat(crop=true) crops like `crop`; without crop=true nothing is cut."""
    return centered(a, xs, y) if a.get("crop") else []


def adaptive(a, xs, y) -> list[Rounds]:
    return [Rounds(i, L % M, lambda L=L, M=M: f"adaptive pooling from {L} to {M}: windows of unequal size "
                                              f"({L} is not a multiple of {M})")
            for i, (L, M) in enumerate(zip(xs[0][1:], y[1:]))]


def resample(a, xs, y) -> list[Rounds]:
    """upsample(size=...) to a size that is not an integer multiple (a scale factor is the user's choice)."""
    if a.get("size") is None:
        return []
    return [Rounds(i, M % L, lambda L=L, M=M: f"upsampling {L} to {M} is not an integer scale")
            for i, (L, M) in enumerate(zip(xs[0][1:], y[1:]))]


def subsample(a, xs, y) -> list[Rounds]:
    return [Rounds(i, L % s, lambda L=L, s=s: f"input length {L} is not divisible by the shortcut's stride {s}")
            for i, (L, s) in enumerate(zip(xs[0][1:], a["stride"]))]
