"""resdsl expand FILE: the network with every parameter, loop and block call applied."""
from __future__ import annotations

import argparse

from ._common import add_common, load_from_args


def register(subs) -> None:
    p = subs.add_parser("expand", help="print the fully expanded network as flat .res text",
                        description="Print the network after every parameter, repetition and block call has been "
                                    "applied, as .res text with each line's origin. The output is itself a valid "
                                    ".res file that builds the same network.",
                        epilog="examples:\n  resdsl expand examples/resnet.res --set depth=18",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    print(load_from_args(args).expand(), end="")
    return 0
