"""Lesions (Veit et al. 2016): delete residual branches, statically and on the compiled module.

Reads a `Network` (IR regions, path counts) and, for the dynamic parts, the
module `Network.to_torch` builds; writes reports.

Static: `deletable_blocks` lists the residual regions whose shortcut is the
identity (deleting their branch leaves a well-formed network);
`paths_after_lesion` counts the paths left after removing a set of branch
edges (for K identical blocks, deleting one halves the count).

Dynamic: `instrument` rebuilds the network with a one-parameter
`scalar_scale` "gate" (initialised to 1, so x * 1.0 == x exactly) inserted on
chosen merge slots and after chosen nodes, and loads the original weights
into it.  Gates are ordinary modules, so forward hooks on them can zero a
branch (lesion), detach it (cut the gradient in the backward pass only:
effective paths) or record activations and gradients (variance).  Only the
public API is used: a modified IR goes through `Network.to_torch`, and the
IR tells which gate belongs to which region.
"""
from __future__ import annotations

import itertools
import math
import random
import sys
from dataclasses import dataclass

from ..ir import Graph, Node, Region, Scope, freeze
from .paths import count_paths

# ---------------------------------------------------------------- static


def deletable_blocks(graph: Graph) -> list[Region]:
    """Residual regions with an identity shortcut: removing the branch keeps x -> x."""
    return [r for r in graph.regions if r.kind == "residual" and r.attrs.get("shortcut") == "identity"]


def find_blocks(graph: Graph, names: list[str] | None) -> list[Region]:
    """The deletable regions named in `names` (all of them for None); ValueError for an unknown name."""
    blocks = deletable_blocks(graph)
    if names is None:
        return blocks
    by_name = {r.name: r for r in blocks}
    missing = [n for n in names if n not in by_name]
    if missing:
        other = {r.name for r in graph.regions} - set(by_name)
        why = [f"{n!r} is a region without an identity shortcut" if n in other else f"no residual block {n!r}"
               for n in missing]
        raise ValueError("; ".join(why) + f" (deletable: {', '.join(sorted(by_name)) or 'none'})")
    return [by_name[n] for n in names]


