"""The shape of an op definition: every fact about one op in one frozen value.

An `OpDef` carries all of an op's facets together -- arguments and their
ranges, the pure shape rule, parameter/buffer counts, MACs under every
counting convention, what autograd saves, the spatial (receptive-field)
effect, the lowering to PyTorch (a small declarative `Module`/`Expr`
description that the backend turns into code, so nothing here imports
torch), the diagram label, the merge/transposed flags and the doc line.
Passes dispatch through these facets; `register` refuses a definition that
lacks one, and `OpDef.facet` raises `MissingFacet` naming the op and the pass.

This module imports nothing from the rest of resdsl: later stages import it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from types import MappingProxyType
from typing import Callable, Mapping

Shape = tuple[int, ...]
REQUIRED = object()
FLOAT32_MAX = 3.4028234663852886e38  # torch's default dtype: larger magnitudes become inf

# Counting conventions of the MAC facet (see resdsl/analysis/cost.py for what each one means).
CONVENTIONS = ("torchvision", "torch", "fvcore", "torchinfo", "thop", "ptflops", "resdsl")


class ShapeProblem(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None, arg: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint, self.arg = code, message, hint, arg


class ArgProblem(ShapeProblem):
    def __init__(self, message: str, hint: str | None = None, arg: str | None = None):
        super().__init__("E014", message, hint, arg)


class MissingFacet(AssertionError):
    """A pass met an op without the facet it needs: a bug in resdsl, not in the user's file."""

    def __init__(self, op: str, facet: str, user: str):
        super().__init__(f"internal error in {user}: op {op!r} has no `{facet}` facet")


class Display(str, Enum):
    """Diagram family: one legend entry and colour each (render/labels.py holds the colours)."""

    CONV = "conv"
    NORM = "norm"
    ACTIVATION = "activation"
    POOL = "pool"
    LINEAR = "linear"
    MERGE = "merge"
    OTHER = "other"
    IO = "io"

    def __str__(self) -> str:
        return self.value


class Family(str, Enum):
    """What kind of op it is; decides the diagram family, the cost class and the docs' heading."""

    INPUT = "input"
    CONV = "conv"
    LINEAR = "linear"
    NORM = "norm"
    ACT = "act"
    POOL = "pool"
    MERGE = "merge"
    RESHAPE = "reshape"
    REG = "reg"
    SCALE = "scale"
    SHORTCUT = "shortcut"

    def __str__(self) -> str:
        return self.value

    @property
    def display(self) -> Display:
        return _FAMILY_FACTS[self][0]

    @property
    def cost_class(self) -> str:
        return _FAMILY_FACTS[self][1]

    @property
    def title(self) -> str:
        return _FAMILY_FACTS[self][2]


_FAMILY_FACTS = {  # family -> (diagram family, cost class, docs title)
    Family.INPUT: (Display.IO, "other", "input"),
    Family.CONV: (Display.CONV, "conv/linear", "convolution"),
    Family.LINEAR: (Display.LINEAR, "conv/linear", "linear"),
    Family.NORM: (Display.NORM, "norm", "normalization"),
    Family.ACT: (Display.ACTIVATION, "activation", "activation"),
    Family.POOL: (Display.POOL, "pooling", "pooling"),
    Family.MERGE: (Display.MERGE, "add/concat", "merge"),
    Family.RESHAPE: (Display.OTHER, "other", "shape"),
    Family.REG: (Display.OTHER, "other", "regularization"),
    Family.SCALE: (Display.OTHER, "scale", "scaling"),
    Family.SHORTCUT: (Display.OTHER, "other", "shortcut"),
}


class Saves(Enum):
    """Which tensor autograd keeps for this op's backward (the training-memory model)."""

    INPUT = "input"
    OUTPUT = "output"
    NOTHING = "nothing"


