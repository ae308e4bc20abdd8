"""Benchmark: the PyTorch backend's generated modules against hand-written PyTorch.

1. ResNet-50 compiled from examples/resnet.res vs torchvision.models.resnet50 (same
   weights), CPU eager: forward (eval, no_grad) and one training step (forward,
   backward, SGD step), batch 8 at 224x224.  (tests/test_export.py checks that both run
   the same aten ops in the same order and the same number of module calls, so these
   two rows measure noise around 1.0.)
   Construction vs `torchvision.models.resnet50()`:
     - `Network.to_torch()` as a program calls it again: generated code cached (by content
       hash), so it is exec + building the modules + initialising them;
     - the same with the caches cleared before every build (code generation + compile too);
     - from the .res file: load + elaborate + check + build.
   resdsl allocates the modules on the meta device and initialises each weight once;
   torchvision draws every conv weight twice (nn.Conv2d's default, then kaiming_normal_).
   The same two rows for MobileNetV2 and ConvNeXt-tiny vs torchvision's (`--only zoo`; their aten ops
   are pinned against torchvision's in tests/test_export.py too).
2. A 1,000-block residual MLP of width 64 (x = x + linear(relu(x))) vs the same
   network hand-written as an nn.ModuleList with a for-loop forward, and as one
   nn.Module per block in an nn.Sequential (torchvision's style, which the generated
   module tree follows); batch 64.
3. With a CUDA GPU (`--only device`): ResNet-50 forward and training step on the device, eager
   float32, AMP (autocast bfloat16) and torch.compile (inductor), batch 64, wall time around
   torch.cuda.synchronize().  Skipped, with a message, without one (`--device cpu --no-compile` is a
   dry run of that code).

Timings are interleaved (A, B, A, B, ... with alternating order) in one process, by
default in process CPU time with one thread (the machine is shared; wall time with
--wall); the median and minimum of each are reported; ratio = peer time / resdsl time,
so > 1 means resdsl is faster.  Not a test: run `python bench/bench_backend.py [--reps 15]`.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402


CLOCK = time.perf_counter


def interleaved(fns: dict[str, callable], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in (names if r % 2 == 0 else names[::-1]):
            t = CLOCK()
            fns[k]()
            times[k].append(CLOCK() - t)
    return times


def train_step(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def forward(model, x):
    def run():
        with torch.no_grad():
            model(x)
    return run


class HandMLP(nn.Module):
    def __init__(self, blocks: int, width: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))

    def forward(self, x):
        for lin in self.layers:
            x = x + lin(F.relu(x))
        return x


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.relu = nn.ReLU()
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        return x + self.linear(self.relu(x))


class HandBlocks(nn.Module):
    """The same MLP written torchvision-style: one module per block, ReLU as a module."""

    def __init__(self, blocks: int, width: int):
        super().__init__()
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))

    def forward(self, x):
        return self.blocks(x)


MLP = """network mlp(blocks = 1000, width = 64) {
    input x: [width]
    for i in range(blocks) {
        {i}: residual {
            relu
            linear(width)
        }
    }
    output y
}
"""


def report(title: str, times: dict[str, list[float]], ours: str, peer: str, lines: list[str]) -> None:
    a, b = statistics.median(times[ours]), statistics.median(times[peer])
    best = min(times[peer]) / min(times[ours])
    line = (f"| {title} | {b * 1e3:.1f} ms | {a * 1e3:.1f} ms | {b / a:.3f} | {best:.3f} | {len(times[ours])} |")
    lines.append(line)
    print(line, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--wall", action="store_true",
                   help="measure wall time instead of process CPU time (CPU time is less sensitive to other "
                        "jobs on a shared machine)")
    p.add_argument("--only", choices=["resnet", "zoo", "build", "mlp", "device"], action="append",
                   help="run only these parts (default: all; `zoo` = MobileNetV2 and ConvNeXt-tiny; `device` = the "
                        "CUDA rows, run when a GPU is present)")
    p.add_argument("--device", default="cuda", help="device of the `device` rows (cpu: a dry run of that code)")
    p.add_argument("--device-batch", type=int, default=64, help="batch of the `device` rows")
    p.add_argument("--no-compile", action="store_true", help="leave the torch.compile rows out of the `device` rows")
    args = p.parse_args()
    args.cpu_time = not args.wall
    parts = set(args.only or ["resnet", "zoo", "build", "mlp", "device"])
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter

    lines = ["| benchmark | peer (median) | resdsl (median) | ratio of medians | ratio of minima | reps |",
             "|---|---|---|---|---|---|"]
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, threads={args.threads}, "
          f"clock={'process CPU time' if args.cpu_time else 'wall'}, load average before {os.getloadavg()}", flush=True)
    load0 = os.getloadavg()

    if "resnet" in parts:
        resnet_rows(args, lines)
    if "zoo" in parts:
        zoo_rows(args, lines)
    if "build" in parts:
        build_rows(args, lines)
    if "mlp" in parts:
        mlp_rows(args, lines)
    if "device" in parts:
        if args.device == "cuda" and not torch.cuda.is_available():
            print("no CUDA device: the eager / AMP / torch.compile device rows are skipped", flush=True)
        else:
            device_rows(args, lines)
    print(f"load average after {os.getloadavg()} (before {load0})")
    print("\n".join(lines))


def pair_rows(args, lines: list[str], title: str, tv_name: str, file: str, **params) -> None:
    """A zoo example vs its torchvision model (same weights): forward (eval, no_grad) and a training step
    (forward, backward, SGD), batch 8 at 224x224."""
    import torchvision

    torch.manual_seed(0)
    tv = getattr(torchvision.models, tv_name)()
    ours = resdsl.compile(str(ROOT / "examples" / file), **params)
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(8, 3, 224, 224)
    y = torch.randint(1000, (8,))
    tv.eval(), ours.eval()
    t = interleaved({"resdsl": forward(ours, x), "torchvision": forward(tv, x)}, args.reps)
    report(f"{title} forward, batch 8, 224x224 (vs torchvision)", t, "resdsl", "torchvision", lines)
    tv.train(), ours.train()
    t = interleaved({"resdsl": train_step(ours, torch.optim.SGD(ours.parameters(), lr=1e-3), x, y),
                     "torchvision": train_step(tv, torch.optim.SGD(tv.parameters(), lr=1e-3), x, y)},
                    max(3, args.reps * 2 // 3))
    report(f"{title} training step, batch 8 (vs torchvision)", t, "resdsl", "torchvision", lines)


def resnet_rows(args, lines: list[str]) -> None:
    pair_rows(args, lines, "ResNet-50", "resnet50", "resnet.res", depth=50)


def zoo_rows(args, lines: list[str]) -> None:
    """MobileNetV2 (in-place ReLU6, the identity shortcut added in place) and ConvNeXt-tiny (`result += input`
    after layer scale and stochastic depth): tests/test_export.py pins their aten ops against torchvision's."""
    pair_rows(args, lines, "MobileNetV2", "mobilenet_v2", "mobilenet_v2.res")
    pair_rows(args, lines, "ConvNeXt-tiny", "convnext_tiny", "convnext.res", variant="tiny")


