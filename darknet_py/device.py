"""Where a command runs: the device policy and torchrun's process group, for detect, eval and train.

A single process runs on the device asked for ("cpu", "cuda", "cuda:N", or "auto": CUDA when
present). Under ``torchrun`` (WORLD_SIZE > 1) process r reads RANK and LOCAL_RANK from the
environment and takes ``cuda:LOCAL_RANK`` when CUDA is asked for (or available, with "auto").
"""
from __future__ import annotations

import os
from typing import Union

import torch
import torch.distributed as dist

from .errors import NoCudaError

DeviceLike = Union[str, torch.device, None]


def _check_cuda(dev: torch.device) -> None:
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NoCudaError(f"device '{dev}' requested but torch reports no CUDA device (torch {torch.__version__}, "
                          f"built {'with' if torch.version.cuda else 'without'} CUDA)")


def resolve_device(device: DeviceLike) -> torch.device:
    """"auto" (or None): CUDA when available, else the CPU; anything else as given, CUDA checked."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    _check_cuda(dev)
    return dev


def model_device(module: torch.nn.Module) -> torch.device:
    """The device a module's tensors are on (its first parameter's, else buffer's; the CPU if none)."""
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


class Distributed:
    """torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK), or one process."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: DeviceLike, default: str = "cpu") -> torch.device:
        """This process's device: ``requested`` resolved as :func:`resolve_device`; when None,
        ``default`` in one process and "auto" under torchrun (each process its own GPU where there
        are GPUs). Under torchrun a plain "cuda" is cuda:LOCAL_RANK."""
        if requested is None:
            requested = "auto" if self.active else default
        dev = resolve_device(requested)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", self.local_rank if self.active else torch.cuda.current_device())
        return dev

    def start(self, backend: str | None = None) -> None:
        """Join the process group (a no-op in one process). ``backend``: "nccl" or "gloo"; gloo
        carries Python objects whatever the device."""
        if self.active and not dist.is_initialized():
            dist.init_process_group(backend or "gloo")

    def broadcast(self, obj):
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list | None:
        if not self.active:
            return [obj]
        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def all_gather(self, obj) -> list:
        if not self.active:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values: list[float], device: DeviceLike = "cpu") -> list[float]:
        """Element-wise sum over the processes (on ``device``: NCCL reduces CUDA tensors only)."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            # every process reaches the end before the group goes: gloo torn down in one process while
            # another still holds its connections aborted that one now and then ("terminate called
            # without an active exception", SIGABRT, after a finished run)
            dist.barrier()
            dist.destroy_process_group()


__all__ = ["Distributed", "model_device", "resolve_device"]
