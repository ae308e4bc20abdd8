"""Transformers as residual networks (issue 15): examples/vit.res against torchvision's VisionTransformer,
examples/gpt2.res against a hand-written PyTorch GPT-2 below, attention counts against the counting tools,
and the path analysis of 2L residual blocks.

References are independent of resdsl: torchvision's models (state_dict loaded with strict=True, outputs
compared), a GPT-2 written out here with nn.Embedding/nn.Linear and attention by hand (softmax(q k^T /
sqrt(d)) v with an explicit mask), torch's own parameter counts and FlopCounterMode on the meta device, and
fvcore / torchinfo run on the torchvision model.  Full-size models are only built on the meta device.
"""
from __future__ import annotations

import io
import math
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import resdsl
from resdsl import ResdslError
from resdsl.backends.inputs import random_inputs

torch.set_num_threads(1)
EX = Path(__file__).resolve().parent.parent / "examples"
SMALL_VIT = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10)


def vit(**cfg) -> resdsl.Network:
    names = {"num_layers": "layers", "num_heads": "heads", "hidden_dim": "width", "num_classes": "classes"}
    return resdsl.load(EX / "vit.res", **{names.get(k, k): v for k, v in cfg.items()})


def numel(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def randomize(m: nn.Module, seed: int = 0) -> None:
    """Non-trivial values everywhere (torchvision zero-initialises the class token and the head)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def meta_flops(model: nn.Module, *inputs) -> int:
    fc = FlopCounterMode(display=False)
    with fc:
        model(*inputs)
    return fc.get_total_flops()


# ----------------------------------------------------------------- ViT


@pytest.mark.parametrize("train", [False, True])
def test_small_vit_loads_torchvision_weights_and_agrees(train):
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    ref = VisionTransformer(**SMALL_VIT)
    randomize(ref)
    net = vit(**SMALL_VIT)
    model = net.to_torch(seed=0)
    assert list(model.state_dict()) == list(ref.state_dict())  # same keys, same order
    model.load_state_dict(ref.state_dict(), strict=True)
    assert net.param_count == numel(ref) == 24_234
    model.train(train), ref.train(train)  # dropout is 0: train mode differs only in MHA's fast path
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch,cfg,params", [
    ("vit_b_16", {}, 86_567_656),
    ("vit_l_16", dict(num_layers=24, num_heads=16, hidden_dim=1024, mlp_dim=4096), 304_326_632),
    ("vit_b_32", dict(patch_size=32), 88_224_232),
])
def test_full_size_vit_counts_keys_and_macs_on_meta(arch, cfg, params):
    import torchvision
    with torch.device("meta"):
        ref = getattr(torchvision.models, arch)()
    net = vit(**cfg)
    assert net.param_count == numel(ref) == params
    with torch.device("meta"):
        model = net.to_torch()
    sd, want = model.state_dict(), ref.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in want.items()}
    model.load_state_dict(want, strict=True)
    # FlopCounterMode on the meta device sees every matmul (projections and the two attention bmm's)
    flops = meta_flops(ref, torch.empty(1, 3, 224, 224, device="meta"))
    assert net.costs("torchvision").total * 2 == net.costs("torch").total == flops
    if arch == "vit_b_16":
        assert net.costs("torchvision").total == 17_563_828_224  # torchvision's model card: 17.56 GFLOPS


def test_vit_b_16_macs_split_into_projections_attention_and_mlp():
    """Per layer: 4 N D^2 (q, k, v, out projections) + 2 N^2 D (Q K^T, A V) + 2 N D M (MLP); N = 197."""
    net = vit()
    n, d, m = 197, 768, 3072
    per_layer = 4 * n * d * d + 2 * n * n * d + 2 * n * d * m
    patch = 196 * d * 3 * 16 * 16
    assert net.costs().total == patch + 12 * per_layer + d * 1000
    att = [c for c in net.costs().layers if c.name.endswith("self_attention")]
    assert len(att) == 12 and all(c.macs == 4 * n * d * d + 2 * n * n * d for c in att)


def test_small_vit_counting_conventions_match_fvcore_and_torchinfo():
    """fvcore counts the projections of nn.MultiheadAttention (its F.linear calls) but not SDPA;
    torchinfo's total leaves MultiheadAttention out (not a leaf; its out_proj is never called)."""
    from fvcore.nn import FlopCountAnalysis
    import torchinfo
    from torchvision.models.vision_transformer import VisionTransformer
    ref = VisionTransformer(**SMALL_VIT).eval()
    x = torch.randn(1, 3, 32, 32)
    net = vit(**SMALL_VIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = FlopCountAnalysis(ref, x)
        f.unsupported_ops_warnings(False)
        f.uncalled_modules_warnings(False)
        assert net.costs("fvcore").total == f.total()
        assert net.costs("torchinfo").total == torchinfo.summary(ref, input_data=x, verbose=0).total_mult_adds


@pytest.mark.parametrize("n,d,h,bias", [(5, 8, 2, True), (7, 12, 3, False), (7, 12, 4, True)])
def test_attention_macs_match_every_counter(n, d, h, bias):
    from fvcore.nn import FlopCountAnalysis
    import thop
    import torchinfo
    from ptflops import get_model_complexity_info

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.MultiheadAttention(d, h, bias=bias, batch_first=True)

        def forward(self, x):
            return self.a(x, x, x, need_weights=False)[0]

    net = resdsl.loads(f"network t() {{\n input x: [{n}, {d}]\n a: attention({h}, bias={str(bias).lower()})\n}}")
    ref = Wrap().eval()
    x = torch.randn(1, n, d)
    got = {c: net.costs(c).total for c in ("torchvision", "fvcore", "torchinfo", "thop", "ptflops")}
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        f = FlopCountAnalysis(ref, x)
        f.unsupported_ops_warnings(False)
        f.uncalled_modules_warnings(False)
        want = {"fvcore": f.total(), "torchinfo": torchinfo.summary(ref, input_data=x, verbose=0).total_mult_adds,
                "thop": int(thop.profile(ref, inputs=(x,), verbose=False)[0]),
                "ptflops": get_model_complexity_info(ref, (n, d), as_strings=False, print_per_layer_stat=False,
                                                     backend="pytorch")[0]}
    with torch.device("meta"):
        meta = Wrap()
    want["torchvision"] = meta_flops(meta, torch.empty(1, n, d, device="meta")) // 2
    assert got == want
    assert got["torchvision"] == 4 * n * d * d + 2 * n * n * d  # the closed form


# ----------------------------------------------------------------- GPT-2 (hand-written reference)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.c_attn, self.attn.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Module()
        self.mlp.c_fc, self.mlp.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def attention(self, x):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for t in self.attn.c_attn(x).split(d, dim=2))
        s = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        return self.attn.c_proj((s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, vocab=50257, context=1024, layers=12, heads=12, d=768):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


SMALL_GPT = dict(vocab=50, context=16, layers=2, heads=2, width=16)


def gpt2(tokens=12, **cfg) -> resdsl.Network:
    return resdsl.load(EX / "gpt2.res", tokens=tokens, **cfg)


def small_pair(tokens=12):
    ref = GPT2(SMALL_GPT["vocab"], SMALL_GPT["context"], SMALL_GPT["layers"], SMALL_GPT["heads"], SMALL_GPT["width"])
    randomize(ref, seed=3)
    model = gpt2(tokens, **SMALL_GPT).to_torch(seed=0).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    return model, ref.eval()


def test_small_gpt2_loads_the_reference_and_agrees():
    model, ref = small_pair()
    assert sorted(model.state_dict()) == sorted(ref.state_dict())  # lm_head.weight included, as torch saves it
    assert model.lm_head.weight is model.wte.weight  # tied after loading, too
    ids = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), ref(ids), rtol=1e-5, atol=1e-5)
    assert numel(model) == numel(ref) == gpt2(**SMALL_GPT).param_count


