"""Train a compiled resdsl network with DistributedDataParallel, launched by torchrun.

One machine, all its GPUs (one process per GPU):
    torchrun --standalone --nproc_per_node=gpu examples/train_ddp.py examples/resnet.res --set depth=50

Several machines (run the same line on each, NODE = 0, 1, ...; HOST = the first machine):
    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=NODE --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        examples/train_ddp.py examples/resnet.res --set depth=50

CPU only (gloo), e.g. to try it out:
    torchrun --standalone --nproc_per_node=2 examples/train_ddp.py examples/cifar_resnet.res --steps 5 --batch 8

Every rank builds the same network with the same seed (DDP also broadcasts rank 0's weights when it wraps
the model), then trains on its own data; DDP averages the gradients, so the replicas stay identical.
The data here is synthetic (random inputs and labels) to keep the script self-contained: replace
`synthetic_batch` by a DataLoader with a `torch.utils.data.DistributedSampler`.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

import resdsl
from resdsl.cli import parse_set


def make_model(path: str, params: dict, seed: int, device: torch.device) -> torch.nn.Module:
    """The compiled network, initialised identically on every rank."""
    model = resdsl.compile(path, seed=seed, **params).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def synthetic_batch(model: torch.nn.Module, batch: int, generator: torch.Generator, device: torch.device):
    """Random inputs of the network's input shapes and random targets for its first output."""
    net = model.resdsl_network
    inputs = [torch.randn((batch,) + shape, generator=generator).to(device) for shape in net.inputs.values()]
    out_shape = next(iter(net.outputs.values()))
    if len(out_shape) == 1:  # logits: class labels
        target = torch.randint(out_shape[0], (batch,), generator=generator).to(device)
    else:
        target = torch.randn((batch,) + out_shape, generator=generator).to(device)
    return inputs, target


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs, target) -> float:
    """One SGD step; gradients are all-reduced by DDP during backward."""
    optimizer.zero_grad(set_to_none=True)
    out = model(*inputs)
    if isinstance(out, tuple):
        out = out[0]
    loss = F.cross_entropy(out, target) if target.dtype == torch.long else F.mse_loss(out, target)
    loss.backward()
    optimizer.step()
    return loss.item()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="the .res file")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="network parameter")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=32, help="batch size per process")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    # torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, local_rank = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    model = make_model(args.file, parse_set(args.set), args.seed, device)
    ddp = DDP(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    data = torch.Generator().manual_seed(args.seed * 1000 + rank)  # different data on every rank
    for step in range(args.steps):
        inputs, target = synthetic_batch(model, args.batch, data, device)
        loss = train_step(ddp, optimizer, inputs, target)
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step}: loss {loss:.4f}", flush=True)
    if rank == 0:
        torch.save(model.state_dict(), "model_state.pt")  # load into resdsl.compile(...) or the generated .py
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
