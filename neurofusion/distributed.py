"""Data-parallel training under torchrun: the process's place in the job, the process group (gloo on CPU, NCCL
on CUDA), DistributedDataParallel with synchronised batch norm, and rank 0's decisions shared with the others.

    torchrun --nproc_per_node 2 -m neurofusion.train --config ... --data ... --out ...

Multi-node runs use torchrun's own rendezvous (``--nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:PORT`` on
every node); this module only reads the RANK, WORLD_SIZE and LOCAL_RANK that torchrun sets.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Mapping

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

__all__ = ["DistributedContext", "GlooSyncBatchNorm", "SINGLE", "broadcast_object", "check_encoders_run_everywhere",
           "context_from_environment", "find_unused_parameters", "mean_over_processes", "setup", "sync_batch_norm",
           "synchronised_modalities", "teardown", "wrap"]


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """This process's place in a data-parallel job (rank 0 of 1 when there is none)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistributedContext()
_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def context_from_environment(environ: Mapping[str, str] | None = None) -> DistributedContext:
    """The context torchrun's RANK, WORLD_SIZE and LOCAL_RANK describe; SINGLE when none is set. Some but not
    all set, or values that are not a consistent rank, is a ValueError naming the variable."""
    environ = os.environ if environ is None else environ
    given = [name for name in _VARIABLES if name in environ]
    if not given:
        return SINGLE
    if len(given) != len(_VARIABLES):
        missing = ", ".join(name for name in _VARIABLES if name not in environ)
        raise ValueError(f"torchrun's environment is incomplete: {', '.join(given)} set but not {missing}; start "
                         f"the job with torchrun, or unset them for one process")
    values = {}
    for name in _VARIABLES:
        try:
            values[name] = int(environ[name])
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {environ[name]!r}") from None
    if values["WORLD_SIZE"] < 1 or not 0 <= values["RANK"] < values["WORLD_SIZE"] or values["LOCAL_RANK"] < 0:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE) and LOCAL_RANK >= 0, got RANK={values['RANK']}, "
                         f"WORLD_SIZE={values['WORLD_SIZE']}, LOCAL_RANK={values['LOCAL_RANK']}")
    return DistributedContext(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])


def setup(context: DistributedContext, device: torch.device) -> torch.device:
    """Join the process group (NCCL for CUDA, gloo otherwise); the device this process trains on (its local
    GPU under CUDA). Nothing happens for a single process."""
    if not context.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=context.rank,
                                world_size=context.world_size)
    return device


def teardown(context: DistributedContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the whole data-parallel batch, on CPU too
    (``nn.SyncBatchNorm`` runs on GPUs only): each process's sums are all-reduced with the differentiable
    ``torch.distributed.nn.functional.all_reduce``, so the gradients flow through the other processes' cases
    as they do in one process with the combined batch."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        dims = [0] + list(range(2, input.dim()))
        count = torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype, device=input.device)
        sums = torch.cat([input.sum(dims), (input * input).sum(dims), count])  # (2C + 1,)
        with warnings.catch_warnings():  # the differentiable all-reduce, deprecated for a non-autograd one
            warnings.simplefilter("ignore", FutureWarning)
            sums = dist_nn.all_reduce(sums)
        channels = input.shape[1]
        n = sums[-1]
        mean = sums[:channels] / n
        var = sums[channels:2 * channels] / n - mean * mean  # biased, as batch norm normalises with
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / (n - 1).clamp_min(1))
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm of ``model`` synchronised across processes: ``nn.SyncBatchNorm`` on CUDA,
    :class:`GlooSyncBatchNorm` elsewhere (same weights and buffers, so the state dict is unchanged)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlooSyncBatchNorm):
        converted = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module


def find_unused_parameters(model: nn.Module) -> bool:
    """Whether a training step can leave a parameter of ``model`` without a gradient, which DDP must be told.

    Modality dropout never does: an encoder runs on every case that has its modality, and hiding it swaps
    the encoding for the missing embedding with ``torch.where``, which keeps both in the graph. But an
    encoder that no case of a process's batch has data for is not run at all (a cohort with missing
    modalities), and heads other than the primary one get no loss in training; so every multimodal model
    with an encoder can leave parameters unused and is declared so."""
    encoders = getattr(model, "encoders", None)
    heads = getattr(getattr(model, "config", None), "heads", [])
    return bool(encoders is not None and len(encoders)) or len(heads) > 1


def synchronised_modalities(model: nn.Module) -> tuple[str, ...]:
    """The modalities whose encoder has a synchronised batch norm (after :func:`sync_batch_norm`)."""
    encoders = getattr(model, "encoders", {})
    synced = (GlooSyncBatchNorm, nn.SyncBatchNorm)
    return tuple(name for name, encoder in encoders.items() if any(isinstance(m, synced) for m in encoder.modules()))


def check_encoders_run_everywhere(present: torch.Tensor, names: tuple[str, ...], synced: tuple[str, ...],
                                  context: DistributedContext) -> None:
    """A synchronised batch norm is a collective every process must reach; an encoder is skipped where no case
    of the batch has its modality. present: (B, M) bool, columns in ``names`` order. A ValueError on every
    process (not a hang) when one process's batch has none of a synchronised modality and another's has some."""
    if not (context.distributed and synced):
        return
    has = present[:, [names.index(m) for m in synced]].any(0).to(torch.int64)  # (S,)
    both = torch.cat([has, -has])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    uneven = [m for m, hi, neg_lo in zip(synced, both[:len(synced)].tolist(), both[len(synced):].tolist())
              if hi != -neg_lo]
    if uneven:
        raise ValueError(f"a training batch of some process has no case with {', '.join(uneven)} while another's "
                         f"has, and the {', '.join(uneven)} encoder's synchronised batch norm needs every process; "
                         f"use a larger train.batch_size (or fewer processes) for a cohort where {', '.join(uneven)} "
                         f"is often missing")


def wrap(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel for a distributed job (call :func:`sync_batch_norm` first); ``model``
    itself for one process."""
    if not context.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters(model))


def broadcast_object(value: Any, context: DistributedContext) -> Any:
    """Rank 0's ``value`` on every process (picklable objects: records, decisions)."""
    if not context.distributed:
        return value
    box = [value if context.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_processes(value: float, context: DistributedContext, device: torch.device) -> float:
    """The mean of a per-process number over the job's processes."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor) / context.world_size
