"""DistributedDataParallel on CPU: two gloo processes train a compiled network
on different data with examples/train_ddp.py's step; afterwards every
replica holds the same parameters, and they moved away from the init."""
from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import resdsl

ROOT = Path(__file__).resolve().parent.parent
NET = str(ROOT / "examples" / "cifar_resnet.res")  # depth 8: zero-pad (option A) shortcuts, batch norm
PARAMS = {"depth": 8}
STEPS = 3


def _train_ddp():
    spec = importlib.util.spec_from_file_location("train_ddp", ROOT / "examples" / "train_ddp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        t = _train_ddp()
        device = torch.device("cpu")
        model = t.make_model(NET, PARAMS, seed=rank, device=device)  # different inits: DDP broadcasts rank 0's
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        data = torch.Generator().manual_seed(100 + rank)  # different data on every rank
        losses = []
        for _ in range(STEPS):
            inputs, target = t.synthetic_batch(model, 4, data, device)
            losses.append(t.train_step(ddp, opt, inputs, target))
        mine = _flat(model)
        gathered = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine)
        same = all(torch.equal(g, gathered[0]) for g in gathered)
        torch.save({"params": mine, "same": same, "losses": losses}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["same"] and r1["same"]  # all_gather inside the job saw identical replicas
    assert torch.equal(r0["params"], r1["params"])
    assert r0["losses"] != r1["losses"]  # the ranks really trained on different data
    init = _flat(resdsl.compile(NET, seed=0, **PARAMS))  # rank 0's init, which DDP broadcast
    assert r0["params"].shape == init.shape
    assert not torch.allclose(r0["params"], init)