def test_gpt2_is_causal():
    """Changing token j changes no output before j, and does change the output at j."""
    model, _ = small_pair()
    ids = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = model(ids)
        for j in (0, 5, 11):
            other = ids.clone()
            other[0, j] = (ids[0, j] + 1) % 50
            z = model(other)
            torch.testing.assert_close(z[:, :j], y[:, :j], rtol=0, atol=0)
            assert (z[:, j] - y[:, j]).abs().max() > 1e-3


def test_gpt2_small_full_size_counts_and_macs_on_meta():
    net = gpt2(tokens=1024)
    with torch.device("meta"):
        ref = GPT2()
        model = net.to_torch()
    assert net.param_count == numel(ref) == numel(model) == 124_439_808  # the embedding counted once
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    flops = meta_flops(ref, torch.zeros(1, 1024, dtype=torch.long, device="meta"))
    assert net.costs("torch").total == flops == 2 * 145_824_153_600


def test_tied_weight_is_shared_and_trains_once():
    model, _ = small_pair()
    names = [k for k, _ in model.named_parameters()]
    assert "wte.weight" in names and "lm_head.weight" not in names  # parameters() yields it once
    ids = random_inputs(gpt2(**SMALL_GPT), 2)[0]
    assert ids.dtype == torch.long and int(ids.max()) < 50
    model(ids).sum().backward()
    assert model.wte.weight.grad is not None


