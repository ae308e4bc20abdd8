"""Small `torch.nn` helpers that compiled networks use, kept as ONE source string.

`SOURCE` is executed here (so `from resdsl.backends.modules import DropPath`
works) and is also pasted verbatim into every standalone file that
`resdsl compile -o model.py` writes -- one copy of the code, two uses.
It is our own fixed text; nothing from a .res file ever reaches it.

What is in it:
  check_params     the generated constructor's guard against other parameter values
  GhostBatchNorm   batch norm with statistics over virtual batches (Hoffer et al. 2017)
  DropPath         stochastic depth, per sample (Huang et al. 2016) = torchvision's StochasticDepth
  LayerNorm2d      LayerNorm over channels at every position (ConvNeXt, Liu et al. 2022)
  PosTable         add the first N rows of a position table [max_len, D] (GPT-2's wpe)
  tie_weight       share one module's .weight with another (GPT-2's lm_head and token embedding)
  causal_mask      the [N, N] mask of later tokens, for nn.MultiheadAttention(causal)
  crop_to_smallest center-crop tensors along a dim to the least size among them (concat(crop=true))
  sdpa             multi-head F.scaled_dot_product_attention on fused q|k|v tokens
  Sample           mu + exp(logvar / 2) * eps, the reparameterisation trick (Kingma & Welling 2014)
  ScalarScale      x * w, one learnable scalar w (SkipInit, De & Smith 2020)
  ScalarBias       x + b, one learnable scalar b (Fixup, Zhang et al. 2019)
  ZeroPad          option-A shortcut: subsample by stride, append zero channels
  init_weight      the weight initialisations of conv/linear layers (see pytorch.py)
  init_norm        gamma = 1 or 0, beta = 0, running statistics reset
"""
from __future__ import annotations

import linecache

SOURCE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


def tie_weight(root, path, source):
    """Weight tying: the module at `path` uses the `.weight` of the module at `source` (GPT-2's lm_head
    shares the token embedding); torch counts the shared tensor once in parameters()."""
    root.get_submodule(path).weight = root.get_submodule(source).weight


def causal_mask(x):
    """[N, N] boolean mask, True above the diagonal (a token must not attend to later ones)."""
    n = x.shape[1]
    return torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)


def sdpa(qkv, heads, causal, p, training):
    """Multi-head scaled dot-product attention on fused [B, N, 3D] q|k|v -> [B, N, D]."""
    t = qkv.unflatten(-1, (3, heads, -1)).permute(2, 0, 3, 1, 4)  # [3, B, heads, N, D / heads]: no shape
    y = F.scaled_dot_product_attention(t[0], t[1], t[2], dropout_p=p if training else 0.0, is_causal=causal)
    return y.transpose(1, 2).flatten(2)  # arithmetic or unpacking, so torch.fx traces it


