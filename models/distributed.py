"""Data-parallel training under torchrun: process-group setup and a BatchNorm that normalizes over the global batch.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs in one process, without DDP unless
HWOCR_FORCE_DDP=1 (a one-process check that the process group, DDP and SyncBatchNorm paths run; torch's
SyncBatchNorm itself computes locally at world size 1). Every rank draws the same global batch from the loader and
trains on its share; DDP averages the gradients. For that to equal one process on the same global batch,
BatchNorm must use statistics of the whole batch: nn.SyncBatchNorm does this on CUDA only (torch refuses it on CPU
modules), so on CPU the BatchNorm layers are swapped for GlobalBatchNorm2d, which
all-reduces its sums with autograd so the backward pass is global too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd import Function

from hwocr.errors import HwocrError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    forced: bool = False  # HWOCR_FORCE_DDP=1: the DDP path even with one process

    @property
    def ddp(self) -> bool:
        return self.size > 1 or self.forced

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items: list) -> list:
        """This rank's part of a global batch (strided, so sizes differ by at most one)."""
        return items[self.rank::self.size]


def world_from_env() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    forced = os.environ.get("HWOCR_FORCE_DDP", "0")
    if forced not in ("0", "1"):
        raise HwocrError(f"HWOCR_FORCE_DDP is {forced!r}: set it to 1 (force DDP) or 0")
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")), forced == "1")


def init(world: World, device: torch.device) -> None:
    if world.ddp and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if world.size == 1 and "MASTER_ADDR" not in os.environ:  # forced, no torchrun: no rendezvous needed
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        else:
            dist.init_process_group(backend)


def shutdown(world: World) -> None:
    if world.ddp and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.ddp:
        dist.barrier()


def all_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """Sum of a small tensor over ranks (no autograd): losses, counts, stop flags."""
    if world.size == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values


class _AllReduceSum(Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every rank's batch; same state_dict as nn.BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()
        n = torch.tensor([float(x.numel() // x.size(1))], device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), n]))
        c = x.size(1)
        count = stats[-1]
        mean = stats[:c] / count
        var = (stats[c:2 * c] / count - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1).clamp_min(1), alpha=m)
        shape = (1, c, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def global_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm normalize over the global batch: SyncBatchNorm on CUDA, GlobalBatchNorm2d on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            bn = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats, device=child.weight.device)
            bn.load_state_dict(child.state_dict())
            setattr(model, name, bn)
        else:
            global_batchnorm(child, device)
    return model
