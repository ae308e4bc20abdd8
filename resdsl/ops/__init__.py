"""The op registry: every operation the IR may contain, each defined once with all its facets.

One module per family (conv, linear, norm, act, pool, merge, shape, scale, reg, tokens, attention); `base` says what a
definition holds (`OpDef`).  Adding an op is one `register(OpDef(...))` in its family's module plus its
case in tests/test_ops_torch.py (tests/test_registry.py checks both).  Passes look ops up here and use
their facets; they never name an op.
"""
from __future__ import annotations

# Each module registers its ops; the import order is the order of `resdsl ops` and of docs/language.md.
from . import conv, linear, pool, shape, reg, act, norm, scale, merge, tokens, attention  # noqa: F401, I001
from .base import (ALIASES, CONVENTIONS, OPS, REQUIRED, ArgProblem, Display, Expr, Family, Inferred, MissingFacet,
                   Module, OpDef, Param, Parameter, Saves, ShapeProblem, Spatial, lookup, register)
from .conv import INIT_WEIGHTS
from .norm import INIT_NORM

OpSpec = OpDef  # the name passes used before the registry grew facets

ACTIVATIONS = tuple(n for n, o in OPS.items() if o.family is Family.ACT)  # values of residual(post=...)
NORMS = tuple(n for n, o in OPS.items() if o.family is Family.NORM)  # values of residual(shortcut_norm=...)
MERGES = tuple(n for n, o in OPS.items() if o.merge)

__all__ = ["ALIASES", "CONVENTIONS", "OPS", "REQUIRED", "ArgProblem", "Display", "Expr", "Family", "Inferred",
           "MissingFacet", "Module", "OpDef", "OpSpec", "Param", "Parameter", "Saves", "ShapeProblem", "Spatial", "lookup",
           "register", "INIT_WEIGHTS", "INIT_NORM", "ACTIVATIONS", "NORMS", "MERGES"]