class Spatial(Enum):
    """What the op does to spatial positions: drives receptive fields and the rounding report."""

    POINT = "point"  # position-wise (activations, norms, 1-to-1 maps, linear on features)
    WINDOW = "window"  # conv / pooling window: kernel_size, stride, dilation
    TRANSPOSED = "transposed"  # transposed conv: divides the jump
    GLOBAL = "global"  # every input position reaches every output (global pooling, flatten)
    ADAPTIVE = "adaptive"  # adaptive pooling windows
    RESAMPLE = "resample"  # upsampling (nearest / bilinear)
    SUBSAMPLE = "subsample"  # x[..., ::s]: stride without a window
    CROP = "crop"  # center crop
    MERGE = "merge"  # several inputs, aligned position by position


@dataclass(frozen=True)
class Param:
    """One argument.  Numeric ranges are torch's own checks (`lo`/`hi`, open when `lo_open`/`hi_open`);
    floats must also be finite in float32 unless `finite32` is False."""

    name: str
    kind: str  # int, posint, float, bool, ints, padding, size, float_or_list, choice, tensors, str
    default: object = REQUIRED
    choices: tuple = ()
    positional: bool = True
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    finite32: bool = True
    why: str = ""  # the hint for an out-of-range value
    torch_exact: bool = True  # False: stricter than torch, which would run but compute nothing useful (`why` says)

    def check(self, v: object) -> None:
        """Raise ArgProblem if `v` (or an entry of a list `v`) is outside this parameter's range."""
        if v is None or isinstance(v, (bool, str)):
            return
        for x in (v if isinstance(v, tuple) else (v,)):
            if x is None or isinstance(x, (bool, str)):
                continue
            if isinstance(x, float) and self.finite32 and not (math.isfinite(x) and abs(x) <= FLOAT32_MAX):
                raise ArgProblem(f"`{self.name}` must be a finite float32 number, got {x!r}", arg=self.name,
                                 hint="torch computes in float32: magnitudes beyond 3.4e38 become inf")
            if (self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo))) or \
                    (self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi))):
                raise ArgProblem(f"`{self.name}` must be {self._range()}, got {_num(v)}", arg=self.name,
                                 hint=self.why or f"torch refuses other values; e.g. {self.name}={_num(self._example())}")

    def _example(self) -> object:
        """A valid value to suggest: the default if it is a number, else the nearest bound."""
        if isinstance(self.default, (int, float)) and not isinstance(self.default, bool):
            return self.default
        if self.lo is None:
            return self.hi
        if not self.lo_open:
            return self.lo
        return self.lo + 1 if self.kind in ("int", "posint", "ints") else 1e-5

    def _range(self) -> str:
        lo, hi = self.lo, self.hi
        tail = " (as in torch)" if self.torch_exact else ""
        if hi is None:
            return ("positive" if lo == 0 and self.lo_open else "non-negative" if lo == 0 else
                    f"{'>' if self.lo_open else '>='} {_num(lo)}") + tail
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"in {left}{_num(lo)}, {_num(hi)}{right}{tail}"


def _num(v: object) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_num(x) for x in v) + "]"
    return repr(v)


def pos(name: str, kind: str = "ints", default: object = REQUIRED, **kw) -> Param:
    """A parameter that must be >= 1 (sizes, strides, dilations)."""
    return Param(name, kind, default, lo=1, **kw)


def nonneg(name: str, kind: str = "ints", default: object = REQUIRED, **kw) -> Param:
    return Param(name, kind, default, lo=0, **kw)


# ----------------------------------------------------------------- lowering descriptions (read by backends)

@dataclass(frozen=True)
class Module:
    """The op becomes a submodule `cls(*args, **kwargs)` (cls: `nn.<Name>` or a helper in
    backends/modules.py) called as `call` ({m}: the module, {x}: the input, {x1}: the second one).
    `init` is a reset_parameters statement template ({m}: the module, {name}: a literal of init_args)."""

    cls: str
    args: tuple = ()
    kwargs: tuple[tuple[str, object], ...] = ()
    init: str | None = None
    init_args: tuple[tuple[str, object], ...] = ()
    call: str = "{m}({x})"
    inplace: tuple[tuple[str, object], ...] = ()  # extra kwargs of the in-place variant (nn.ReLU(inplace=True))
    # `init` overwrites every parameter and buffer of the module, so torch's default initialisation (run by
    # its constructor) is wasted work: the generated network builds it without one (backends/pytorch.py).
    complete: bool = False


