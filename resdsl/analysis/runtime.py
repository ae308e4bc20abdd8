"""What the analyses that run the compiled module (lesion, effective paths, variance) share.

Reads a `Graph` (for memory estimates) and the environment (the memory the OS reports available).
Progress lines are resdsl/progress.py's.  Nothing here imports torch.
"""
from __future__ import annotations

from ..ir import Graph


def activation_bytes(graph: Graph, batch: int, backward: bool) -> int:
    """A lower estimate of the float32 memory one run needs: every op's output for the whole batch,
    twice with a backward pass (the gradient of each)."""
    elems = sum(_numel(n.shape) for n in graph.nodes)
    return 4 * batch * elems * (2 if backward else 1)


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where the OS does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_batch(graph: Graph, batch: int, backward: bool, option: str = "--batch") -> str | None:
    """A message refusing `batch` when its estimate exceeds the memory available, else None."""
    need = activation_bytes(graph, batch, backward)
    have = available_bytes()
    if have is None or need <= have:
        return None
    per = max(1, activation_bytes(graph, 1, backward))
    fit = have // per
    return (f"{option} {batch} needs at least {need / 2**30:.1f} GiB for activations"
            f"{' and their gradients' if backward else ''}, and {have / 2**30:.1f} GiB are available"
            + (f"; use {option} {fit} or less" if fit >= 1 else "; even one sample does not fit"))


def bad_weights(path: str | None, option: str = "--weights") -> str | None:
    """Why `path` cannot be a torch.save file for `option` (without reading it), else None."""
    if path is None:
        return None
    import os
    if not os.path.exists(path):
        return f"{option} {path}: no such file"
    if os.path.isdir(path):
        return f"{option} {path}: is a directory, not a file"
    if not os.access(path, os.R_OK):
        return f"{option} {path}: cannot be read"
    if not os.path.isfile(path):  # a FIFO would block torch.load, a device never end
        return f"{option} {path}: not a regular file"
    return None
