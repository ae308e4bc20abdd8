"""Activations and elementwise functions: torch.nn activation modules in the generated code, as torchvision writes them."""
from __future__ import annotations

from .base import (ArgProblem, Expr, Family, Module, OpDef, Param, Saves, Spatial, const_label, costs, fmt_num,
                   no_params, numel, out_numel, register, same, tdim, times)


def _act(name: str, module: str, label: str, saves: Saves, ptflops: int, doc: str, params: tuple = (),
         values=lambda a, xs: (), lbl=None, infer=same, thop=None, inplace: bool = False) -> OpDef:
    """An activation module (`module`, as torchvision writes them: hooks, torchinfo and ONNX names see it),
    built with `values(a, xs)` as keyword arguments; `inplace`: it may overwrite its input where the code
    generator proves that safe.  A `module` that is not `nn.<Name>` is a functional template instead.
    ptflops: 0, 1 or 2 x output elements (a module hook and/or a patched functional, see cost.py)."""
    def lower(a, xs, y):
        if not module.startswith("nn."):
            return Expr(module, values(a, xs))
        return Module(module, (), tuple(values(a, xs)), inplace=(("inplace", True),) if inplace else ())
    return OpDef(name, Family.ACT, params, infer, no_params,
                 costs(ptflops=times(ptflops, out_numel), resdsl=out_numel,
                       **({"thop": thop} if thop else {})),
                 saves, Spatial.POINT, lower, lbl or const_label(label), doc)


def _softmax_infer(a, xs):
    r = len(xs[0])
    if not -r <= a["dim"] < r:
        raise ArgProblem(f"softmax: `dim` must be a feature dim in [{-r}, {r - 1}] for input {list(xs[0])}, "
                         f"got {a['dim']}", arg="dim", hint="dims count the features only (0 = channels), not the batch")
    return xs[0]


def _softmax_thop(a, xs, y, p) -> int:
    f = xs[0][a["dim"]]
    return numel(xs[0]) // f * (3 * f - 1)


# inplace=True: the activations torchvision's models build with inplace=True (ReLU in ResNet, ReLU6 in MobileNetV2,
# SiLU in EfficientNet, Hardswish in MobileNetV3).  Where backward reads the input (ReLU6, SiLU, Hardswish),
# autograd keeps a copy of it in training, as it does for torchvision's; in eval nothing is allocated.
for _op in (
    _act("relu", "nn.ReLU", "ReLU", Saves.OUTPUT, 2, "relu activation", inplace=True),
    _act("gelu", "nn.GELU", "GELU", Saves.INPUT, 2, "gelu activation (approximate=\"tanh\": the tanh form)",
         (Param("approximate", "choice", "none", ("none", "tanh"), positional=False),),
         lambda a, xs: (("approximate", str(a["approximate"])),) if a["approximate"] != "none" else (),
         lbl=lambda a, y: "GELU" if a.get("approximate", "none") == "none" else "GELU (tanh)"),
    _act("silu", "nn.SiLU", "SiLU", Saves.INPUT, 1, "silu (swish) activation", inplace=True),
    _act("sigmoid", "nn.Sigmoid", "sigmoid", Saves.OUTPUT, 0, "sigmoid activation"),
    _act("tanh", "nn.Tanh", "tanh", Saves.OUTPUT, 0, "tanh activation"),
    _act("leaky_relu", "nn.LeakyReLU", "", Saves.INPUT, 1, "leaky_relu activation",
         (Param("negative_slope", "float", 0.01),), lambda a, xs: (("negative_slope", float(a["negative_slope"])),),
         lambda a, y: f"leaky ReLU {fmt_num(a.get('negative_slope', 0.01))}"),
    _act("elu", "nn.ELU", "ELU", Saves.INPUT, 2, "elu activation", (Param("alpha", "float", 1.0),),
         lambda a, xs: (("alpha", float(a["alpha"])),)),
    _act("softmax", "nn.Softmax", "softmax", Saves.OUTPUT, 1,
         "softmax over feature dim `dim` (0 = channels)", (Param("dim", "int", 0),),
         lambda a, xs: (("dim", tdim(int(a["dim"]))),), infer=_softmax_infer, thop=_softmax_thop),
    # nn.ReLU6 has a ptflops module hook (its forward calls F.hardtanh, which is not patched)
    _act("relu6", "nn.ReLU6", "ReLU6", Saves.INPUT, 1, "min(max(x, 0), 6) (MobileNetV2)", inplace=True),
    _act("hardswish", "nn.Hardswish", "h-swish", Saves.INPUT, 0, "x * relu6(x + 3) / 6 (MobileNetV3)", inplace=True),
    _act("hardsigmoid", "nn.Hardsigmoid", "h-sigmoid", Saves.INPUT, 0, "relu6(x + 3) / 6 (MobileNetV3 gates)"),
    _act("mish", "nn.Mish", "Mish", Saves.INPUT, 0, "x * tanh(softplus(x))"),
    _act("exp", "torch.exp({x})", "exp", Saves.OUTPUT, 0, "elementwise exponential"),
    _act("softplus", "nn.Softplus", "softplus", Saves.INPUT, 0, "log(1 + exp(beta * x)) / beta",
         (Param("beta", "float", 1.0), Param("threshold", "float", 20.0)),
         lambda a, xs: (("beta", float(a["beta"])), ("threshold", float(a["threshold"])))),
):
    register(_op)
