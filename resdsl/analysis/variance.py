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

from .. import progress as progress_line
from .lesion import _as_tuple, build_instrumented, submodule


@dataclass
class VariancePoint:
    name: str
    act_var: float
    grad_var: float


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
                            "gradient_variance": p.grad_var} for i, p in enumerate(self.points)]}

    def table_lines(self) -> list[str]:
        w = max([len(self.unit)] + [len(p.name) for p in self.points])
        out = [f"{'#':>3}  {self.unit:<{w}}  {'activation var':>14}  {'gradient var':>12}"]
        for i, p in enumerate(self.points):
            out.append(f"{i:>3}  {p.name:<{w}}  {p.act_var:14.4e}  {p.grad_var:12.4e}")
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


def variance_at_init(net, batch: int = 512, seeds: int = 1, seed: int = 0, progress: bool = False) -> VarianceReport:
    import torch

    unit, points = tap_points(net.graph)
    if not points:
        raise ValueError("the network has neither residual blocks nor weighted layers to measure")
    acts = [0.0] * len(points)
    grads = [0.0] * len(points)
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
        xs = [torch.randn((batch,) + tuple(shape), generator=gen) for shape in net.inputs.values()]
        ys = _as_tuple(module(*xs))
        targets = [torch.randn(y.shape, generator=gen) for y in ys]
        loss = sum(0.5 * ((y - t) ** 2).sum() for y, t in zip(ys, targets))
        loss.backward()
        for k, (i, _) in enumerate(points):
            t = seen[i]
            acts[k] += float(t.detach().double().var(unbiased=False)) / seeds
            g = t.grad
            grads[k] += (float(g.double().var(unbiased=False)) if g is not None else math.nan) / seeds
        if progress:
            progress_line.draw(f"variance: seed {s - seed + 1}/{seeds}")  # on a terminal only
    if progress:
        progress_line.end()
    return VarianceReport(net.name, unit, [VariancePoint(name, a, g) for (_, name), a, g in zip(points, acts, grads)],
                          batch, seeds)
