"""Training beyond one process: the train stage under `torchrun --nproc_per_node N` is data-parallel (DDP).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (a plain `dcq train`) the world is one process and
every step is what it always was. With N processes: gloo on CPU (what the tests run, 2 processes), NCCL on GPUs
(one per process, LOCAL_RANK). Each rank reads only its contiguous share of the train rows and of the test rows,
trains on local batches of batch_size / N with its own seeded order and augmentation, DDP averages the gradients
(so a step sees batch_size images, as with one process), the normalization and the test confusion matrix are
summed over ranks, and rank 0 alone writes the checkpoint and the record.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pipeline.device import Runtime
from pipeline.errors import ParamsError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share [start, stop) of n rows (shares differ by at most one row)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size


ONE_PROCESS = World()


def from_environment() -> World:
    try:
        return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                     int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError as exc:
        raise ParamsError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun): {exc}") from None


def setup(runtime: Runtime) -> tuple[World, Runtime]:
    """Join the process group torchrun describes (once per process) and return this rank's world and runtime (on
    CUDA: the rank's own GPU); one process: nothing to join, the runtime as it was."""
    world = from_environment()
    if world.size == 1:
        return world, runtime
    if not dist.is_initialized():
        if runtime.device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if runtime.device.type == "cuda" else "gloo")
    if runtime.device.type == "cuda":
        runtime = dataclasses.replace(runtime, device=torch.device("cuda", world.local_rank))
    return world, runtime


def all_sum(values: np.ndarray, world: World) -> np.ndarray:
    """Elementwise sum over ranks (float64 or int64 arrays), the same result on every rank."""
    if world.size == 1:
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values)).to(_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def all_sum_(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum `tensor` over ranks in place (the same values on every rank) and return it; one process: unchanged."""
    if world.size == 1:
        return tensor
    moved = tensor.to(_device())
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    if moved is not tensor:
        tensor.copy_(moved)
    return tensor


def all_min(value: int, world: World) -> int:
    if world.size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def all_rows(values: np.ndarray, world: World, total: int) -> np.ndarray:
    """The whole (total, ...) array on every rank, from each rank's rows: its contiguous share of `total` (summed as
    float64, so float32 and integer values come back exactly)."""
    if world.size == 1:
        return values
    start, stop = world.shard(total)
    if len(values) != stop - start:
        raise ValueError(f"rank {world.rank} holds {len(values)} rows, its share of {total} is {stop - start}")
    whole = np.zeros((total, *values.shape[1:]), np.float64)
    whole[start:stop] = values
    return all_sum(whole, world).astype(values.dtype)


def average_gradients(parameters, world: World) -> None:
    """Replace each gradient by its mean over ranks (one flat all-reduce). Every rank runs the same graph, so the
    same parameters hold a gradient everywhere; those without one are left alone, as a single process leaves them."""
    if world.size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.to(grads[0].device) / world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(model: torch.nn.Module, world: World) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: DDP keeps the parameters equal, but each
    rank's last forward pass updated its own running statistics, and every rank evaluates with the model rank 0
    saves."""
    if world.size == 1:
        return
    for buffer in model.buffers():
        moved = buffer.detach().to(_device())
        dist.broadcast(moved, src=0)
        buffer.data.copy_(moved.to(buffer.device))


def _device() -> torch.device:
    """Where collectives run: NCCL reduces CUDA tensors only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def local_batch(batch_size: int, world: World) -> int:
    if batch_size % world.size:
        raise ParamsError(f"recipe.batch_size={batch_size} must divide by the {world.size} torchrun processes")
    return batch_size // world.size


def finish(world: World) -> None:
    """Wait for every rank (rank 0 writes the outputs) and leave the process group."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shared_path(path: Path | None, world: World, max_bytes: int = 4096) -> Path:
    """Rank 0's `path` on every rank (a collective of its UTF-8 bytes; no pickled objects cross processes)."""
    raw = np.zeros(max_bytes, np.int64)
    if world.main:
        encoded = str(path).encode()
        if len(encoded) >= max_bytes:
            raise ParamsError(f"output path longer than {max_bytes} bytes: {path}")
        raw[:len(encoded)] = np.frombuffer(encoded, np.uint8)
    return Path(all_sum(raw, world).astype(np.uint8).tobytes().rstrip(b"\0").decode())