def build_rows(args, lines: list[str]) -> None:
    import torchvision

    from resdsl.backends import pytorch

    net50 = resdsl.load(ROOT / "examples" / "resnet.res", depth=50)

    def cold():
        pytorch._GENERATED.clear()
        pytorch._CODE.clear()
        pytorch._SMALLEST.clear()
        net50.to_torch()
    reps = args.reps * 2
    t = interleaved({"resdsl": net50.to_torch, "cold": cold, "torchvision": torchvision.models.resnet50}, reps)
    report("ResNet-50 construction: Network.to_torch() (vs torchvision.models.resnet50())", t, "resdsl",
           "torchvision", lines)
    report("ResNet-50 construction, code generated and compiled every time (vs torchvision.models.resnet50())",
           t, "cold", "torchvision", lines)
    t = interleaved({"resdsl": lambda: resdsl.compile(str(ROOT / "examples" / "resnet.res"), depth=50),
                     "torchvision": torchvision.models.resnet50}, reps)
    report("ResNet-50 from the .res file: load + check + build (vs torchvision.models.resnet50())", t, "resdsl",
           "torchvision", lines)


def device_rows(args, lines: list[str]) -> None:
    """ResNet-50 on the device (CUDA): eager float32, AMP (autocast bfloat16) and torch.compile (inductor),
    forward and training step, batch --device-batch; wall time around a device synchronisation."""
    import torchvision

    global CLOCK
    clock, CLOCK = CLOCK, time.perf_counter  # kernels run asynchronously: CPU time says nothing here
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().to(dev)
    ours = resdsl.compile(str(ROOT / "examples" / "resnet.res"), depth=50).to(dev)
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(args.device_batch, 3, 224, 224, device=dev)
    y = torch.randint(1000, (args.device_batch,), device=dev)
    b = args.device_batch

    def synced(fn, amp: bool):
        def run():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                fn()
            sync()
        return run
    variants = [("eager float32", False, None), ("AMP bfloat16", True, None)]
    if not args.no_compile:
        variants.append(("torch.compile", False, torch.compile))
    for label, amp, wrap in variants:
        a, t = (wrap(ours), wrap(tv)) if wrap else (ours, tv)
        warm = 3 if wrap else 1
        a.eval(), t.eval()
        times = interleaved({"resdsl": synced(forward(a, x), amp), "torchvision": synced(forward(t, x), amp)},
                            args.reps, warm)
        report(f"ResNet-50 forward on {dev.type}, {label}, batch {b} (vs torchvision)", times, "resdsl",
               "torchvision", lines)
        a.train(), t.train()
        times = interleaved({"resdsl": synced(train_step(a, torch.optim.SGD(ours.parameters(), lr=1e-3), x, y), amp),
                             "torchvision": synced(train_step(t, torch.optim.SGD(tv.parameters(), lr=1e-3), x, y),
                                                   amp)}, args.reps, warm)
        report(f"ResNet-50 training step on {dev.type}, {label}, batch {b} (vs torchvision)", times, "resdsl",
               "torchvision", lines)
    CLOCK = clock


