"""Resource limits, checked before anything is allocated.

Every limit has a default generous enough for the model zoo and small enough
that `check`, `summary`, `paths` and `render` stay within seconds and a few
hundred megabytes whatever a file says.  Raise one with `Limits(max_nodes=...)`
through the API or `--limit NAME=VALUE` on the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    max_nodes: int = 100_000  # IR nodes in one network (ResNet-1001 has ~4,000)
    max_steps: int = 1_000_000  # statements run, loop iterations and list items built while elaborating
    max_call_depth: int = 100  # nested block calls
    max_nesting: int = 200  # brackets and bodies inside one another in the source
    max_errors: int = 50  # diagnostics reported in one run
    max_tensor_elements: int = 2**34  # elements of one tensor, per sample
    max_params: int = 2_000_000_000  # parameters of a module `compile` will build
    max_source_bytes: int = 500_000  # one .res file (parsing runs at roughly 0.1-1 MB/s)
    max_diagram_size: int = 5_000  # nodes + edges handed to Graphviz (its layout time grows faster than linearly)
    max_layout_seconds: int = 120  # wall-clock time Graphviz's dot may take before it is stopped

    def __post_init__(self) -> None:
        for name, top in CEILINGS.items():
            if getattr(self, name) > top:
                raise ValueError(f"{name} can be at most {top}: the parser, the elaborator and torch's module "
                                 "tree recurse once per level, and deeper nesting would overflow the stack")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# Hard maxima of the limits that bound recursion (measured: nested bodies crash CPython's C stack
# from about 6,000 levels; 1,000 leaves a wide margin, also for threads with smaller stacks).
CEILINGS = {"max_nesting": 1000, "max_call_depth": 1000}
# Each component of a layer's qualified name is a level of torch's module tree, which torch walks
# recursively (named_modules, state_dict, to, apply): at Python's default recursion limit of 1,000 it
# fails beyond about 980 levels minus its caller's stack, so the elaborator refuses more than this.
MODULE_DEPTH_CEILING = 400


def raise_hint(name: str, current: int) -> str:
    """How to raise limit `name` -- only as far as it really goes."""
    top = CEILINGS.get(name)
    if top is None:
        return f"or raise the limit with --limit {name}={current * 10}"
    if current >= top:
        return f"{name} is already at its maximum ({top})"
    return f"raise the limit with --limit {name}=N (at most {top})"


DEFAULT = Limits()


def check_params(graph, limits: Limits = DEFAULT) -> None:
    """Refuse to build a module with more than `limits.max_params` parameters (E040).

    Backends call this before allocating any weight: the shape checker has
    already counted every parameter exactly, so this costs nothing.
    """
    from .diagnostics import error  # local import: diagnostics does not depend on limits

    total = sum(n.params for n in graph.nodes)
    if total > limits.max_params:
        biggest = max(graph.nodes, key=lambda n: n.params)
        raise error("E040", f"the network has {total:,} parameters; building it is limited to {limits.max_params:,}",
                    biggest.span, hint=f"the largest layer ({biggest.params:,} parameters) is here; raise the limit "
                    "with --limit max_params=N if you have the memory (4 bytes per parameter)")
