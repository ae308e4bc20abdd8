"""Generate docs/zoo.md: the model zoo table (parameters, MACs, paths, depth, reference).

Reads the examples/*.res files through resdsl's static analyses only (no torch):
`Network.param_count`, `Network.costs()` (MACs, torchvision convention: conv and
linear multiply-accumulates, batch 1), `Network.paths()` (input->output paths
through the residual/dense structure, Veit et al.) and a longest-path count of
weighted layers (conv, transposed conv, linear) for the depth.  Writes
docs/zoo.md.  The reference column states what tests/test_zoo.py (and, for
torchvision layouts, tests/test_torchvision.py) compares against.

    .venv/bin/python docs/make_zoo.py          # rewrites docs/zoo.md
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402

# (title, file, network, parameters, reference and what the tests compare)
MODELS: list[tuple[str, str, str | None, dict, str]] = [
    ("ResNet-18", "resnet.res", None, {"depth": 18}, "torchvision resnet18 (11,689,512)"),
    ("ResNet-50", "resnet.res", None, {"depth": 50}, "torchvision resnet50 (25,557,032)"),
    ("ResNet-50-D", "resnet.res", None, {"depth": 50, "variant": "d"},
     "timm resnet50d: equal count, weights load strict, outputs equal"),
    ("ResNet-200-D", "resnet.res", None, {"depth": 200, "variant": "d"}, "timm resnet200d: equal count"),
    ("ResNet-v2-50 (pre-act)", "resnet_v2.res", None, {"depth": 50},
     "timm resnetv2_50: equal count, weights load strict, outputs equal"),
    ("ResNet-v2-101 (pre-act)", "resnet_v2.res", None, {"depth": 101}, "timm resnetv2_101: equal count"),
    ("ResNet-v2-200 (pre-act)", "resnet_v2.res", None, {"depth": 200}, "timm ResNetV2(layers=[3,24,36,3]): equal count"),
    ("CIFAR ResNet-20 (A)", "cifar_resnet.res", None, {"depth": 20}, "He et al. 2016 Table 6: 0.27M; closed form"),
    ("CIFAR ResNet-56 (A)", "cifar_resnet.res", None, {"depth": 56}, "Table 6: 0.85M; closed form"),
    ("CIFAR ResNet-110 (A)", "cifar_resnet.res", None, {"depth": 110}, "Table 6: 1.7M; closed form"),
    ("CIFAR ResNet-1202 (A)", "cifar_resnet.res", None, {"depth": 1202}, "Table 6: 19.4M; closed form"),
    ("CIFAR plain-56", "cifar_resnet.res", None, {"depth": 56, "plain": True}, "Table 6 (same count as ResNet-56)"),
    ("CIFAR ResNet-110 Fixup", "cifar_resnet.res", None, {"depth": 110, "scale": "fixup"},
     "Zhang et al. 2019; closed form, init checked"),
    ("Pre-act ResNet-164", "preact_cifar.res", None, {"depth": 164}, "He et al. 2016b: 1.7M; closed form"),
    ("Pre-act ResNet-1001", "preact_cifar.res", None, {"depth": 1001},
     "He et al. 2016b: 10.2M = our count without BN affine (10.18M); closed form"),
    ("WRN-28-10", "wrn.res", None, {"depth": 28, "k": 10},
     "Zagoruyko & Komodakis 2016: 36.5M; hand-written torch WRN (36,479,194)"),
    ("WRN-40-4", "wrn.res", None, {"depth": 40, "k": 4}, "paper: 8.9M; hand-written torch WRN"),
    ("U-Net", "unet.res", None, {}, "Ronneberger et al. 2015 fig. 1 (572->388); hand-written torch U-Net"),
    ("Stacked hourglass, 2 stacks", "hourglass.res", None, {"stacks": 2},
     "Newell et al. 2016 (authors' hg.lua); hand-written torch hourglass"),
    ("Stacked hourglass, 8 stacks", "hourglass.res", None, {"stacks": 8}, "hand-written torch hourglass"),
    ("ResNet VAE encoder", "resnet_vae.res", "encoder", {}, "hand-written torch encoder"),
    ("ResNet VAE decoder", "resnet_vae.res", "decoder", {}, "hand-written torch decoder"),
    ("Residual MLP (UDL 11.5)", "residual_mlp.res", None, {}, "UDL problem 11.5; closed form, forward = equations"),
    ("Residual MLP, scaled (UDL 11.6)", "residual_mlp.res", None, {"variant": "scaled"},
     "UDL problem 11.6; closed form, forward = equations"),
    ("Four residual blocks (UDL fig. 11.4)", "unravel4.res", None, {}, "UDL fig. 11.4: 16 paths, C(4,k) of length k"),
    ("DenseNet-121", "densenet.res", None, {"depth": 121}, "torchvision densenet121 (see its tests)"),
]

WEIGHTED = ("conv", "linear")


def depth(net: resdsl.Network) -> int:
    """Weighted layers on the longest input->output path (program order is topological)."""
    best: dict[int, int] = {}
    for n in net.nodes:
        here = 1 if n.family in WEIGHTED else 0
        best[n.id] = max((best[i] for i in n.inputs), default=0) + here
    return max(best[i] for i in net.graph.outputs.values())


def human(n: int) -> str:
    if n >= 10 ** 9:
        return f"{n / 1e9:.2f} G"
    if n >= 10 ** 6:
        return f"{n / 1e6:.2f} M"
    if n >= 10 ** 3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def paths_text(total: int) -> str:
    if total < 10 ** 6:
        return f"{total:,}"
    return f"{str(total)[0]}.{str(total)[1:3]}e{len(str(total)) - 1}"


def usage(file: str, network: str | None, params: dict) -> str:
    parts = [f"resdsl summary examples/{file}"]
    if network:
        parts.append(f"--network {network}")
    for k, v in params.items():
        parts.append(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}")
    return " ".join(parts)


def diagram(file: str, params: dict) -> str:
    """Pictures of this very row: docs/img/<stem><depth>_<level>.svg (or <stem>_<level>.svg)."""
    stem = Path(file).stem
    tag = f"{stem}{params.get('depth', '')}{params.get('variant', '') if params.get('variant') != 'b' else ''}_"
    hits = sorted((ROOT / "docs" / "img").glob(f"{tag}*.svg")) if (ROOT / "docs" / "img").is_dir() else []
    return ", ".join(f"[{p.stem[len(tag):]}](img/{p.name})" for p in hits) or "—"


def row(title: str, file: str, network: str | None, params: dict, ref: str) -> str:
    net = resdsl.load(ROOT / "examples" / file, network=network, **params)
    macs = net.costs().total
    outs = list(net.outputs.items())
    if len(outs) > 2 and len({v for _, v in outs}) == 1:   # e.g. one heatmap per hourglass stack
        out_text = f"{outs[0][0]} … {outs[-1][0]} {list(outs[0][1])}"
    else:
        out_text = "; ".join(f"{k} {list(v)}" for k, v in outs)
    shapes = "; ".join(f"{k} {list(v)}" for k, v in net.inputs.items()) + " → " + out_text
    return (f"| {title} | `{usage(file, network, params)}` | {shapes} | {net.param_count:,} | {human(macs)} | "
            f"{paths_text(net.paths().total)} | {depth(net)} | {ref} | {diagram(file, params)} |")


def main() -> None:
    lines = [
        "# Model zoo",
        "",
        "Every file in `examples/` is a short, parameterised `.res` program; this table is generated by",
        "`docs/make_zoo.py` (do not edit it by hand).  Columns: parameters (trainable, exactly as torch counts",
        "them), MACs per sample (torchvision convention: conv/linear multiply-accumulates, bias excluded;",
        "`Network.costs()`), input→output paths through the residual structure (`Network.paths()`, Veit et al.",
        "2016; each residual doubles the count), depth (weighted layers on the longest path), and the",
        "independent reference that `tests/test_zoo.py` checks the model against.",
        "",
        "| model | command | shapes (no batch) | params | MACs | paths | depth | reference (tested) | diagram |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for m in MODELS:
        if not (ROOT / "examples" / m[1]).exists():
            continue
        try:
            lines.append(row(*m))
        except resdsl.ResdslError as e:  # a file another part of the project is still writing
            print(f"skipping {m[0]}: {e}", file=sys.stderr)
        print(f"  {m[0]}", file=sys.stderr)
    lines += [
        "",
        "## Notes",
        "",
        "* `cifar_resnet.res` options: `shortcut` A (zero-pad, the paper's CIFAR choice), B (project on shape",
        "  change), C (always project); `plain=true` (no shortcuts); `norm` batch/none; `scale` none, sqrt_half",
        "  (branch × 1/√2), skipinit (learnable scalar from 0; use with `norm=none`), stable (branch × 1/√K for",
        "  K blocks), fixup (Fixup: no norm, scalar biases and multiplier, zero-init last conv and fc, other",
        "  convs He × K^(-1/2)).",
        "* Pre-activation blocks (std:blocks `preact_basic`, `preact_bottleneck`): when the shape changes, the",
        "  first BN-ReLU is shared by branch and 1x1 projection (as in the paper's code, WRN and timm).",
        "* Pre-act ResNet-1001: the paper prints 10.2M; our count is 10,327,706 with BatchNorm's γ/β and",
        "  10,178,490 without them, so the paper's figure appears to leave the BN parameters out.",
        "* `hourglass.res`: one output per stack (`output heatmap{i}`: heatmap0, heatmap1, ...);",
        "  the levels are one recursive block `hourglass_level(n, f)`, as in the paper; an assert checks the depth.",
        "  The paper gives no parameter count; the reference is the authors' Torch layout (nModules=1).",
        "* `resnet_vae.res` holds two networks (`--network encoder|decoder`): the sampling",
        "  z = μ + exp(logvar/2)·ε is not a layer.  The decoder's input z is `[latent, 1, 1]`.",
        "* `residual_mlp.res` `scaled` multiplies the whole sum x + f(x) by 1/√2 after each block, as problem",
        "  11.6 says (\"a normalization factor of 1/√2 after each residual block\").",
        "* The diagram column links `docs/img/<file stem>*.svg` when such files exist; rerun this script",
        "  after rendering diagrams.",
        "",
    ]
    (ROOT / "docs" / "zoo.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