def paths_after_lesion(graph: Graph, regions: list[Region], length: str = "blocks"):
    """Path counts with the branches of `regions` removed (their merge's branch slots dropped)."""
    removed = frozenset((r.merge, s) for r in regions for s in r.branch_slots)
    return count_paths(graph, length, removed)


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
    (its own init for `seed`, or `state_dict`)."""
    from ..network import Network

    g, gate_names, tap_names = instrument(net.graph, set(gates), set(taps))
    module = Network(g, net.source).to_torch(seed=seed)
    sd = state_dict if state_dict is not None else net.to_torch(seed=seed).state_dict()
    missing, unexpected = module.load_state_dict(sd, strict=False)
    extra = set(gate_names.values()) | set(tap_names.values())
    assert not unexpected and {k.rsplit(".", 1)[0] for k in missing} <= extra, (missing, unexpected)
    return module, gate_names, tap_names


def submodule(module, dotted: str):
    m = module
    for part in dotted.split("."):
        m = m._modules[part]
    return m


def load_weights(path: str | None):
    if path is None:
        return None
    import torch
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def _random_inputs(net, batch: int, gen):
    from ..backends.inputs import random_inputs
    return random_inputs(net, batch, generator=gen)  # token ids for `input ids: int[N]`


def _as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


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
                 inputs=None, progress: bool = False) -> LesionReport:
    """Delete each deletable block alone (or each set in `sets` together) in eval mode, and report the
    relative change of the outputs on random N(0, 1) inputs (or `inputs`)."""
    import torch

    g = net.graph
    if sets is None:
        sets = [[r.name] for r in deletable_blocks(g)]
    regions = {tuple(s): find_blocks(g, s) for s in sets}
    all_regions = {r.id: r for rs in regions.values() for r in rs}
    gates = {(r.merge, s) for r in all_regions.values() for s in r.branch_slots}
    module, gate_names, _ = build_instrumented(net, gates, seed=seed, state_dict=load_weights(weights))
    module.eval()
    gen = torch.Generator().manual_seed(seed)
    xs = inputs if inputs is not None else _random_inputs(net, batch, gen)
    total = count_paths(g).total
    rows = []
    with torch.no_grad():
        ref = torch.cat([y.flatten() for y in _as_tuple(module(*xs))])
        for k, (names, rs) in enumerate(regions.items()):
            handles = [submodule(module, gate_names[(r.merge, s)]).register_forward_hook(
                lambda m, i, o: torch.zeros_like(o)) for r in rs for s in r.branch_slots]
            try:
                y = torch.cat([y.flatten() for y in _as_tuple(module(*xs))])
            finally:
                for h in handles:
                    h.remove()
            rel = float((y - ref).norm() / ref.norm()) if float(ref.norm()) else float((y - ref).norm())
            rows.append(LesionRow(list(names), paths_after_lesion(g, rs).total, total, rel))
            if progress:
                print(f"\rlesion {k + 1}/{len(regions)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return LesionReport(net.name, rows)


# ---------------------------------------------------------------- effective paths (Veit et al. section 6)


@dataclass
class PathGradients:
    blocks: list[str]
    lengths: list[int]
    magnitude: dict[int, float]  # mean ||dL/dx|| per sample through paths of exactly k branches
    paths: dict[int, int]  # number of block-level paths of length k
    samples: int

    def contribution(self, k: int) -> float:
        return self.magnitude[k] * self.paths.get(k, 0)

    def to_json(self) -> dict:
        return {"blocks": self.blocks, "samples": self.samples,
                "by_length": {str(k): {"magnitude": self.magnitude[k], "paths": self.paths.get(k, 0),
                                       "contribution": self.contribution(k)} for k in self.lengths}}

    def table_lines(self) -> list[str]:
        out = ["effective paths: gradient magnitude at the input through paths of length k",
               f"{'k':>4}  {'mean |grad|':>12}  {'paths':>12}  {'total contribution':>18}"]
        for k in self.lengths:
            out.append(f"{k:>4}  {self.magnitude[k]:12.4e}  {float(self.paths.get(k, 0)):12.4e}  "
                       f"{self.contribution(k):18.4e}")
        return out


class _GradientRouter:
    """Gates on both slots of every residual merge; `route(S)` makes the backward pass go through the branch of
    the blocks in S only (their shortcut detached) and through the shortcut only elsewhere."""

    def __init__(self, net, regions: list[Region], seed: int, state_dict):
        gates = {(r.merge, s) for r in regions for s in range(len(net.graph.nodes[r.merge].inputs))}
        self.module, names, _ = build_instrumented(net, gates, seed=seed, state_dict=state_dict)
        self.regions = regions
        self.detached: set[str] = set()
        self.gate_of: list[tuple[list[str], list[str]]] = []  # per region: (branch gates, other gates)
        for r in regions:
            n_in = len(net.graph.nodes[r.merge].inputs)
            branch = [names[(r.merge, s)] for s in r.branch_slots]
            other = [names[(r.merge, s)] for s in range(n_in) if s not in r.branch_slots]
            self.gate_of.append((branch, other))
            for name in branch + other:
                submodule(self.module, name).register_forward_hook(
                    lambda m, i, o, name=name: o.detach() if name in self.detached else o)

    def route(self, chosen: set[int] | None) -> None:
        """chosen: indices of regions whose branch carries the gradient; None: everything open."""
        self.detached = set()
        if chosen is None:
            return
        for k, (branch, other) in enumerate(self.gate_of):
            self.detached.update(other if k in chosen else branch)

    def input_grad(self, xs, target_fn):
        """d(0.5 * ||y - t||^2)/dx for every network input, with the current routing."""
        import torch

        xs = [x.clone().requires_grad_(True) for x in xs]
        ys = _as_tuple(self.module(*xs))
        loss = sum(0.5 * ((y - t) ** 2).sum() for y, t in zip(ys, target_fn(ys)))
        grads = torch.autograd.grad(loss, xs, allow_unused=True)
        return [g if g is not None else x.new_zeros(x.shape) for g, x in zip(grads, xs)]


def path_gradients(net, weights: str | None = None, samples: int = 32, batch: int = 16, seed: int = 0,
                   progress: bool = False, lengths: list[int] | None = None, train_mode: bool = False
                   ) -> PathGradients:
    """For each k, sample `samples` sets of k residual blocks, let the backward pass go through exactly those
    branches (and only the shortcut elsewhere), and average the input gradient's L2 norm per sample.
    The loss is 0.5 * ||y - t||^2 with fixed random targets t; the forward pass is never changed."""
    import torch

    regions = [r for r in net.graph.regions if r.kind == "residual"]
    if not regions:
        raise ValueError("the network has no residual blocks")
    router = _GradientRouter(net, regions, seed, load_weights(weights))
    router.module.train(train_mode)
    gen = torch.Generator().manual_seed(seed)
    xs = _random_inputs(net, batch, gen)
    with torch.no_grad():
        targets = [torch.randn(y.shape, generator=gen) for y in _as_tuple(router.module(*xs))]
    rng = random.Random(seed)
    n = len(regions)
    ks = list(range(n + 1)) if lengths is None else lengths
    magnitude: dict[int, float] = {}
    for i, k in enumerate(ks):
        draws = [set(range(n))] if k == n else [set()] if k == 0 else [set(rng.sample(range(n), k))
                                                                       for _ in range(samples)]
        if k not in (0, n) and math.comb(n, k) <= samples:  # few enough subsets: take them all
            draws = [set(c) for c in itertools.combinations(range(n), k)]
        vals = []
        for s in draws:
            router.route(s)
            gs = router.input_grad(xs, lambda ys: targets)
            per_sample = torch.sqrt(sum((g.flatten(1) ** 2).sum(1) for g in gs))
            vals.append(float(per_sample.mean()))
        magnitude[k] = sum(vals) / len(vals)
        if progress:
            print(f"\rgradient paths: length {k} ({i + 1}/{len(ks)})", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    # block-level paths: a path of length k chooses k of the n residual branches
    paths = {k: math.comb(n, k) for k in ks}
    return PathGradients([r.name for r in regions], ks, magnitude, paths, samples)