@dataclass(frozen=True)
class Expr:
    """The op becomes an expression: `template` with {x} the first input, {x1} the second ({x0}, {x1}, ...
    each input), {xs} all inputs joined by `sep`, and {name} the Python literal of `values[name]`.  Templates are fixed text
    written here; only literals of plain values are substituted."""

    template: str
    values: tuple[tuple[str, object], ...] = ()
    sep: str = ", "


@dataclass(frozen=True)
class Parameter:
    """The op owns one bare `nn.Parameter` of `shape`, keyed by the layer's own name (torchvision's ConvNeXt
    `layer_scale`, ViT's `class_token` and `encoder.pos_embedding`), used in the forward expression `call`
    ({p}: the parameter, {x}: the input) and filled by the reset statement `init` ({p}); {name}: a literal
    of `values[name]`.  As in torchvision's own code: `self.layer_scale = nn.Parameter(...)`."""

    shape: tuple[int, ...]
    call: str
    init: str
    values: tuple[tuple[str, object], ...] = ()


Lowering = Module | Expr | Parameter


# ----------------------------------------------------------------- the definition

@dataclass(frozen=True)
class Inferred:
    """A shape rule's result: the output shape and the derived attributes (declared in `OpDef.derived`)."""

    shape: Shape
    derived: Mapping[str, object] = field(default_factory=dict)


MacRule = Callable[[Mapping, list, Shape, int], int]  # (attrs, input shapes, output shape, params) -> MACs


