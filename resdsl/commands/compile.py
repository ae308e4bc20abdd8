"""resdsl compile FILE: lower a network to PyTorch (standalone .py), ONNX or a torch.export archive.

Reads the .res file (through `load_from_args`), writes the files asked for;
with no output option the standalone source goes to stdout.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from ._common import ToolMissing, UsageError, add_common, load_from_args, print_json, status, wrote

EPILOG = """examples:
  resdsl compile examples/resnet.res --set depth=50 -o resnet50.py
  resdsl compile examples/densenet.res --set depth=121 --onnx densenet121.onnx
  resdsl compile examples/resnet.res --set depth=18 --export resnet18.pt2 --seed 0
  resdsl compile examples/unravel4.res > unravel4.py

The .py file needs only torch: `from resnet50 import Resnet; model = Resnet()`.
Its constructor accepts the network parameters only at the compiled values;
for another configuration compile again with --set NAME=VALUE.
--onnx and --export trace the module (initialised with --seed) on a zero input
of batch size --batch; the ONNX file has a dynamic batch dimension.  With
--dynamic-size the spatial dims of image inputs ([C, H, W], [C, D, H, W]) are
dynamic too (ONNX axes H, W...; torch.export Dim.AUTO, with the batch when
--batch is 2 or more), so one exported U-Net runs at every valid input size
(`resdsl check FILE --sizes` lists them):
  resdsl compile examples/unet.res --onnx unet.onnx --dynamic-size"""


def register(subs) -> None:
    p = subs.add_parser("compile", help="generate PyTorch code, or export to ONNX / torch.export",
                        description="Lower a network to a standalone PyTorch module (a .py file that imports only "
                                    "torch), an ONNX model or a torch.export program.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("-o", "--output", metavar="FILE.py", help="write the standalone PyTorch source here ('-': stdout)")
    p.add_argument("--onnx", metavar="FILE.onnx", help="export to ONNX (run through torch.onnx.export)")
    p.add_argument("--export", metavar="FILE.pt2", help="save a torch.export.ExportedProgram (torch.export.save)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="seed for the initial weights of exported models (default: torch's global RNG)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size of the example input (default 1)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset version (default 17)")
    p.add_argument("--dynamic-size", action="store_true",
                   help="--onnx/--export: the spatial dims of image inputs are dynamic, not only the batch")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def _progress(msg: str) -> None:
    status(f"resdsl compile: {msg}")


def run(args) -> int:
    # (the CLI has already refused output paths in missing directories, before any work)
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    if args.dynamic_size and not (args.onnx or args.export):
        raise UsageError("--dynamic-size applies to --onnx and --export only")
    to_stdout = args.output == "-" or not (args.output or args.onnx or args.export)
    if to_stdout and args.json:
        raise UsageError("--json reports written files: give -o FILE.py, --onnx or --export")
    net = load_from_args(args)
    if net.size_vars or net.symbols:  # say which concrete size the example tensors have
        at = ", ".join(f"{k}: [{', '.join(map(str, v))}]" for k, v in net.inputs.items())
        export = (" (add --dynamic-size to keep them dynamic in the export)"
                  if (args.onnx or args.export) and not args.dynamic_size else "")
        status(f"note: named sizes built at the example {at}; `resdsl check {args.file} --sizes` lists the "
               f"valid sizes{export}")
    written: dict[str, str] = {}
    if to_stdout or args.output:
        source = net.torch_source()
        if to_stdout:
            sys.stdout.write(source)
        else:
            try:
                Path(args.output).write_text(source)
            except OSError as e:
                raise UsageError(f"cannot write {args.output}: {e.strerror or e}")
            written["python"] = args.output
            wrote(args.output, f"{len(source.splitlines())} lines, {net.param_count:,} parameters")
    if args.onnx or args.export:
        try:
            import torch
        except ImportError:
            raise ToolMissing("--onnx/--export need PyTorch (pip install torch)")
        _progress("building the module")
        model = net.to_torch(seed=args.seed).eval()
        example = tuple(torch.zeros((args.batch,) + shape) for shape in net.inputs.values())
        if args.export:
            _progress("running torch.export")
            dynamic = None
            if args.dynamic_size:
                # one entry per forward argument: batch and spatial dims (torch specialises a size-1 example
                # dim, so the batch is dynamic only when --batch is 2 or more)
                dynamic = tuple({d: torch.export.Dim.AUTO for d in [0] + _spatial(shape)}
                                for shape in net.inputs.values())
            program = torch.export.export(model, example, dynamic_shapes=dynamic)
            buf = io.BytesIO()  # torch's archive writer aborts the process on a failing file: write it ourselves
            torch.export.save(program, buf)
            _write(args.export, buf.getvalue())
            written["export"] = args.export
            wrote(args.export)
        if args.onnx:
            code = _onnx(model, example, net, args)
            if code:
                return code
            written["onnx"] = args.onnx
            wrote(args.onnx)
    if args.json:
        print_json({"ok": True, "network": net.name, "written": written})
    return 0


def _onnx(model, example, net, args) -> int:
    import warnings

    import torch
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ToolMissing("--onnx needs the onnx package (pip install onnx)")
    _progress("running torch.onnx.export")
    names_in, names_out = list(net.inputs), list(net.outputs)
    with warnings.catch_warnings():
        # The TorchScript-based exporter works without onnxscript; torch marks it deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            torch.onnx.export(model, example, args.onnx, dynamo=False, opset_version=args.opset,
                              input_names=names_in, output_names=names_out,
                              dynamic_axes=_onnx_axes(net, args.dynamic_size))
        except OSError as e:  # its write error names no file
            raise UsageError(f"cannot write {args.onnx}: {e.strerror or e}")
    return 0


def _spatial(shape: tuple[int, ...]) -> list[int]:
    """The batched tensor's spatial dims of an image input [C, *spatial] (rank >= 3); none for other inputs."""
    return list(range(2, len(shape) + 1)) if len(shape) >= 3 else []


def _onnx_axes(net, sizes: bool) -> dict[str, dict[int, str]]:
    """ONNX dynamic axes: the batch of every input and output, and with `sizes` each image's spatial dims
    (named after the tensor: `x_H`, `x_W`; outputs too, since their sizes follow the input's)."""
    axes = {}
    for group in (net.inputs, net.outputs):
        for name, shape in group.items():
            spatial = _spatial(shape) if sizes else []
            labels = {2: "HW", 3: "DHW"}.get(len(spatial)) or [f"d{d}" for d in spatial]
            axes[name] = {0: "batch", **{d: f"{name}_{lab}" for d, lab in zip(spatial, labels)}}
    return axes


def _write(path: str, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}")
