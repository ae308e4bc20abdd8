"""Compiled modules where users run them: autocast, channels_last, torch.compile
(no graph breaks), torch.export, ONNX (checked with onnxruntime), torch.jit.trace,
and CUDA (skipped without a GPU)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import resdsl
from resdsl.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent

# Small, but it uses every helper module: zero-pad and projection shortcuts, a learnable branch scale,
# drop-path, ghost batch norm, a dense concat and a cropped concat.
MIXED = """
network mixed(classes = 5) {
    input x: [3, 16, 16]
    stem: conv(8, 3, padding=1, bias=false)
    bn: ghost_batchnorm(4)
    relu
    b1: residual(shortcut="zeropad", scale="learnable", scale_init=0.5, drop_path=0.1, post="relu") {
        conv(16, 3, stride=2, padding=1)
        batchnorm()
        relu
        conv(16, 3, padding=1)
    }
    b2: residual(shortcut="project") {
        conv(24, 3, padding=1)
        scalar_bias(0.1)
    }
    d: dense { conv(8, 3, padding=1); gelu }
    -> t
    conv(8, 3)
    concat(t, crop=true)
    global_avgpool
    fc: linear(classes)
    output logits
}
"""


@pytest.fixture(scope="module")
def mixed():
    return resdsl.loads(MIXED).to_torch(seed=0).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_autocast_bfloat16_cpu(mixed, x):
    with torch.no_grad():
        ref = mixed(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = mixed(x)
    assert y.dtype == torch.bfloat16  # the linear layer ran in bf16
    assert (y.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_channels_last(mixed, x):
    m = resdsl.loads(MIXED).to_torch(seed=0).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        y = m(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(y, mixed(x), rtol=1e-4, atol=1e-5)
    assert m.get_submodule("stem").weight.is_contiguous(memory_format=torch.channels_last)


def test_torch_compile_fullgraph_without_graph_breaks(mixed, x):
    explanation = torch._dynamo.explain(mixed)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compiled = torch.compile(mixed, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), mixed(x))
    train = resdsl.loads(MIXED).to_torch(seed=0).train()  # drop-path and ghost BN take their training paths
    assert torch._dynamo.explain(train)(torch.randn(8, 3, 16, 16)).graph_break_count == 0
    torch._dynamo.reset()


def test_torch_export(mixed, x):
    program = torch.export.export(mixed, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), mixed(x))


def test_jit_trace(mixed, x):
    with torch.no_grad():
        traced = torch.jit.trace(mixed, (x,))
        torch.testing.assert_close(traced(x), mixed(x))


def test_onnx_export_runs_in_onnxruntime(tmp_path, x):
    ort = pytest.importorskip("onnxruntime")
    src = tmp_path / "mixed.res"
    src.write_text(MIXED)
    path = tmp_path / "mixed.onnx"
    assert cli_main(["compile", str(src), "--onnx", str(path), "--seed", "3", "--batch", "2"]) == 0
    ref = resdsl.compile(str(src), seed=3).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    (y,) = session.run(None, {"x": x.numpy()})  # batch 4 through a model exported at batch 2
    with torch.no_grad():
        diff = abs(y - ref(x).numpy()).max()
    print(f"onnxruntime vs eager: max abs diff {diff:.3g}")
    assert diff <= 1e-4


def test_cli_torch_export_archive(tmp_path, x):
    path = tmp_path / "m.pt2"
    src = tmp_path / "mixed.res"
    src.write_text(MIXED)
    assert cli_main(["compile", str(src), "--export", str(path), "--seed", "1"]) == 0
    program = torch.export.load(str(path))
    ref = resdsl.compile(str(src), seed=1).eval()
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x[:1]), ref(x[:1]))


def test_multi_output_export():
    net = resdsl.loads("network two() {\n input a: [4]\n l1: linear(3)\n output p\n l2: linear(2)\n output q\n}")
    m = net.to_torch(seed=0)
    a = torch.randn(2, 4)
    program = torch.export.export(m, (a,))
    p, q = program.module()(a)
    torch.testing.assert_close(p, m(a)[0])
    torch.testing.assert_close(q, m(a)[1])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_matches_cpu(mixed, x):
    m = resdsl.loads(MIXED).to_torch(seed=0).eval().cuda()
    with torch.no_grad():
        torch.testing.assert_close(m(x.cuda()).cpu(), mixed(x), rtol=1e-3, atol=1e-4)


@cuda
def test_cuda_autocast_and_compile(x):
    m = resdsl.compile(str(ROOT / "examples" / "resnet.res"), depth=18, size=32, seed=0).cuda()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    step = torch.compile(m, fullgraph=True)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = step(torch.randn(8, 3, 32, 32, device="cuda")).float().logsumexp(1).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
