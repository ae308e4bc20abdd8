"""Pre-norm vs post-norm at initialisation (Xiong et al. 2020): per-layer parameter gradient norms.

    PYTHONPATH=. .venv/bin/python bench/transformer_norms.py [docs/img/transformer_norms.png]

Runs `resdsl.analysis.variance.variance_at_init` on examples/transformer_norms.res (width 64, 16 tokens,
4 heads, xavier-initialised MLPs, batch 128, 2 seeds) for L = 3, 6, 12, 24 layers and both placements of
the norm; prints the gradient norm of the first and last MLP block's parameters and plots, per layer, the
MLP blocks' gradient norms at L = 12 and the last block's against L.
"""
from __future__ import annotations

import sys
from pathlib import Path

import resdsl
from resdsl.analysis.variance import variance_at_init

ROOT = Path(__file__).resolve().parent.parent
DEPTHS = (3, 6, 12, 24)


def mlp_norms(norm: str, layers: int) -> list[float]:
    net = resdsl.load(ROOT / "examples" / "transformer_norms.res", norm=norm, layers=layers)
    return [p.param_grad for p in variance_at_init(net, batch=128, seeds=2).points if p.name.startswith("mlp")]


def main(out: str | None) -> None:
    runs = {(n, L): mlp_norms(n, L) for n in ("post", "pre") for L in DEPTHS}
    print(f"{'norm':<5} {'L':>3}  {'first MLP':>10}  {'last MLP':>10}  {'last/first':>10}")
    for (n, L), g in runs.items():
        print(f"{n:<5} {L:>3}  {g[0]:10.1f}  {g[-1]:10.1f}  {g[-1] / g[0]:10.3f}")
    if out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        for n in ("post", "pre"):
            a.plot(range(1, 13), runs[(n, 12)], marker=".", label=f"{n}-norm")
            b.plot(DEPTHS, [runs[(n, L)][-1] for L in DEPTHS], marker="o", label=f"{n}-norm")
        a.set(xlabel="layer (L = 12)", ylabel="||dL/dθ|| of the MLP block", title="per layer")
        b.set(xlabel="layers L", ylabel="||dL/dθ|| of the last MLP block", title="last layer vs depth", xscale="log")
        for ax in (a, b):
            ax.legend()
        fig.suptitle("gradient norms at initialisation: post-norm vs pre-norm (Xiong et al. 2020)")
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
