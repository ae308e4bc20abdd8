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
    max_nodes: int = 1_000_000  # IR nodes in one network
    max_steps: int = 5_000_000  # statements executed while elaborating
    max_call_depth: int = 100  # nested block calls
    max_nesting: int = 200  # brackets and bodies inside one another in the source
    max_errors: int = 50  # diagnostics reported in one run
    max_tensor_elements: int = 2**34  # elements of one tensor, per sample
    max_params: int = 2_000_000_000  # parameters of a module `compile` will build
    max_source_bytes: int = 10_000_000  # one .res file

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


DEFAULT = Limits()
