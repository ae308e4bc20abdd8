"""PyTorch -> .res: trace an `nn.Module` and write it as a readable, formatted .res file.

Reads a torch module and an input shape; writes .res text (`import_module`).
Four steps, one module each, data flowing one way:

1. trace.py: `torch.fx` with every module that has a resdsl op kept as a leaf,
   shapes recorded by running the traced graph once; each node becomes an `Op`
   (resdsl op, arguments, module path, tensor inputs) or an `ImportProblem`
   naming the module and its class;
2. structure.py: residual (identity, torchvision's projection, or a custom
   shortcut), dense and parallel regions found with immediate dominators;
3. write.py: the module tree as labelled groups (so the module's state_dict keys
   are the .res layer names), repeated module classes as blocks with
   parameters, runs of calls as `for` loops;
4. `resdsl fmt`'s formatter lays the text out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..fmt import format_source
from .structure import Structurer
from .trace import ImportProblem, check_supported, convert, fx_trace, load_model, module_rules, shapes_of
from .write import KEYWORDS, blocks, items, render

__all__ = ["import_module", "convert_module", "Imported", "load_model", "ImportProblem"]


@dataclass(frozen=True)
class Imported:
    text: str  # the formatted .res file
    unused: tuple[str, ...]  # submodules with weights that the traced forward() never applies


def import_module(model, input_shape: tuple[int, ...], name: str = "imported", origin: str = "") -> str:
    """A formatted .res file for `model` on inputs of `input_shape` (no batch dimension); see `convert_module`."""
    return convert_module(model, input_shape, name, origin).text


def convert_module(model, input_shape: tuple[int, ...], name: str = "imported", origin: str = "") -> Imported:
    """The .res file for `model`, and what of it is not in the file.

    Raises `ImportProblem` (naming the module) for what cannot be written.  Submodules with weights that
    the traced forward does not use (in the module's current train/eval mode, e.g. GoogLeNet's auxiliary
    heads in eval mode) are not in the file; its header comment names them."""
    import torch
    rules = module_rules()
    gm = fx_trace(model, tuple(rules))
    check_supported(gm, model)
    try:
        shapes = shapes_of(gm, tuple(input_shape))
    except Exception as e:  # the module itself fails on this input
        raise ImportProblem(f"the module fails on an input of shape {[1, *input_shape]}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            "give the input shape the module expects with --input C,H,W") from None
    ops, ids = convert(gm, model, shapes)
    inputs = [o for o in ops if o.op == "input"]
    if len(inputs) != 1:
        raise ImportProblem(f"the module takes {len(inputs)} tensor inputs; import supports one")
    result = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if not isinstance(result, torch.fx.Node) or result.name not in ids:
        raise ImportProblem("the module returns several tensors or a container; import supports one tensor")
    last = ids[result.name]
    top = items(Structurer(ops).sequence(inputs[0].id, last))
    containers = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)
    classes = {path: type(m).__name__ for path, m in model.named_modules()
               if path and type(m) not in containers and type(m) not in rules}
    defs = blocks(top, classes)
    net = _ident(name)
    shape = ", ".join(str(d) for d in input_shape)
    unused = unused_modules(model, gm)
    lines = [f"# {origin or name}, imported by `resdsl import` from torch.fx's trace on a [{shape}] input.",
             "# Layer names are the module's, so its state_dict loads into the compiled network "
             + ("with strict=True." if not unused else "by name;"), *(
                 [f"# not used by forward() and so not here (load with strict=False): {', '.join(unused)}."]
                 if unused else []), ""]
    for d in defs:
        lines += [d, ""]
    lines += [f"network {net}() {{", f"    input x: [{shape}]"] + render(top, 1)
    lines += [f"    output {'logits' if ops[last].op == 'linear' else 'out'}", "}"]
    return Imported(format_source("\n".join(lines) + "\n", f"<import {net}>"), tuple(unused))


def unused_modules(model, gm) -> list[str]:
    """The outermost submodules whose parameters or buffers the traced graph never reads."""
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    read = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    prefixes = lambda k: [".".join(k.split(".")[:n]) for n in range(1, k.count(".") + 2)]
    keys = [k for k, _ in model.named_parameters()] + [k for k, _ in model.named_buffers()]
    covered = [k for k in keys if k in read or any(p in called for p in prefixes(k))]
    inside = {p for k in covered for p in prefixes(k)}  # scopes holding something the graph reads
    out: list[str] = []
    done = set(covered)
    for k in keys:  # in the module's order
        if k not in done:
            widest = next(p for p in prefixes(k) if p not in inside)
            if widest not in out:
                out.append(widest)
    return out


def _ident(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    return s if re.match(r"[A-Za-z_]", s) and s not in KEYWORDS else "net_" + s
