"""Activation and gradient variance at initialisation, block by block (UDL chapter 11.4-11.5).

Reads a `Network`; builds its module (its own init) with a tap (a
`scalar_scale` gate fixed at 1, see `lesion.instrument`) after the output
of every top-level residual block -- after the post-activation and a
constant `scale` of the sum when they follow -- or, for a network without
residual blocks, after every weighted layer.
Runs N(0, 1) inputs forward in training mode (batch norms use batch
statistics, as at the first step of training), the loss 0.5 * ||y - t||^2
with random N(0, 1) targets backward, and records at every tap the variance
of the activations and of the loss gradient (over batch and features).
With several seeds the variances are averaged (weights and inputs change).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .lesion import ProgressFn, _as_tuple, build_instrumented, submodule


@dataclass
class VariancePoint:
    name: str
    act_var: float
    grad_var: float
    param_grad: float = math.nan  # norm of the loss gradient w.r.t. the block's own parameters (Xiong et al. 2020)


@dataclass
class VarianceReport:
    network: str
    unit: str  # "block" or "layer"
    points: list[VariancePoint]
    batch: int
    seeds: int

    def to_json(self) -> dict:
        return {"network": self.network, "unit": self.unit, "batch": self.batch, "seeds": self.seeds,
                "points": [{"index": i, "name": p.name, "activation_variance": p.act_var,
                            "gradient_variance": p.grad_var,
                            "parameter_gradient_norm": None if math.isnan(p.param_grad) else p.param_grad}
                           for i, p in enumerate(self.points)]}

    def table_lines(self) -> list[str]:
        w = max([len(self.unit)] + [len(p.name) for p in self.points])
        out = [f"{'#':>3}  {self.unit:<{w}}  {'activation var':>14}  {'gradient var':>12}  {'param grad norm':>15}"]
        for i, p in enumerate(self.points):
            pg = "-" if math.isnan(p.param_grad) else f"{p.param_grad:.4e}"
            out.append(f"{i:>3}  {p.name:<{w}}  {p.act_var:14.4e}  {p.grad_var:12.4e}  {pg:>15}")
        return out

    def plot(self, path: str) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = list(range(len(self.points)))
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, values, title in ((axes[0], [p.act_var for p in self.points], "activation variance"),
                                  (axes[1], [p.grad_var for p in self.points], "gradient variance")):
            ax.plot(xs, values, marker=".")
            ax.set_yscale("log")
            ax.set_xlabel(self.unit)
            ax.set_title(title)
        fig.suptitle(f"{self.network}: variance at initialisation (batch {self.batch}, {self.seeds} seed(s))")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def tap_points(graph) -> tuple[str, list[tuple[int, str]]]:
    """("block", [(node id, block name)]) for the top-level residual blocks, else ("layer", weighted layers)."""
    nodes = graph.nodes
    blocks = [r for r in graph.regions if r.kind == "residual" and r.parent is None]
    if blocks:
        points = [(blocks[0].input, "input")]
        for r in blocks:
            out = r.merge
            nxt = out + 1  # the post-activation, if any, is created right after the add
            if r.attrs.get("post") and nxt < len(nodes) and nodes[nxt].inputs == (out,) and nodes[nxt].op == r.attrs["post"]:
                out = nxt
            # a constant scale of the whole sum right after the block (x + f(x)) / sqrt(2) belongs to it
            while out + 1 < len(nodes) and nodes[out + 1].op == "scale" and nodes[out + 1].inputs == (out,):
                out += 1
            points.append((out, r.name))
        return "block", points
    return "layer", [(n.id, n.name) for n in nodes if n.spec.weighted]


def variance_at_init(net, batch: int = 512, seeds: int = 1, seed: int = 0,
                     progress: ProgressFn | None = None) -> VarianceReport:
    """Variance of activations and loss gradients at every tap point, averaged over `seeds` inits."""
    import torch

    from ..backends.inputs import random_inputs

    unit, points = tap_points(net.graph)
    names = [_block_layers(net.graph, i) if unit == "block" and k else None for k, (i, _) in enumerate(points)]
    if not points:
        raise ValueError("the network has neither residual blocks nor weighted layers to measure")
    acts = [0.0] * len(points)
    grads = [0.0] * len(points)
    pgrads = [0.0] * len(points)
    for s in range(seed, seed + seeds):
        module, _, taps = build_instrumented(net, taps={i for i, _ in points}, seed=s)
        module.train()
        seen: dict[int, object] = {}

        def keep(i):
            def hook(m, inp, out):
                out.retain_grad()
                seen[i] = out
            return hook

        for i, _ in points:
            submodule(module, taps[i]).register_forward_hook(keep(i))
        gen = torch.Generator().manual_seed(10_000 + s)
        xs = random_inputs(net, batch, generator=gen)  # token ids for `input ids: int[N]`
        ys = _as_tuple(module(*xs))
        targets = [torch.randn(y.shape, generator=gen) for y in ys]
        loss = sum(0.5 * ((y - t) ** 2).sum() for y, t in zip(ys, targets))
        loss.backward()
        for k, (i, _) in enumerate(points):
            t = seen[i]
            acts[k] += float(t.detach().double().var(unbiased=False)) / seeds
            g = t.grad
            grads[k] += (float(g.double().var(unbiased=False)) if g is not None else math.nan) / seeds
            pgrads[k] += _param_grad_norm(module, names[k]) / seeds
        if progress:
            progress(f"seed {s}")
    return VarianceReport(net.name, unit, [VariancePoint(name, a, g, pg) for (_, name), a, g, pg
                                           in zip(points, acts, grads, pgrads)], batch, seeds)


def _block_layers(graph, out: int) -> frozenset[str] | None:
    """Qualified names of the layers in the residual block whose sum is node `out` (branches and shortcut)."""
    r = next((r for r in graph.regions if r.merge == out), None)
    if r is None:
        return None
    ids = [i for b in r.branches for i in b] + list(r.shortcut)
    return frozenset(graph.nodes[i].name for i in ids)


def _param_grad_norm(module, layers: frozenset[str] | None) -> float:
    """||dL/dθ|| over the parameters of `layers` -- a layer's own (`conv.weight`, `attention.out_proj.bias`)
    or, for a bare parameter, the layer itself (`layer_scale`); nan for none, e.g. the input point."""
    if not layers:
        return math.nan
    sq = [float(p.grad.double().pow(2).sum()) for n, p in module.named_parameters()
          if p.grad is not None and _owned(n, layers)]
    return math.sqrt(sum(sq)) if sq else math.nan


def _owned(param: str, layers: frozenset[str]) -> bool:
    parts = param.split(".")
    return any(".".join(parts[:k]) in layers for k in range(1, len(parts) + 1))