# ----------------------------------------------------------------- errors are located


@pytest.mark.parametrize("body,code,where", [
    ("input x: [5, 12]\n a: attention(5)", "E035", "5)"),
    ("input x: [5, 24]\n sdpa(5)", "E035", "5)"),
    ("input x: [5, 20]\n sdpa(2)", "E035", "sdpa(2)"),
    ("input x: [3, 8, 8]\n a: attention(2)", "E033", "a: attention(2)"),
    ("input x: [5, 8]\n token(5)", "E014", "5)"),
    ("input x: [5, 8]\n pos_embedding(4)", "E014", "4)"),
    ("input x: [5, 8]\n embedding(10, 4)", "E033", "embedding(10, 4)"),
    ("input ids: int[5]\n relu", "E033", "relu"),
    ("input ids: int[5]\n e: embedding(10, 4)\n l: linear(10, pointwise=true, tie=\"f\")", "E018", "l: linear"),
    ("input ids: int[5]\n e: embedding(10, 4)\n l: linear(9, pointwise=true, tie=\"e\")", "E036", "l: linear"),
])
def test_bad_transformer_input_is_located(body, code, where):
    text = f"network t() {{\n {body}\n}}\n"
    with pytest.raises(ResdslError) as e:
        resdsl.loads(text)
    d = e.value.diagnostics[0]
    assert d.code == code, d.message
    line = text.splitlines()[d.span.line - 1]
    assert line[d.span.col - 1:].startswith(where), (line, d.span)
    assert d.hint


# ----------------------------------------------------------------- analyses


@pytest.mark.parametrize("layers", [1, 2, 3, 6])
def test_paths_through_a_transformer_are_binomial(layers):
    """2L residual blocks (attention and MLP per layer): 2^(2L) paths, C(2L, k) of them through k blocks."""
    net = vit(**{**SMALL_VIT, "num_layers": layers})
    p = net.paths("blocks")
    assert p.total == 2 ** (2 * layers)
    assert p.by_length == {k: math.comb(2 * layers, k) for k in range(2 * layers + 1)}


def _last_mlp_grad(norm: str, layers: int) -> tuple[float, float]:
    from resdsl.analysis.variance import variance_at_init
    net = resdsl.load(EX / "transformer_norms.res", norm=norm, layers=layers, tokens=8, width=32, heads=2)
    mlp = [p.param_grad for p in variance_at_init(net, batch=32, seeds=1).points if p.name.startswith("mlp")]
    assert len(mlp) == layers and all(math.isfinite(g) and g > 0 for g in mlp)
    return mlp[0], mlp[-1]


def test_variance_shows_the_pre_norm_post_norm_contrast():
    """Xiong et al. 2020, Theorem 1: at initialisation the gradient of the last layer's parameters does not
    shrink with depth in a post-norm transformer, but shrinks in a pre-norm one (~ 1/sqrt(L)); so the
    post/pre ratio at the last layer grows with depth.  (Fixed seeds: the figures are deterministic.)"""
    post3, pre3 = _last_mlp_grad("post", 3)[1], _last_mlp_grad("pre", 3)[1]
    post12, pre12 = _last_mlp_grad("post", 12)[1], _last_mlp_grad("pre", 12)[1]
    assert pre12 < 0.8 * pre3  # pre-norm: smaller at the top of a deeper stack
    assert post12 > 0.8 * post3  # post-norm: not
    assert post12 / pre12 > 1.3 * (post3 / pre3) and post12 > 1.5 * pre12


def test_variance_runs_on_token_ids_and_splits_parameters_by_block():
    """GPT-2's blocks are anonymous (`_: residual`): each block's gradient norm covers exactly its own layers."""
    from resdsl.analysis.variance import _block_layers, tap_points, variance_at_init
    net = gpt2(tokens=8, **{**SMALL_GPT, "context": 8})
    r = variance_at_init(net, batch=8)
    assert [p.name for p in r.points][1:] == ["h.0", "h.0#1", "h.1", "h.1#1"]
    assert all(math.isfinite(p.param_grad) and p.param_grad > 0 for p in r.points[1:])
    sets = [_block_layers(net.graph, i) for i, _ in tap_points(net.graph)[1][1:]]
    assert sets[0] >= {"h.0.ln_1", "h.0.attn.c_attn", "h.0.attn.c_proj"} and "h.0.ln_2" in sets[1]
    assert all(a.isdisjoint(b) for k, a in enumerate(sets) for b in sets[k + 1:])
