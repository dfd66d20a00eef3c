"""Multi-process data-parallel training: ``torchrun --nproc_per_node=N -m core train ...``.

torchrun starts N copies of the worker and sets RANK, WORLD_SIZE and LOCAL_RANK; ``init_from_env``
joins them into one process group (NCCL on GPUs, gloo on the CPU). Everything else asks
``current()``, which is a single-process context when no group exists, so one code path serves
both.

What "data parallel" means here, exactly:
- the global batch (``TrainConfig.batch_size``) is drawn from the step's seed identically on every
  rank and each rank keeps its contiguous shard (``shard``), so the union of the shards is the
  batch one process would draw;
- each network is wrapped in ``torch.nn.parallel.DistributedDataParallel`` (``wrap``), whose
  reducer averages the gradients over the ranks during the backward pass (bucketed all-reduces
  that overlap with the backward). The step has four updates (D, S, G-vs-D, G-vs-S), each one
  forward/backward iteration of the updated network's DDP wrapper; the frozen critic inside a G
  update is called *unwrapped* (the plain module: DDP would otherwise wait for gradients that a
  frozen network never produces). No buffer broadcast before each forward: buffers (BatchNorm
  statistics, spectral-norm vectors) are computed identically on every rank from global-batch
  statistics and equal weights, and re-broadcasting them between a critic's two forward passes
  would modify tensors saved for its backward;
- BatchNorm (paper preset) normalises with the *global* batch's statistics: ``nn.SyncBatchNorm``
  on CUDA, ``GlobalBatchNorm2d`` (below) elsewhere, since SyncBatchNorm only runs on GPUs;
- dropout masks and DiffAugment draws come from a per-rank seed (``rank_seed``): independent
  across ranks, as they must be, but not the very numbers one process would draw;
- only rank 0 reports progress and writes checkpoints and previews (core/train.py's ``fit``).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()
_control_group = None  # a gloo group for host-side flags (stop requests) without a GPU sync


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def current() -> DistContext:
    """The running process group's context, or the single-process one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return SINGLE
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        backend=str(dist.get_backend()),
    )


def init_from_env(device: str = "auto") -> DistContext:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL when the ranks train on CUDA,
    gloo on the CPU); a plain ``python -m core train`` stays single-process."""
    global _control_group
    if env_world_size() < 2:
        return SINGLE
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not (device or "auto").startswith(("cpu", "mps"))
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
        _control_group = dist.new_group(backend="gloo") if use_cuda else None
    return current()


def shutdown(ok: bool = False) -> None:
    """Leave the process group. After a run that ended normally every rank waits for the others
    first: rank 0 is still writing the checkpoint when the others finish, and a rank that tore
    down its gloo connections meanwhile was aborted now and then ("terminate called without an
    active exception", about 1 run in 12 of two CPU ranks). After an error the ranks may be out
    of step, so none waits on a barrier that the others never reach; torchrun ends them."""
    global _control_group
    if dist.is_available() and dist.is_initialized():
        if ok and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
    _control_group = None


def local_device(device: torch.device, ctx: DistContext) -> torch.device:
    """Each rank trains on its own GPU (cuda:LOCAL_RANK); CPU ranks share the CPU."""
    if ctx.active and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def check_batch(batch_size: int, ctx: DistContext) -> int:
    """The per-rank batch; the global batch must split evenly so every rank's loss is a mean
    over the same number of samples (then the mean of the ranks' gradients is the global one)."""
    if batch_size % ctx.world_size:
        raise ValueError(
            f"batch_size {batch_size} does not split evenly over {ctx.world_size} processes; "
            f"use a multiple of {ctx.world_size}."
        )
    return batch_size // ctx.world_size


def shard(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous share of a global batch drawn identically on every rank."""
    if not ctx.active:
        return x
    per = check_batch(x.shape[0], ctx)
    return x[ctx.rank * per : (ctx.rank + 1) * per]


def rank_seed(seed: int, ctx: DistContext) -> int:
    """Independent random streams per rank (dropout, augmentation); rank 0 keeps ``seed``, so a
    single process is unchanged."""
    return seed + ctx.rank * (1 << 40)


# --- models ----------------------------------------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is the sum of the ranks' gradients (each rank's input
    reaches every rank's output)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training and inside a process group, normalises with the statistics
    of the global batch (all ranks), through an autograd-aware all-reduce; for backends where
    ``nn.SyncBatchNorm`` is unavailable (CPU/gloo). Same parameters and buffers as BatchNorm2d,
    so checkpoints are interchangeable; outside a group it *is* BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        count = torch.full((1,), x.numel() / c, dtype=torch.float32, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)  # biased, as BN normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_((var * n / (n - 1).clamp_min(1.0)).detach(), m)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            shift = self.bias - mean * scale * self.weight
            scale = scale * self.weight
        else:
            shift = -mean * scale
        y = xf * scale[None, :, None, None] + shift[None, :, None, None]
        return y.to(x.dtype)


def _global_bn(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        out = GlobalBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        out.load_state_dict(module.state_dict())
        out.to(module.running_mean.device if module.running_mean is not None else "cpu")
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _global_bn(child))
    return out


def prepare_module(module: nn.Module, ctx: DistContext) -> nn.Module:
    """For a process group: global-batch BatchNorm (SyncBatchNorm on CUDA, GlobalBatchNorm2d
    elsewhere). Rank 0's weights reach every rank when ``wrap`` builds the DDP wrapper."""
    if not ctx.active:
        return module
    cuda = next(module.parameters()).is_cuda
    return nn.SyncBatchNorm.convert_sync_batchnorm(module) if cuda else _global_bn(module)


def wrap(module: nn.Module, ctx: DistContext) -> nn.Module:
    """The module to call for its own update: a DistributedDataParallel wrapper inside a process
    group (its construction broadcasts rank 0's parameters and buffers), the module itself
    otherwise. ``gradient_as_bucket_view`` spares a copy of every gradient."""
    if not ctx.active:
        return module
    p = next(module.parameters())
    # No buffer broadcast before each forward (module docstring). torch >= 2.13 names this
    # ``forward_sync_buffers`` (``broadcast_buffers`` is deprecated); both still sync at init.
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(
        module,
        device_ids=[p.device.index] if p.is_cuda else None,
        gradient_as_bucket_view=True,
        **{no_sync: False},
    )


# --- collectives outside the backward pass ---------------------------------------------------


def mean_over_ranks(values: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, torch.Tensor]:
    """The global batch's means of per-rank 0-d means (equal shards), for progress reports."""
    if not ctx.active:
        return values
    keys = list(values)
    flat = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(flat)
    flat.div_(ctx.world_size)
    return dict(zip(keys, flat.unbind()))


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True when any rank says so (a stop request seen by one rank stops them all at the same
    step); on a CPU tensor through gloo, so no GPU synchronisation."""
    if not ctx.active:
        return flag
    global _control_group
    if _control_group is None and ctx.backend != "gloo":  # every rank reaches this together
        _control_group = dist.new_group(backend="gloo")
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control_group)
    return bool(t.item())
