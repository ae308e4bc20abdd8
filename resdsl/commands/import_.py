"""resdsl import MODEL: a PyTorch module (torchvision/timm name or module:callable) -> a .res file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import EXIT_ERRORS, EXIT_USAGE, UsageError, parse_inputs

EPILOG = """examples:
  resdsl import resnet50 -o resnet50.res                  a torchvision (or timm) model, random weights
  resdsl import timm:resnet50d --input 3,160,160 -o r.res
  resdsl import mypkg.models:Net --input 1,28,28 -o net.res   your own module (called with no arguments)

The module is traced with torch.fx; repeated module classes become blocks, `x + f(x)` becomes
`residual { }`, growing concatenations `dense { }`. Layer names are the module's, so
`resdsl.compile("resnet50.res").load_state_dict(model.state_dict(), strict=True)` works.
Nothing is downloaded."""


def register(subs) -> None:
    p = subs.add_parser("import", help="write a PyTorch module (torchvision, timm, your own) as a .res file",
                        description="Trace a PyTorch module and write it as a readable .res file.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="torchvision/timm model name, torchvision:NAME, timm:NAME or package.module:callable")
    p.add_argument("--input", default="3,224,224", metavar="SHAPE",
                   help="input shape without the batch dimension (default 3,224,224)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: print)")
    p.add_argument("--name", help="network name in the file (default: from the model)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..importer import ImportProblem, convert_module, load_model
    from ..network import loads

    shape = parse_inputs([f"x={args.input}"])["x"]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in shape):
        raise UsageError(f"--input {args.input}: the module is traced at one size, so --input takes numbers: trace "
                         f"at a size it runs at (e.g. --input 3,224,224), then name the sizes in the written file's "
                         f"input (`input x: [3, H, W]`); `resdsl check FILE --sizes` lists them")
    name = args.name or args.model.rpartition(":")[2].replace(".", "_")
    if not name.isidentifier():
        print(f"resdsl import: error: --name {name!r} is not a network name", file=sys.stderr)
        return EXIT_USAGE
    sys.path.insert(0, "")  # module:callable from the current directory, as `python -m` would
    try:
        model = load_model(args.model).eval()  # traced as used for inference (GoogLeNet: no auxiliary heads)
        imported = convert_module(model, shape, name, args.model)
    except ImportProblem as e:
        print(f"resdsl import: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return EXIT_ERRORS
    text, unused = imported.text, imported.unused
    net = loads(text, name=args.output or "<import>")
    want = sum(p.numel() for p in model.parameters()) - sum(
        p.numel() for u in unused for p in model.get_submodule(u).parameters())
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    same = "the module's count" if net.param_count == want else f"but the module has {want:,}"
    out = ", ".join(f"{k}: {list(v)}" for k, v in net.outputs.items())
    print(f"{args.output or 'imported'}: {net.name} ({len(net.nodes)} ops, {net.param_count:,} params = {same}) "
          f"-> {out}", file=sys.stderr)
    if unused:
        print(f"note: not used by forward() and so not in the file: {', '.join(unused)} "
              "(load the state_dict with strict=False)", file=sys.stderr)
    return 0 if net.param_count == want else EXIT_ERRORS