@dataclass(frozen=True)
class OpDef:
    name: str
    family: Family
    params: tuple[Param, ...]
    infer: Callable[[Mapping, list], Shape | Inferred]  # pure: reads attrs and input shapes, writes nothing
    count: Callable[[Mapping, list, Shape], tuple[int, int]]  # (parameters, buffer elements)
    macs: Mapping[str, MacRule]  # one rule per convention in CONVENTIONS
    saves: Saves
    spatial: Spatial
    lower: Callable[[Mapping, list, Shape], Lowering] | None  # None only for `input`
    label: Callable[[Mapping, Shape], str]
    doc: str
    arity: tuple[int, int] = (1, 1)  # min, max tensor inputs (max -1: any)
    derived: tuple[str, ...] = ()  # attributes the shape rule adds or normalises (e.g. kernel_size as a tuple)
    user: bool = True  # callable from .res files by this name
    weighted: bool = False  # conv/linear: counts as a "layer" in path lengths
    merge: bool = False  # combines several tensors (drawn as a merge node)
    transposed: bool = False  # a transposed convolution
    # output is a new tensor (not a view) its backward does not read: a later in-place activation or add may
    # overwrite it; a function of the input shapes where that depends on them
    fresh_output: bool | Callable[[list], bool] = False
    # output is the input itself (eval, p = 0) or a new tensor its backward does not read (dropout, drop path):
    # a later in-place op may overwrite it exactly when it may overwrite the input
    pass_through: bool = False
    # the output is the view input[start:stop] along feature dim d: (attrs, input shapes) -> (d, start, stop);
    # sibling pieces that cut a value into consecutive parts are emitted as one torch.split
    piece: Callable[[Mapping, list], tuple[int, int, int]] | None = None
    ids: Callable[[Mapping], int] | None = None  # reads integer token ids (`input ids: int[N]`): how many it knows
    weight: Callable[[Mapping, list], Shape] | None = None  # shape of its `.weight`, for `tie=` (weight tying)
    rounding: Callable[[Mapping, list, Shape], list] | None = None  # ops/rounding.py: where it drops or pads pixels
    # the lowering centre-crops its inputs to the smallest one per spatial dim (attrs -> whether it does): the
    # backend then passes lower a 4th argument, per spatial dim the input that is the smallest at every valid
    # input size (analysis/sizes.py smallest_inputs), or None where that changes with the size
    crops_to_smallest: Callable[[Mapping], bool] | None = None

    def fresh(self, xs: list[Shape]) -> bool:
        """Whether the output for input shapes `xs` is a new tensor that its backward does not read."""
        return bool(self.fresh_output(xs) if callable(self.fresh_output) else self.fresh_output)

    def elaborate(self, attrs: Mapping, xs: list[Shape]) -> tuple[Shape, dict]:
        """Check argument ranges, run the shape rule; returns (shape, attrs with the defaults of omitted
        arguments and the derived attributes applied).  Reads `attrs` and `xs`, writes nothing."""
        return self.infer_full(self.checked(attrs, xs), xs)

    def checked(self, attrs: Mapping, xs: list[Shape]) -> dict:
        """The first half of `elaborate`: the input count and argument ranges checked, and a new dict of
        `attrs` over the defaults of omitted arguments (what the shape rule reads)."""
        lo, hi = self.arity
        if hi >= 0 and len(xs) > hi:
            raise ShapeProblem("E013", f"{self.name} takes {hi - 1} named tensor{'s' if hi != 2 else ''} besides the "
                               f"current one, got {len(xs) - 1}", hint=f"e.g. {self.name}(t) after binding `-> t`")
        by_name = self._by_name
        for k, v in attrs.items():
            p = by_name.get(k)
            if p is not None and v is not p.default:  # defaults are valid by construction
                p.check(v)
        return {**self._defaults, **attrs}

    def infer_full(self, attrs: dict, xs: list[Shape]) -> tuple[Shape, dict]:
        """The second half of `elaborate`: the shape rule, for attrs already checked and holding every
        default (as `checked` makes them).  Returns (shape, attrs with the derived attributes applied: a
        new dict where the rule derives any, else `attrs` itself).  Reads `attrs`, writes nothing."""
        out = self.infer(MappingProxyType(attrs), xs)  # read-only to the rule
        if isinstance(out, Inferred):
            if not self._derived.issuperset(out.derived):
                extra = set(out.derived) - set(self.derived)
                raise MissingFacet(self.name, f"derived {sorted(extra)}", "the op's shape rule")
            return tuple(out.shape), {**attrs, **out.derived}
        return tuple(out), attrs

    @cached_property
    def _derived(self) -> frozenset:
        return frozenset(self.derived)

    @cached_property
    def _by_name(self) -> dict:
        return {p.name: p for p in self.params}

    @cached_property
    def _defaults(self) -> dict:
        return {p.name: p.default for p in self.params if p.default is not REQUIRED and p.kind != "tensors"}

    def mac(self, convention: str, attrs: Mapping, xs: list[Shape], y: Shape, params: int) -> int:
        rule = self.macs.get(convention)
        if rule is None:
            raise MissingFacet(self.name, f"macs[{convention}]", "the cost pass")
        return int(rule(attrs, xs, y, params))


OPS: dict[str, OpDef] = {}
ALIASES: dict[str, str] = {}


def register(op: OpDef, *aliases: str) -> OpDef:
    """Add a definition; refuses one with a missing facet so no pass meets it later."""
    assert op.name not in OPS, op.name
    missing = [c for c in CONVENTIONS if c not in op.macs]
    if missing:
        raise MissingFacet(op.name, f"macs[{missing[0]}]", "the op registry")
    if op.lower is None and op.user:
        raise MissingFacet(op.name, "lower", "the op registry")
    OPS[op.name] = op
    for a in aliases:
        ALIASES[a] = op.name
    return op


def lookup(name: str) -> OpDef | None:
    return OPS.get(ALIASES.get(name, name))


# ----------------------------------------------------------------- shared helpers for the definitions

def numel(s: Shape) -> int:
    return math.prod(s)


def zero(a, xs, y, p) -> int:
    return 0


def costs(torchvision: MacRule = zero, *, fvcore: MacRule = zero, torchinfo: MacRule = zero, thop: MacRule = zero,
          ptflops: MacRule = zero, resdsl: MacRule = zero) -> Mapping[str, MacRule]:
    """The MAC facet.  Every convention is named at the definition (zero included, by choice);
    `torch` (FlopCounterMode) is always 2 x torchvision."""
    return MappingProxyType({"torchvision": torchvision, "torch": lambda a, xs, y, p: 2 * torchvision(a, xs, y, p),
                             "fvcore": fvcore, "torchinfo": torchinfo, "thop": thop, "ptflops": ptflops,
                             "resdsl": resdsl})


