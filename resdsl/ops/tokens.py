"""Token sequences: [N, D] tensors (N tokens of width D, batch implicit).

Token ids (`input ids: int[N]`) enter through `embedding`; a learnable class token is prepended and a
learnable position embedding added (torchvision's ViT keeps both as bare parameters whose state_dict keys
are the labels themselves, like `layer_scale`); `token` selects one token, `token_mean` pools over them.
`linear(..., pointwise=true)`, `layernorm(1)`, activations and dropout already act per token.
"""
from __future__ import annotations

from .base import (Parameter, ArgProblem, Expr, Family, Module, Param, Saves, ShapeProblem, Spatial, OpDef, const_label, costs,
                   no_params, numel, out_numel, own_params, pos, register)


def tokens(x, op: str) -> tuple[int, int]:
    """(N, D) of a token tensor, or a located shape problem."""
    if len(x) != 2:
        raise ShapeProblem("E033", f"{op} expects a token sequence [N, D] (N tokens of width D), got {list(x)}",
                           hint="make tokens from a feature map with `flatten(start_dim=1); transpose(0, 1)`, "
                                "or from token ids with `embedding(vocab, dim)`")
    return x[0], x[1]


# ----------------------------------------------------------------- embedding of token ids


def _emb_infer(a, xs):
    (x,) = xs
    if len(x) != 1:
        raise ShapeProblem("E033", f"embedding expects token ids [N], got {list(x)}",
                           hint="declare the input as `input ids: int[N]`")
    return x + (a["dim"],)


register(OpDef(
    "embedding", Family.LINEAR, (pos("vocab", "posint"), pos("dim", "posint"),
                                 Param("std", "float", 1.0, lo=0, positional=False)),
    _emb_infer, lambda a, xs, y: (a["vocab"] * a["dim"], 0),
    # a table lookup: no counter sees multiply-accumulates; torchinfo: its parameters (a leaf with `weight`)
    costs(torchinfo=own_params), Saves.NOTHING, Spatial.POINT,
    lambda a, xs, y: Module("nn.Embedding", (a["vocab"], a["dim"]), init="nn.init.normal_({m}.weight, std={std})",
                            init_args=(("std", float(a["std"])),), call="{m}({x})"),
    lambda a, y: f"embed {a['vocab']}→{a['dim']}", "token-id lookup table: int[N] ids -> [N, dim] (nn.Embedding)",
    ids=lambda a: a["vocab"], weight=lambda a, xs: (a["vocab"], a["dim"]), fresh_output=True))

# ----------------------------------------------------------------- class token, position embedding


def _cls_infer(a, xs):
    n, d = tokens(xs[0], "class_token")
    return (n + 1, d)


# torchvision vit: `class_token` nn.Parameter [1, 1, D], zeros, concatenated in front (torch.cat: no counter sees it)
register(OpDef(
    "class_token", Family.SCALE, (), _cls_infer, lambda a, xs, y: (xs[0][1], 0), costs(), Saves.NOTHING,
    Spatial.GLOBAL, lambda a, xs, y: Parameter((1, 1, xs[0][1]), "torch.cat([{p}.expand({x}.shape[0], -1, -1), {x}], dim=1)",
                                               "nn.init.zeros_({p})"),
    const_label("+ class token"),
    "prepend a learnable token: [N, D] -> [N+1, D]; its state_dict key is the label itself, shape [1, 1, D]"))


def _pos_infer(a, xs):
    n, d = tokens(xs[0], "pos_embedding")
    if a["max_len"] is not None and n > a["max_len"]:
        raise ArgProblem(f"pos_embedding: {n} tokens but a table of max_len={a['max_len']} positions", arg="max_len",
                         hint=f"use max_len >= {n}")
    return xs[0]


def _pos_count(a, xs, y):
    n, d = xs[0]
    return (a["max_len"] if a["max_len"] is not None else n) * d, 0


def _pos_lower(a, xs, y):
    n, d = xs[0]
    if a["max_len"] is None:  # torchvision: a bare parameter [1, N, D] named by the label
        return Parameter((1, n, d), "{x} + {p}", "nn.init.normal_({p}, std={std})", (("std", float(a["std"])),))
    # GPT-2's wpe: a table of max_len positions (nn.Embedding, key LABEL.weight); the first N rows are added
    return Module("PosTable", (a["max_len"], d), init="nn.init.normal_({m}.weight, std={std})",
                  init_args=(("std", float(a["std"])),))


register(OpDef(
    "pos_embedding", Family.SCALE, (pos("max_len", "posint", None), Param("std", "float", 0.02, lo=0,
                                                                          positional=False)),
    _pos_infer, _pos_count, costs(torchinfo=lambda a, xs, y, p: p if a["max_len"] is not None else 0, resdsl=out_numel),
    Saves.NOTHING, Spatial.POINT, _pos_lower, const_label("+ position embedding"),
    "add a learnable position embedding to [N, D] tokens: a parameter [1, N, D] keyed by the label (torchvision "
    "ViT), or with max_len a table [max_len, D] (LABEL.weight, GPT-2's wpe) whose first N rows are added"))

# ----------------------------------------------------------------- reading tokens out


def _token_infer(a, xs):
    n, d = tokens(xs[0], "token")
    if not -n <= a["index"] < n:
        raise ArgProblem(f"token: index {a['index']} is outside the {n} tokens", arg="index",
                         hint="0 is the first token (the class token after `class_token`), -1 the last")
    return (d,)


register(OpDef(
    "token", Family.RESHAPE, (Param("index", "int", 0),), _token_infer, no_params, costs(), Saves.NOTHING,
    Spatial.GLOBAL, lambda a, xs, y: Expr("{x}[:, {i}]", (("i", a["index"]),)),
    lambda a, y: f"token {a['index']}", "select one token: [N, D] -> [D] (x[:, index]; 0: the class token)"))
register(OpDef(
    "token_mean", Family.POOL, (), lambda a, xs: (tokens(xs[0], "token_mean")[1],), no_params,
    costs(resdsl=lambda a, xs, y, p: numel(xs[0])), Saves.NOTHING, Spatial.GLOBAL,
    lambda a, xs, y: Expr("{x}.mean(1)"), const_label("mean over tokens"),
    "average over the tokens: [N, D] -> [D] (x.mean(1))"))