def mlp_rows(args, lines: list[str]) -> None:
    torch.manual_seed(0)
    hand = HandMLP(1000, 64)
    mlp = resdsl.compile(resdsl.loads(MLP))
    mlp.load_state_dict({f"{i}.linear.{w}": v for i, lin in enumerate(hand.layers)
                         for w, v in lin.state_dict().items()}, strict=True)
    x = torch.randn(64, 64)
    with torch.no_grad():
        assert torch.allclose(mlp(x), hand(x), atol=1e-4)
    blocks = HandBlocks(1000, 64)
    blocks.load_state_dict({f"blocks.{k}": v for k, v in mlp.state_dict().items()}, strict=True)
    t = interleaved({"resdsl": forward(mlp, x), "hand": forward(hand, x), "blocks": forward(blocks, x)},
                    args.reps * 3)
    report("1,000-block residual MLP forward, width 64, batch 64 (vs hand-written loop)", t, "resdsl", "hand", lines)
    report("1,000-block residual MLP forward (vs hand-written, one nn.Module per block)", t, "resdsl", "blocks",
           lines)

    def step(model):
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)

        def run():
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()
        return run
    t = interleaved({"resdsl": step(mlp), "hand": step(hand), "blocks": step(blocks)}, args.reps * 2)
    report("1,000-block residual MLP training step (vs hand-written loop)", t, "resdsl", "hand", lines)
    report("1,000-block residual MLP training step (vs hand-written, one nn.Module per block)", t, "resdsl",
           "blocks", lines)


if __name__ == "__main__":
    main()
