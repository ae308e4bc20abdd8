"""Lesions and effective paths (Veit et al. 2016) on any graph, statically and on the compiled module.

Reads a `Network` (IR, the path definitions of `analysis.paths`) and, for the dynamic parts, the
module `Network.to_torch` builds; writes reports.

Static: `deletable` lists the branch edges (`paths.branches`: residual and dense branches,
parallel branches, the first operand of an `add(a)` / `concat(e1)`) whose merge has another input a
path reaches -- a parallel path around the branch, so deleting it leaves a network that still maps
inputs to outputs; `paths_after_lesion` counts the paths left.

Dynamic: `instrument` rebuilds the network with a one-parameter `scalar_scale` "gate" (initialised
to 1, so x * 1.0 == x exactly) on chosen input slots and after chosen nodes, and loads the original
weights into it.  Gates are ordinary modules, so forward hooks on them can zero a branch (lesion),
detach an edge (cut the gradient in the backward pass only: effective paths) or record activations
and gradients (variance).  Only the public API is used: a modified IR goes through
`Network.to_torch`, and the IR tells which gate belongs to which edge.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from ..ir import Graph, Node, Region, Scope, freeze
from .paths import Branch, Path, PathSampler, branches, count_paths, live_inputs

# ---------------------------------------------------------------- static


def deletable(graph: Graph) -> list[Branch]:
    """Branch edges with a parallel path around them: another input of their merge is reached from an
    input, and the merge reaches an output."""
    ins = live_inputs(graph)
    reach = [False] * len(graph.nodes)
    for i in graph.inputs.values():
        reach[i] = True
    for n in graph.nodes:
        reach[n.id] = reach[n.id] or any(reach[u] for u in ins[n.id] if u >= 0)
    useful = [False] * len(graph.nodes)
    for o in graph.outputs.values():
        useful[o] = True
    for n in reversed(graph.nodes):
        if useful[n.id]:
            for u in ins[n.id]:
                if u >= 0:
                    useful[u] = True
    out = []
    for b in branches(graph):
        m = graph.nodes[b.merge]
        if useful[b.merge] and reach[m.inputs[b.slot]] and any(reach[u] for s, u in enumerate(m.inputs) if s != b.slot):
            out.append(b)
    return out


def deletable_blocks(graph: Graph) -> list[Branch]:
    """Alias of `deletable` (the name of earlier versions, when only residual blocks could be deleted)."""
    return deletable(graph)


def find_blocks(graph: Graph, names: list[str] | None) -> list[Branch]:
    """The deletable branches named in `names` (all of them for None); ValueError naming unknown ones."""
    units = deletable(graph)
    if names is None:
        return units
    by_name = {b.name: b for b in units}
    missing = [n for n in names if n not in by_name]
    if missing:
        known = {b.name for b in branches(graph)} | {r.name for r in graph.regions}
        why = [f"{n!r} has no parallel path around it" if n in known else f"no branch named {n!r}" for n in missing]
        shown = sorted(by_name)
        listing = ", ".join(shown[:8]) + (f", ... ({len(shown)} in all; --list shows them)" if len(shown) > 8 else "")
        raise ValueError("; ".join(why) + f" (deletable: {listing or 'none'})")
    return [by_name[n] for n in names]


def paths_after_lesion(graph: Graph, units: list[Branch], length: str = "blocks"):
    """Path counts with the branch edges of `units` removed."""
    return count_paths(graph, length, frozenset((b.merge, b.slot) for b in units))


# ---------------------------------------------------------------- instrumented copies


def instrument(graph: Graph, gates: set[tuple[int, int]] = frozenset(), taps: set[int] = frozenset()
               ) -> tuple[Graph, dict[tuple[int, int], str], dict[int, str]]:
    """A copy of `graph` with a `scalar_scale` gate on every (node, slot) in `gates` and after every node in
    `taps` (its consumers and outputs then read the tap).  Returns the graph and the gates' / taps' names."""
    root = next(s.id for s in graph.scopes if s.parent is None)
    idmap: dict[int, int] = {}
    read: dict[int, int] = {}  # old id -> new id consumers read (the tap, if any)
    nodes: list[Node] = []
    gate_names: dict[tuple[int, int], str] = {}
    tap_names: dict[int, str] = {}

    def gate(src: int, name: str, span) -> int:
        nid = len(nodes)
        nodes.append(Node(nid, "scalar_scale", (src,), freeze({"init": 1.0}), nodes[src].shape, 1, 0, root, None,
                          span, name=name))
        return nid

    for n in graph.nodes:
        inputs = []
        for slot, u in enumerate(n.inputs):
            src = read[u]
            if (n.id, slot) in gates:
                name = f"resdsl_gate_{n.id}_{slot}"
                src = gate(src, name, n.span)
                gate_names[(n.id, slot)] = name
            inputs.append(src)
        nid = len(nodes)
        nodes.append(Node(nid, n.op, tuple(inputs), n.attrs, n.shape, n.params, n.buffers, n.scope, n.label, n.span,
                          n.calls, n.region, n.name))
        idmap[n.id] = read[n.id] = nid
        if n.id in taps:
            name = f"resdsl_tap_{n.id}"
            read[n.id] = gate(nid, name, n.span)
            tap_names[n.id] = name

    def remap(ids):
        return tuple(idmap[i] for i in ids)

    regions = [Region(r.id, r.kind, r.parent, idmap[r.input], idmap[r.merge], tuple(remap(b) for b in r.branches),
                      r.branch_slots, remap(r.shortcut), r.attrs, r.scope, r.span, r.calls, r.name)
               for r in graph.regions]
    g = Graph(graph.name, dict(graph.params), nodes, {k: idmap[v] for k, v in graph.inputs.items()},
              {k: read[v] for k, v in graph.outputs.items()}, regions,
              [Scope(s.id, s.parent, s.label, s.hint, s.span, s.kind, s.name) for s in graph.scopes])
    return g, gate_names, tap_names


def build_instrumented(net, gates=frozenset(), taps=frozenset(), seed: int | None = 0, state_dict=None):
    """(module, gate names, tap names): the instrumented network with `net`'s weights
    (its own init for `seed`, or `state_dict`; ValueError when that does not fit the network)."""
    from ..network import Network

    g, gate_names, tap_names = instrument(net.graph, set(gates), set(taps))
    module = Network(g, net.source).to_torch(seed=seed)
    sd = state_dict if state_dict is not None else net.to_torch(seed=seed).state_dict()
    extra = set(gate_names.values()) | set(tap_names.values())
    try:
        missing, unexpected = module.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shapes that do not fit
        raise ValueError(f"--weights do not fit {net.name}: {str(e).splitlines()[-1].strip()}") from None
    missing = [k for k in missing if k.rsplit(".", 1)[0] not in extra]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''}"] if unexpected else [])
        raise ValueError(f"--weights do not fit {net.name}: {'; '.join(parts)} "
                         f"(a state_dict of the module `resdsl compile` makes for this network is expected)")
    return module, gate_names, tap_names


def submodule(module, dotted: str):
    m = module
    for part in dotted.split("."):
        m = m._modules[part]
    return m


def load_weights(path):
    """The state_dict in file `path` (a dict of tensors, or {"state_dict": ...}); ValueError if it is none.
    None gives None, and an already loaded dict is returned as it is."""
    if path is None or isinstance(path, dict):
        return path
    import pickle

    import torch
    from ..loader import check_regular
    from .runtime import bad_weights

    why = bad_weights(path)
    if why:
        raise ValueError(why)
    check_regular(path)  # a FIFO or a directory: a diagnostic, not a hang (the CLI checked already)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"--weights {path}: not a torch.save file of tensors ({str(e).splitlines()[0][:120]})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ValueError(f"--weights {path}: holds a {type(sd).__name__}, not a state_dict (names -> tensors)")
    return sd


def _random_inputs(net, batch: int, gen):
    from ..backends.inputs import random_inputs
    return random_inputs(net, batch, generator=gen)  # token ids for `input ids: int[N]`


def _as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


ProgressFn = Callable[[str], None]


# ---------------------------------------------------------------- lesion study


@dataclass
class LesionRow:
    blocks: list[str]
    paths_left: int
    paths_total: int
    rel_change: float  # ||y_lesioned - y|| / ||y|| over all outputs


@dataclass
class LesionReport:
    network: str
    rows: list[LesionRow]

    def to_json(self) -> dict:
        return {"network": self.network,
                "lesions": [{"blocks": r.blocks, "paths_left": r.paths_left, "paths_total": r.paths_total,
                             "relative_output_change": r.rel_change} for r in self.rows]}


def lesion_study(net, sets: list[list[str]] | None = None, batch: int = 32, seed: int = 0, weights: str | None = None,
                 inputs=None, progress: ProgressFn | None = None) -> LesionReport:
    """Delete each deletable branch alone (or each set in `sets` together) in eval mode, and report the
    relative change of the outputs on random N(0, 1) inputs (or `inputs`).  A deleted branch's merge
    input is replaced by zeros: its paths are gone, every parallel path stays."""
    import torch

    g = net.graph
    if sets is None:
        sets = [[b.name] for b in deletable(g)]
    units = {tuple(s): find_blocks(g, s) for s in sets}  # ValueError before anything is built
    gates = {(b.merge, b.slot) for us in units.values() for b in us}
    module, gate_names, _ = build_instrumented(net, gates, seed=seed, state_dict=load_weights(weights))
    module.eval()
    gen = torch.Generator().manual_seed(seed)
    xs = inputs if inputs is not None else _random_inputs(net, batch, gen)
    total = count_paths(g).total
    rows = []
    with torch.no_grad():
        ref = torch.cat([y.flatten() for y in _as_tuple(module(*xs))])
        for names, us in units.items():
            handles = [submodule(module, gate_names[(b.merge, b.slot)]).register_forward_hook(
                lambda m, i, o: torch.zeros_like(o)) for b in us]
            try:
                y = torch.cat([y.flatten() for y in _as_tuple(module(*xs))])
            finally:
                for h in handles:
                    h.remove()
            rel = float((y - ref).norm() / ref.norm()) if float(ref.norm()) else float((y - ref).norm())
            rows.append(LesionRow(list(names), paths_after_lesion(g, us).total, total, rel))
            if progress:
                progress(",".join(names))
    return LesionReport(net.name, rows)


# ---------------------------------------------------------------- effective paths (Veit et al. section 6)


@dataclass
class PathGradients:
    """Gradient reaching the inputs through single paths, by path length.

    magnitude[k]: mean over the measured paths of length k of the mean per-sample L2 norm of the
    input gradient when the backward pass runs along that path only; paths[k]: how many paths of
    length k the network has (exact); per_path[k]: the measured magnitudes, path by path."""

    length: str
    lengths: list[int]
    magnitude: dict[int, float]
    paths: dict[int, int]
    samples: int
    exhaustive: dict[int, bool] = field(default_factory=dict)  # every path of length k was measured
    per_path: dict[int, list[tuple[Path, float]]] = field(default_factory=dict, repr=False)

    def contribution(self, k: int) -> float:
        """Estimated total gradient through all paths of length k: magnitude x number of paths."""
        return self.magnitude[k] * self.paths.get(k, 0)

    def to_json(self) -> dict:
        return {"length": self.length, "samples": self.samples,
                "by_length": {str(k): {"magnitude": self.magnitude[k], "paths": self.paths.get(k, 0),
                                       "contribution": self.contribution(k), "measured": len(self.per_path.get(k, [])),
                                       "exhaustive": self.exhaustive.get(k, False),
                                       "per_path": [m for _, m in self.per_path.get(k, [])]}
                              for k in self.lengths}}

    def table_lines(self) -> list[str]:
        out = [f"effective paths: gradient at the input through single paths of length k ({self.length})",
               f"{'k':>4}  {'paths':>12}  {'measured':>8}  {'|grad| per path':>15}  {'total contribution':>18}"]
        for k in self.lengths:
            n = len(self.per_path.get(k, []))
            out.append(f"{k:>4}  {_fmt_count(self.paths.get(k, 0)):>12}  {n:>7}{'*' if self.exhaustive.get(k) else ' '}"
                       f"  {self.magnitude[k]:15.4e}  {self.contribution(k):18.4e}")
        out.append("(* every path of that length measured; otherwise a uniform sample of them)")
        return out


def _fmt_count(n: int) -> str:
    return f"{n:,}" if n < 10 ** 12 else f"{float(n):.4e}"


class _PathRouter:
    """Gates on every input slot of every node with several inputs; `route(path)` detaches (in the forward
    pass, so only the backward pass changes) every gate not on the path: the gradient then flows along that
    path alone, and is the product of the local Jacobians along it (the chain rule's term for the path)."""

    def __init__(self, net, seed: int, state_dict):
        g = net.graph
        gates = {(n.id, s) for n in g.nodes if len(n.inputs) > 1 for s in range(len(n.inputs))}
        self.module, self.names, _ = build_instrumented(net, gates, seed=seed, state_dict=state_dict)
        self.outputs = list(g.outputs)
        self.inputs = list(g.inputs)
        self.open: set[str] | None = None
        for name in self.names.values():
            submodule(self.module, name).register_forward_hook(
                lambda m, i, o, name=name: o if self.open is None or name in self.open else o.detach())

    def route(self, path: Path | None) -> None:
        """Let the gradient through `path` only (None: everything open)."""
        self.open = None if path is None else {self.names[e] for e in path.edges if e in self.names}

    def input_grad(self, xs, targets, path: Path | None):
        """d(0.5 * ||y - t||^2)/dx with the current routing: for a path, the loss of its output and the
        gradient at its input; for None, all outputs' losses and the first input."""
        import torch

        xs = [x.clone().requires_grad_(True) for x in xs]
        ys = _as_tuple(self.module(*xs))
        if path is None:
            loss = sum(0.5 * ((y - t) ** 2).sum() for y, t in zip(ys, targets))
            x = xs[0]
        else:
            k = self.outputs.index(path.output)
            loss = 0.5 * ((ys[k] - targets[k]) ** 2).sum()
            x = xs[self.inputs.index(path.input)]
        (grad,) = torch.autograd.grad(loss, [x], allow_unused=True)
        return grad if grad is not None else torch.zeros_like(x)


def path_gradients(net, weights: str | None = None, samples: int = 32, batch: int = 16, seed: int = 0,
                   progress: ProgressFn | None = None, lengths: list[int] | None = None, train_mode: bool = False,
                   length: str = "blocks") -> PathGradients:
    """For each path length k, measure the input gradient along single paths of length k: all of them when
    there are at most `samples`, else `samples` drawn uniformly from the graph's real paths of that length
    (`PathSampler`).  The loss is 0.5 * ||y - t||^2 with fixed random targets t; the forward pass is never
    changed, and every other edge is detached in the backward pass."""
    import torch

    if samples < 1:
        raise ValueError("--samples must be at least 1")
    sampler = PathSampler(net.graph, length)
    counts = count_paths(net.graph, length).by_length
    ks = sorted(counts) if lengths is None else [k for k in lengths if counts.get(k)]
    if not ks:
        raise ValueError("the network has no input->output path of the requested lengths")
    router = _PathRouter(net, seed, load_weights(weights))
    router.module.train(train_mode)
    gen = torch.Generator().manual_seed(seed)
    xs = _random_inputs(net, batch, gen)
    with torch.no_grad():
        targets = [torch.randn(y.shape, generator=gen) for y in _as_tuple(router.module(*xs))]
    rng = random.Random(seed)
    magnitude: dict[int, float] = {}
    per_path: dict[int, list[tuple[Path, float]]] = {}
    exhaustive: dict[int, bool] = {}
    for k in ks:
        exhaustive[k] = counts[k] <= samples
        chosen = sampler.all(k) if exhaustive[k] else [sampler.sample(k, rng) for _ in range(samples)]
        vals = []
        for p in chosen:
            router.route(p)
            grad = router.input_grad(xs, targets, p)
            vals.append((p, float(grad.flatten(1).norm(dim=1).mean())))
        per_path[k] = vals
        magnitude[k] = sum(v for _, v in vals) / len(vals)
        if progress:
            progress(f"length {k}")
    return PathGradients(length, ks, magnitude, {k: counts[k] for k in ks}, samples, exhaustive, per_path)
