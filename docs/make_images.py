"""Regenerate the pictures in docs/img/ (used by docs/rendering.md and the README).

    .venv/bin/python docs/make_images.py          # needs Graphviz's dot

Every picture is made through the public API (`resdsl.render.render`), so the
images are exactly what `resdsl render` produces.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402
from resdsl.render import render  # noqa: E402

OUT = ROOT / "docs" / "img"
EX = ROOT / "examples"

# One bottleneck block with a projection shortcut (ResNet-50's layer2.0), drawn op by op.
BOTTLENECK = """
import "std:blocks"
network bottleneck_block(planes = 128, stride = 2) {
    input x: [256, 56, 56]
    layer2: group { 0: bottleneck(planes, stride) }
    output y
}
"""


def picture(net, name: str, formats=("svg",), **opts) -> None:
    for fmt in formats:
        path = OUT / f"{name}.{fmt}"
        render(net, path, **opts)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    r18 = resdsl.load(EX / "resnet.res", depth=18)
    picture(r18, "resnet18_block", ("svg", "png"), level="block")
    picture(r18, "resnet18_network", level="network", rankdir="LR")
    picture(resdsl.load(EX / "resnet.res", depth=152), "resnet152_block", level="block")
    picture(resdsl.loads(BOTTLENECK, name="bottleneck.res"), "bottleneck_layer", level="layer")
    dense = EX / "densenet.res"
    if dense.exists():
        picture(resdsl.load(dense, depth=121), "densenet121_block", level="block")
    unet = resdsl.load(EX / "unet.res")
    picture(unet, "unet_block", level="block")
    picture(unet, "unet_network", level="network")
    picture(resdsl.load(EX / "unravel4.res"), "unravel4_unraveled", ("svg", "png"), level="unraveled")
    picture(unet, "unet_unraveled", level="unraveled")  # docs/paths.md: 5 paths, lengths 0-4
    picture(resdsl.load(EX / "cifar_resnet.res", depth=110), "cifar_resnet110_unraveled", level="unraveled")
    # one block-level picture per zoo family, named <file stem><depth>_block as docs/make_zoo.py links them
    picture(resdsl.load(EX / "resnet.res", depth=50), "resnet50_block", level="block")
    picture(resdsl.load(EX / "resnet_v2.res", depth=50), "resnet_v250_block", level="block")
    picture(resdsl.load(EX / "cifar_resnet.res", depth=20), "cifar_resnet20_block", level="block")
    picture(resdsl.load(EX / "preact_cifar.res", depth=164), "preact_cifar164_block", level="block")
    picture(resdsl.load(EX / "wrn.res", depth=28, k=10), "wrn28_block", level="block")
    picture(resdsl.load(EX / "hourglass.res", stacks=2), "hourglass_block", level="block")
    picture(resdsl.load(EX / "residual_mlp.res", blocks=4), "residual_mlp_block", level="block")
    # transformers: one ViT encoder layer (its two residual adds), one GPT-2 layer
    picture(resdsl.load(EX / "vit.res", layers=1), "vit_block", ("svg", "png"), level="block")
    picture(resdsl.load(EX / "gpt2.res", layers=1), "gpt2_block", level="block")
    for part in ("encoder", "decoder"):
        picture(resdsl.load(EX / "resnet_vae.res", network=part), f"resnet_vae_{part}_block", level="block")
    # the families of the last decade (tag: file stem, then depth or variant, as docs/make_zoo.py looks them up)
    picture(resdsl.load(EX / "seresnet.res", depth=50), "seresnet50_block", level="block")
    picture(resdsl.load(EX / "mobilenet_v2.res"), "mobilenet_v2_block", level="block")
    picture(resdsl.load(EX / "efficientnet.res", variant="b0"), "efficientnetb0_block", level="block")
    picture(resdsl.load(EX / "convnext.res", variant="tiny"), "convnexttiny_block", level="block")
    picture(resdsl.load(EX / "res2net.res"), "res2net_block", level="block")


if __name__ == "__main__":
    main()
