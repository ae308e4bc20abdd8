"""resdsl paths FILE: exact path counts, the path-length histogram, and effective paths.

Static part (no torch): `resdsl.analysis.paths.count_paths`.  With
`--gradients` the compiled module is run and the gradient reaching the input
through paths of each length is estimated (`resdsl.analysis.lesion.path_gradients`).
"""
from __future__ import annotations

import argparse
import math
import sys

from ._common import EXIT_USAGE, add_common, load_from_args, positive_int, print_json, seed_int, wrote
from ..analysis.paths import fmt_big


def register(subs) -> None:
    p = subs.add_parser("paths", help="count input->output paths exactly; histogram of path lengths",
                        description="Count every input->output path of the network exactly (big integers) and "
                                    "show how path lengths are distributed. Length 'blocks' counts the branches a "
                                    "path enters (residual, dense and parallel branches, and the first operand of "
                                    "an add/concat of named tensors; Veit et al. 2016); 'layers' counts the "
                                    "conv/linear layers on it. docs/paths.md has the definitions.",
                        epilog="examples:\n  resdsl paths examples/cifar_resnet.res --set depth=110 --band 5:17\n"
                               "  resdsl paths examples/resnet.res --length layers --band 10:20\n"
                               "  resdsl paths examples/resnet.res --json > paths.json\n"
                               "  resdsl paths examples/resnet.res --plot hist.png\n"
                               "  resdsl paths chain.res --gradients --samples 64",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--length", choices=["blocks", "layers"], default="blocks",
                   help="how to measure a path: branches entered (default) or weighted layers")
    p.add_argument("--band", metavar="LO:HI", help="also report the share of paths with LO <= length <= HI")
    p.add_argument("--plot", metavar="OUT.png", help="save the histogram as an image (matplotlib)")
    p.add_argument("--gradients", action="store_true",
                   help="effective paths: gradient magnitude reaching the input per path length (runs the model)")
    p.add_argument("--weights", metavar="SD.pt", help="with --gradients: load this state_dict first")
    p.add_argument("--samples", type=positive_int, default=32, metavar="N",
                   help="with --gradients: paths measured per length, drawn uniformly when there are more "
                        "(default 32)")
    p.add_argument("--batch", type=positive_int, default=16, metavar="N", help="with --gradients: input batch size")
    p.add_argument("--seed", type=seed_int, default=0, help="with --gradients: random seed")
    p.add_argument("--train", action="store_true",
                   help="with --gradients: batch norms use batch statistics (training mode; default eval)")
    p.add_argument("--json", action="store_true", help="print one JSON object (exact integers)")
    p.set_defaults(func=run)


def _band(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    lo, sep, hi = text.partition(":")
    if not sep or not lo.strip().lstrip("-").isdigit() or not hi.strip().lstrip("-").isdigit():
        raise SystemExit(_usage(f"--band expects LO:HI with integers, got {text!r}"))
    return int(lo), int(hi)


def _usage(msg: str) -> int:
    print(f"resdsl paths: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0  # int / int is exact-rounded in Python, even for huge ints


def histogram_lines(by_length: dict[int, int], total: int, width: int = 50, max_rows: int = 40) -> list[str]:
    """A text bar chart; long histograms are grouped into at most `max_rows` length bins."""
    if not by_length:
        return ["(no paths)"]
    lo, hi = min(by_length), max(by_length)
    step = max(1, math.ceil((hi - lo + 1) / max_rows))
    bins: list[tuple[str, int]] = []
    for start in range(lo, hi + 1, step):
        end = min(hi, start + step - 1)
        c = sum(by_length.get(k, 0) for k in range(start, end + 1))
        bins.append((str(start) if step == 1 else f"{start}-{end}", c))
    peak = max(c for _, c in bins)
    wl = max([len("length")] + [len(b) for b, _ in bins])
    out = [f"{'length':>{wl}}  {'share':>7}  paths"]
    for label, c in bins:
        bar = "#" * max(1 if c else 0, round(width * _ratio(c, peak)))
        out.append(f"{label:>{wl}}  {100 * _ratio(c, total):6.2f}%  {bar} {fmt_big(c)}")
    return out


def plot_histogram(by_length: dict[int, int], total: int, path: str, title: str, grads=None) -> None:
    """The share of paths per length; with `grads` (effective paths) also the gradient magnitude and the
    total contribution per length, as in Veit et al.'s figure 6."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(by_length)
    panels = 1 if grads is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0][0]
    ax.bar(ks, [_ratio(by_length[k], total) for k in ks], width=1.0)
    ax.set_xlabel("path length")
    ax.set_ylabel("share of paths")
    ax.set_title(title)
    if grads is not None:
        ax = axes[0][1]
        ax.plot(grads.lengths, [grads.magnitude[k] for k in grads.lengths], marker=".")
        ax.set_yscale("log")
        ax.set_xlabel(f"path length ({grads.length})")
        ax.set_title("gradient magnitude per path")
        ax = axes[0][2]
        ax.plot(grads.lengths, [grads.contribution(k) for k in grads.lengths], marker=".")
        ax.set_xlabel(f"path length ({grads.length})")
        ax.set_title("total gradient contribution")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _before_loading(args) -> str | None:
    """Usage mistakes that need no network (checked before anything is built)."""
    from ..analysis.runtime import bad_weights

    if (args.weights or args.train) and not args.gradients:
        return f"{'--weights' if args.weights else '--train'} needs --gradients (the path counts do not depend on weights)"
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return "--plot needs matplotlib: pip install matplotlib"
    return bad_weights(args.weights) if args.gradients else None


def _gradients(net, args):
    """The effective-path measurement, its arguments checked before the module is built."""
    from ..analysis.lesion import load_weights, path_gradients
    from ..analysis.runtime import check_batch
    from ..progress import Progress

    too_big = check_batch(net.graph, args.batch, backward=True)
    if too_big:
        raise ValueError(too_big)
    sd = load_weights(args.weights)
    prog = Progress("gradient paths:", len(net.paths(args.length).by_length))
    try:
        return path_gradients(net, weights=sd, samples=args.samples, batch=args.batch, seed=args.seed,
                              progress=prog.step, length=args.length, train_mode=args.train)
    finally:
        prog.close()


def run(args) -> int:
    sys.set_int_max_str_digits(0)  # path counts of deep networks have thousands of digits
    band = _band(args.band)
    why = _before_loading(args)
    if why:
        return _usage(why)
    net = load_from_args(args)
    res = net.paths(args.length)
    grads = None
    if args.gradients:
        try:
            grads = _gradients(net, args)
        except ValueError as e:
            return _usage(str(e))
    if args.plot:
        plot_histogram(res.by_length, res.total, args.plot, f"{net.name}: paths by length ({args.length})", grads)
    if args.json:
        out = res.to_json(band)
        out["network"] = net.name
        if grads is not None:
            out["gradients"] = grads.to_json()
        print_json(out)
        return 0
    print(f"{net.name}: {fmt_big(res.total)} input->output paths (length = {args.length})")
    print(f"mean length {res.mean_length:.3f}, median {res.median_length}, longest {res.max_length}")
    if band:
        print(f"share with {band[0]} <= length <= {band[1]}: {100 * res.band_share(*band):.4f}%")
    print()
    print("\n".join(histogram_lines(res.by_length, res.total)))
    if grads is not None:
        print()
        print("\n".join(grads.table_lines()))
    if args.plot:
        wrote(args.plot)
    return 0