def crop_to_smallest(xs, dim):
    """Center-crop every tensor of `xs` along `dim` to the least size among them, decided at run time: a
    concat(crop=true) where which input is the smaller changes with the input size (or whether it is equal
    does).  In eager mode that is slicing, views as a hand-written crop makes (inputs of the least size
    untouched).  Traced (torch.fx, torch.export, torch.compile, ONNX: the sizes are not plain ints) it is
    an index_select of one arange, so every result has the same symbolic size and torch.export needs no
    guard on which input is the smaller (a slice that is a no-op at one size and cuts at another makes
    it guard on that).  The offsets are (L - m) // 2, as in the straight-line crops.  The legacy ONNX
    exporter traces sizes as tensors, which torch.sym_min does not take: there the min is
    (a + b - |a - b|) // 2, which it records as shape arithmetic."""
    sizes = [x.shape[dim] for x in xs]
    if all(type(s) is int for s in sizes) and not torch.compiler.is_compiling():
        m = min(sizes)
        return [x if s == m else x[(slice(None),) * dim + (slice((s - m) // 2, (s - m) // 2 + m),)]
                for x, s in zip(xs, sizes)]
    m = sizes[0]
    for s in sizes[1:]:
        m = (m + s - abs(m - s)) // 2 if torch.jit.is_tracing() else torch.sym_min(m, s)
    r = torch.arange(m, device=xs[0].device)
    return [x.index_select(dim, r + (s - m) // 2) for x, s in zip(xs, sizes)]


def _as_tuple(v):
    if isinstance(v, (list, tuple)):
        return tuple(_as_tuple(x) for x in v)
    if isinstance(v, dict):
        return {k: _as_tuple(x) for k, x in v.items()}
    return v


def check_params(cls_name, compiled, given, extra=None):
    """Raise ValueError if a constructor argument differs from the compiled value."""
    given = dict(given)
    for name, value in (extra or {}).items():
        if name not in compiled:
            raise TypeError(f"{cls_name}() got an unexpected keyword argument {name!r}")
        given[name] = value
    for name, value in given.items():
        if _as_tuple(value) != _as_tuple(compiled[name]) or (type(value) is bool) != (type(compiled[name]) is bool):
            raise ValueError(
                f"{cls_name} was generated for {name}={compiled[name]!r}, not {value!r}: the code is specialised "
                f"to one configuration; regenerate it with `resdsl compile FILE --set {name}=VALUE`")


class GhostBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics come from virtual batches of
    `virtual_batch_size` samples (the running statistics are updated once per
    virtual batch).  Same parameters and buffers as nn.BatchNorm*d; in eval
    mode, or for batches no larger than a virtual batch, it is plain batch norm."""

    def __init__(self, num_features, virtual_batch_size, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.virtual_batch_size = virtual_batch_size

    def _check_input_dim(self, x):
        if not 2 <= x.dim() <= 5:
            raise ValueError(f"expected a 2D to 5D input (got {x.dim()}D input)")

    def forward(self, x):
        if not self.training or x.shape[0] <= self.virtual_batch_size:
            return super().forward(x)
        self._check_input_dim(x)
        momentum = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as in nn.BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
        else:
            momentum = 0.0
        parts = [F.batch_norm(c, self.running_mean, self.running_var, self.weight, self.bias, True,
                              momentum, self.eps) for c in x.split(self.virtual_batch_size)]
        return torch.cat(parts, 0)

    def extra_repr(self):
        return f"{super().extra_repr()}, virtual_batch_size={self.virtual_batch_size}"


class DropPath(nn.Module):
    """Stochastic depth: in training, zero the whole input of a sample ("row") or of the
    whole batch ("batch") with probability p and scale the kept ones by 1 / (1 - p);
    identity in eval.  The same draws as torchvision.ops.StochasticDepth(p, mode)."""

    def __init__(self, p, mode="row"):
        super().__init__()
        self.p = float(p)
        self.mode = str(mode)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        size = ((x.shape[0],) if self.mode == "row" else (1,)) + (1,) * (x.dim() - 1)
        mask = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(keep)  # torchvision's ops, in order
        if keep > 0.0:
            mask.div_(keep)
        return x * mask

    def extra_repr(self):
        return f"p={self.p}" + (f", mode={self.mode!r}" if self.mode != "row" else "")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (N, C, *spatial), at every position: torchvision's
    convnext LayerNorm2d (parameters `weight` and `bias` of shape [C])."""

    def forward(self, x):
        x = x.movedim(1, -1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


class PosTable(nn.Embedding):
    """A table of learned positions (GPT-2's wpe, key `weight` [max_len, D]); adds the first N rows."""

    def forward(self, x):
        return x + self.weight[: x.shape[1]]


class Sample(nn.Module):
    """The reparameterised sample of a VAE: mu + exp(logvar / 2) * eps, eps ~ N(0, 1) in training;
    in eval the mean mu (eval_mode "mean") or a sample as in training (eval_mode "sample")."""

    def __init__(self, eval_mode="mean"):
        super().__init__()
        self.eval_mode = str(eval_mode)

    def forward(self, mu, logvar):
        if not self.training and self.eval_mode == "mean":
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def extra_repr(self):
        return f"eval_mode={self.eval_mode!r}"


class ScalarScale(nn.Module):
    """x * weight with one learnable scalar `weight` (SkipInit: init 0)."""

    def __init__(self, init=1.0):
        super().__init__()
        self.init = float(init)
        self.weight = nn.Parameter(torch.tensor(self.init))

    def forward(self, x):
        return x * self.weight

    def reset_parameters(self):
        with torch.no_grad():
            self.weight.fill_(self.init)

    def extra_repr(self):
        return f"init={self.init}"


class ScalarBias(nn.Module):
    """x + bias with one learnable scalar `bias` (Fixup: init 0)."""

    def __init__(self, init=0.0):
        super().__init__()
        self.init = float(init)
        self.bias = nn.Parameter(torch.tensor(self.init))

    def forward(self, x):
        return x + self.bias

    def reset_parameters(self):
        with torch.no_grad():
            self.bias.fill_(self.init)

    def extra_repr(self):
        return f"init={self.init}"


class ZeroPad(nn.Module):
    """Option-A shortcut (He et al. 2016): x[:, :, ::s, ::s], then zero
    channels appended from `in_channels` up to `out_channels`.  No parameters."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.in_channels = int(in_channels)  # static, so tracing sees a constant pad width
        self.out_channels = int(out_channels)
        self.stride = tuple(int(s) for s in stride)

    def forward(self, x):
        if any(s != 1 for s in self.stride):
            x = x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in self.stride)]
        extra = self.out_channels - self.in_channels
        if extra:
            # F.pad lists dims last-first: nothing on the spatial dims, `extra` after the channels.
            x = F.pad(x, (0, 0) * len(self.stride) + (0, extra))
        return x

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def init_weight(module, how, gain=1.0):
    """Initialise a conv/linear weight (see the table in resdsl/backends/pytorch.py); biases become 0."""
    w = module.weight
    with torch.no_grad():
        if how == "default":
            if not isinstance(module, nn.Linear):  # conv: what torchvision's ResNet does
                nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
            # linear: keep torch's own default (kaiming_uniform_ with a=sqrt(5))
        elif how in ("he", "kaiming"):
            nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")
        elif how in ("xavier", "glorot"):
            nn.init.xavier_normal_(w)
        elif how == "zeros":
            nn.init.zeros_(w)
        elif how == "ones":
            nn.init.ones_(w)
        elif how == "normal":
            nn.init.normal_(w, 0.0, 0.01)
        else:
            raise ValueError(f"unknown init {how!r}")
        if gain != 1.0:
            w.mul_(gain)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def init_norm(module, how):
    """gamma = 1 ("ones") or 0 ("zeros", e.g. zero_init_last); beta = 0; batch norm's running statistics
    reset (mean 0, variance 1, no batches seen), as its constructor leaves them."""
    if hasattr(module, "reset_running_stats"):
        module.reset_running_stats()
    with torch.no_grad():
        if getattr(module, "weight", None) is not None:
            module.weight.fill_(0.0 if how == "zeros" else 1.0)
        if getattr(module, "bias", None) is not None:
            module.bias.zero_()
'''

_FILENAME = "<resdsl helpers>"
linecache.cache[_FILENAME] = (len(SOURCE), None, SOURCE.splitlines(True), _FILENAME)  # readable tracebacks
_namespace: dict = {"__name__": __name__}
exec(compile(SOURCE, _FILENAME, "exec"), _namespace)
# Names SOURCE defines at top level (its classes and functions); generated code must not reuse them.
EXPORTS = tuple(k for k, v in _namespace.items()
                if not k.startswith("_") and getattr(v, "__module__", None) == __name__ and callable(v))
globals().update({k: _namespace[k] for k in EXPORTS})
globals().update({k: _namespace[k] for k in ("torch", "nn", "F")})

__all__ = list(EXPORTS) + ["SOURCE", "EXPORTS", "source_for"]


def _definitions() -> tuple[str, list[tuple[str, str, frozenset[str]]]]:
    """SOURCE split into its import lines and its top-level definitions: (name, text, names it uses)."""
    import ast

    tree = ast.parse(SOURCE)
    lines = SOURCE.split("\n")
    imports = "\n".join(ast.get_source_segment(SOURCE, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    defs = []
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            first = min([n.lineno] + [d.lineno for d in n.decorator_list])
            uses = frozenset(x.id for x in ast.walk(n) if isinstance(x, ast.Name))
            defs.append((n.name, "\n".join(lines[first - 1:n.end_lineno]), uses))
    return imports, defs


def source_for(code: str) -> str:
    """The part of SOURCE that `code` (a generated network's classes) needs: the imports and the helper
    definitions it names, with the helpers those name in turn, in SOURCE's order -- a standalone file
    carries no code its network never runs."""
    import re

    imports, defs = _definitions()
    by_name = {name: uses for name, _, uses in defs}
    wanted = set(re.findall(r"[A-Za-z_]\w*", code)) & set(by_name)
    todo = list(wanted)
    while todo:
        for used in by_name[todo.pop()] & set(by_name):
            if used not in wanted:
                wanted.add(used)
                todo.append(used)
    return "\n\n\n".join([imports] + [text for name, text, _ in defs if name in wanted])
