"""Several processes training one model, through PyTorch's DistributedDataParallel (DDP).

`torchrun --nproc_per_node=N -m lm train ...` starts N copies of the training command
and tells each in environment variables who it is (RANK of WORLD_SIZE, LOCAL_RANK on
its machine) and where the others are. Every process holds a whole copy of the model
and computes the gradient on its own share of each batch; DDP averages the gradients
over all processes during the backward pass, so every copy takes the same optimizer
step and the copies stay identical. Process 0 (the main one) writes the run folder.

Without torchrun's variables there is one process and everything here is a no-op, so
the trainer reads the same either way.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

PR_SET_PDEATHSIG = 1  # Linux prctl option: a signal to receive when the parent process dies


@dataclass(frozen=True)
class World:
    """Which process this is (rank) among how many (size); local_rank counts on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env(env=os.environ) -> World:
    """The process's place as torchrun describes it; one process when started without it."""
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def process_device(device: str, world: World) -> str:
    """The device this process trains on: with several processes on CUDA, GPU number
    LOCAL_RANK (one GPU per process); on the CPU they share the cores."""
    if world.size == 1:
        return device
    kind = torch.device(device)
    if kind.type == "cpu":
        return device
    if kind.type != "cuda":
        raise ValueError(f"several processes train on CUDA GPUs or the CPU, not on {device}")
    if kind.index is not None:
        raise ValueError(f"with several processes each takes the GPU of its LOCAL_RANK: ask for cuda, not {device}")
    if world.local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"process {world.local_rank} on this machine needs GPU cuda:{world.local_rank} but there are only "
            f"{torch.cuda.device_count()}: start at most as many processes per machine as it has GPUs"
        )
    return f"cuda:{world.local_rank}"


def start(device: str, world: World) -> None:
    """Join the other processes: NCCL between CUDA GPUs, gloo between CPUs."""
    if world.size == 1 or dist.is_initialized():
        return
    _die_with_launcher()
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=torch.device(device))
    else:
        dist.init_process_group("gloo")


def end(finished: bool = True) -> None:
    """Leave the group. After a normal end, first wait until every process is done talking;
    after an error the others may be gone, so nobody is waited for."""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a process that has trained in a group, skipping the interpreter's teardown: there,
    gloo's threads now and then abort the process ("terminate called without an active
    exception") after everything is saved, and torchrun would report a finished run as failed.
    Files are closed by now; only the standard streams need flushing."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _die_with_launcher() -> None:
    """torchrun starts each process in a session of its own, so a signal to torchrun's
    process group does not reach them. It forwards SIGTERM and SIGINT, but SIGKILL (a
    deleted run, the out-of-memory killer) cannot be forwarded: ask Linux to kill this
    process too when its launcher dies, rather than let it train on as an orphan."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def wrap(model: torch.nn.Module, device: str, world: World) -> torch.nn.Module:
    """The module the training step calls: DDP around the model with several processes
    (it also copies process 0's weights to every other process now), the model itself alone."""
    if world.size == 1:
        return model
    routed = getattr(getattr(model, "config", None), "n_experts", 0) > 0  # an expert no token chose has no gradient
    return DistributedDataParallel(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None,
                                   find_unused_parameters=routed)


def no_sync(engine: torch.nn.Module, skip: bool):
    """Inside, backward passes only accumulate gradients locally: with gradient accumulation,
    averaging over processes once, after the last micro-batch, is enough."""
    return engine.no_sync() if skip and isinstance(engine, DistributedDataParallel) else nullcontext()


def own_share(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This process's rows of a batch every process drew alike: consecutive equal parts, so
    together the processes see exactly the batch one process would."""
    if len(batch) % world.size:
        raise ValueError(f"a batch of {len(batch)} rows does not split evenly over {world.size} processes")
    return batch.tensor_split(world.size)[world.rank]


def sum_all(values: list[float], device: str, world: World) -> list[float]:
    """Each value summed over all processes (one message for all of them)."""
    if world.size == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device if device.startswith("cuda") else "cpu")
    dist.all_reduce(tensor)
    return tensor.tolist()


def average_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Every process's gradients replaced by their mean over all processes (one message)."""
    if world.size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    for p, mean in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = mean.view_as(p).clone()


def broadcast(obj, world: World):
    """Process 0's `obj` (any picklable object) on every process."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, world: World) -> list:
    """Every process's `obj`, in rank order, on every process."""
    if world.size == 1:
        return [obj]
    found = [None] * world.size
    dist.all_gather_object(found, obj)
    return found


def replicas_agree(model: torch.nn.Module, world: World) -> bool:
    """Whether every process holds exactly process 0's weights (bit for bit), as DDP promises."""
    if world.size == 1:
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        reference = flat.clone()
        dist.broadcast(reference, src=0)  # on the model's device: CUDA for NCCL, the CPU for gloo
        differs = float(not torch.equal(flat, reference))
    return sum_all([differs], str(flat.device), world)[0] == 0
