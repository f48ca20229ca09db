"""Initialize a sharded model on 2 processes on one machine, bit-identical to 1 process.

Run either of (CPU only, gloo backend; no GPU needed)::

    python examples/sharded_init.py                       # spawns 2 processes itself
    torchrun --nproc-per-node 2 examples/sharded_init.py  # the same under torchrun

Each rank builds the model on the meta device (no memory), shards it with FSDP2
``fully_shard``, and allocates and initializes only its own shards. A tensor-parallel weight
(a DTensor sharded by columns) is initialized directly. Rank 0 then gathers everything and
checks it against the same model initialized unsharded in one process: every value is equal,
bit for bit. No values are sent between ranks during initialization (only one 8-byte seed
broadcast for the directly initialized weight, which has no explicit seed).
"""

from __future__ import annotations

import argparse
import os
import socket
import time
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard
from torch.distributed.tensor import empty as dtensor_empty

import fastinit.torch

try:
    from torch.distributed.fsdp import fully_shard
except ImportError:  # torch < 2.6
    from torch.distributed._composable.fsdp import fully_shard

SEED = 1234


class Block(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(self.norm(x))))


class Model(nn.Module):
    """A small MLP language model; 1003 and 515 do not divide by 2 (uneven shards)."""

    def __init__(self, vocab: int = 1003, dim: int = 256, hidden: int = 515) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, hidden) for _ in range(2))
        self.head = nn.Linear(dim, vocab, bias=False)


def materialize(model: nn.Module, seed: int) -> None:
    """``fastinit.torch.materialize_``: on an FSDP2 model, each rank fills its own shards."""
    fastinit.torch.materialize_(model, "cpu", seed=seed)


def run(rank: int, world_size: int) -> bool:
    mesh = init_device_mesh("cpu", (world_size,))

    # 1. FSDP2 on the meta device; each rank allocates and fills its own shards only.
    with torch.device("meta"):
        model = Model()
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    start = time.perf_counter()
    materialize(model, SEED)
    seconds = time.perf_counter() - start

    # 2. A tensor-parallel weight, sharded by columns, initialized in place. The seed comes
    #    from torch's generator (seeded differently on purpose): rank 0's draw is broadcast.
    torch.manual_seed(100 + rank)
    w = dtensor_empty(1000, 515, device_mesh=mesh, placements=[Shard(1)])
    fastinit.torch.kaiming_uniform_(w, a=5**0.5)  # a DTensor is a target like any other
    local = w.to_local()
    print(f"rank {rank}: fsdp shards filled in {seconds * 1e3:.1f} ms; tp weight local shard "
          f"{tuple(local.shape)} of {tuple(w.shape)}", flush=True)  # fmt: skip

    # 3. Gather (for the check only) and compare with one process.
    sharded: list[tuple[str, Any]] = list(model.named_parameters())  # DTensor parameters
    full = {name: p.full_tensor() for name, p in sharded}
    full_w = w.full_tensor()
    if rank != 0:
        return True
    with torch.device("meta"):
        reference = Model()
    fastinit.torch.materialize_(reference, seed=SEED)
    expected_w = torch.empty(1000, 515)
    fastinit.torch.kaiming_uniform_(
        expected_w, a=5**0.5, generator=torch.Generator().manual_seed(100)
    )
    same = all(torch.equal(full[k], v) for k, v in reference.named_parameters())
    same_w = torch.equal(full_w, expected_w)
    n = sum(v.numel() for v in full.values())
    print(f"{len(full)} parameters ({n} values) on {world_size} ranks == 1 process: {same}")
    print(f"tensor-parallel weight on {world_size} ranks == 1 process: {same_w}")
    return same and same_w


def _spawned(rank: int, world_size: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    _main(rank, world_size)


def _main(rank: int, world_size: int) -> None:
    warnings.filterwarnings("ignore", module="torch")
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        ok = run(rank, world_size)
    finally:
        dist.destroy_process_group()
    if not ok:
        raise SystemExit("sharded initialization differs from the single-process one")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="processes to spawn (default 2)")
    args = parser.parse_args()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # started by torchrun
        _main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
    else:
        torch.multiprocessing.spawn(_spawned, args=(args.nproc, _free_port()), nprocs=args.nproc)