def center_slice(x: Shape, to, field: str = "{x}") -> str:
    """Indexing text that center-crops the spatial dims of the tensor `field` (a template field such as
    "{x0}", batch first, of compiled shape `x` [C, *spatial]) to the sizes `to`: per dim an int, or the
    template field of the tensor whose size it takes (None: keep the dim).  Offsets follow the input,
    (L - M) // 2 as torchvision's center_crop, so one compiled network crops right at every input size; the
    shape arithmetic is straight-line (`x.shape[2]`, no branches), which torch.fx records as nodes and
    torch.export / ONNX trace."""
    cuts = []
    for d, m in zip(range(2, 1 + len(x)), to):
        if m is None:
            cuts.append(":")
            continue
        size = f"{m}.shape[{d}]" if isinstance(m, str) else str(int(m))
        cuts.append(f"({field}.shape[{d}] - {size}) // 2:({field}.shape[{d}] + {size}) // 2")
    if all(c == ":" for c in cuts):
        return ""
    return "[:, :, " + ", ".join(cuts) + "]"


def out_numel(a, xs, y, p) -> int:
    return numel(y)


def in_numel(a, xs, y, p) -> int:
    return numel(xs[0])


def times(k: int, rule: MacRule) -> MacRule:
    return lambda a, xs, y, p: k * rule(a, xs, y, p)


def own_params(a, xs, y, p) -> int:
    return p


def no_params(a, xs, y) -> tuple[int, int]:
    return 0, 0


def spatial(x: Shape, op: str, rank: int | None = None, min_rank: int = 2) -> int:
    """Number of spatial dims of a channels-first feature shape."""
    if rank is not None and len(x) != rank:
        raise ShapeProblem("E033", f"{op} expects an input of rank {rank} ([C{', L' * (rank - 1)}...]), got {list(x)}",
                           hint=f"use the {len(x) - 1}d variant or reshape first" if len(x) >= 2 else "add `unflatten` or use a linear layer")
    if len(x) < min_rank or len(x) > 4:
        raise ShapeProblem("E033", f"{op} expects a [C, L], [C, H, W] or [C, D, H, W] input, got {list(x)}",
                           hint="convolutions and pooling need a channel and at least one spatial dimension")
    return len(x) - 1


def as_tuple(v, n: int, name: str) -> tuple:
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ArgProblem(f"`{name}` has {len(v)} entries but the input has {n} spatial dimensions", arg=name,
                             hint=f"give one value or {n} values")
        return tuple(v)
    return (v,) * n


def channels(x: Shape, op: str) -> int:
    if not x:
        raise ShapeProblem("E033", f"{op} needs a channel dimension")
    return x[0]


def same(a, xs) -> Shape:
    return xs[0]


def const_label(text: str) -> Callable[[Mapping, Shape], str]:
    return lambda a, y: text


def fmt_num(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def fmt_shape(shape) -> str:
    return "×".join(str(d) for d in shape)


def kernel_text(k) -> str:
    k = tuple(k) if isinstance(k, (tuple, list)) else (k,)
    return "×".join(str(v) for v in k)


def uniform(v) -> object:
    """(2, 2) -> 2; (1, 2) stays."""
    if isinstance(v, (tuple, list)) and v and all(x == v[0] for x in v):
        return v[0]
    return v


def stride_suffix(a: Mapping, key: str = "stride", sign: str = "/") -> str:
    s = uniform(a.get(key, 1))
    if s in (1, None):
        return ""
    return f", {sign}{kernel_text(s) if isinstance(s, tuple) else s}"


def tdim(d: int) -> int:
    """Feature dim d (no batch) as a tensor dim (batch first); negative dims count from the end either way."""
    return d + 1 if d >= 0 else d
