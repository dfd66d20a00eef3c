"""A memory estimate for a training job, made before anything is allocated.

Shapes come from a forward pass on PyTorch's meta device (no numbers are computed), so the
estimate follows whatever architecture a preset builds. It is deliberately rough (within about
a factor of 1.5 of the measured peak): its job is to refuse a 4K, batch-32 run on a laptop
before it starts, with a suggestion, rather than to fail an hour in.
"""

from __future__ import annotations

import copy
import os

import torch
import torch.nn as nn

from .generate import MIP_LEVELS
from .models import ModelConfig, build_models

GB = 2**30


def _activation_elems(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Elements of every module output in one forward pass for one sample (what autograd
    keeps for the backward pass, roughly)."""
    total = [0]

    def hook(_m, _i, out):
        if torch.is_tensor(out):
            total[0] += out[0].numel()

    meta = copy.deepcopy(module).to("meta")
    hooks = [m.register_forward_hook(hook) for m in meta.modules() if not list(m.children())]
    with torch.no_grad():
        meta(*(x[:1].to("meta") for x in inputs))
    for h in hooks:
        h.remove()
    return total[0]


def estimate_training_memory(
    mcfg: ModelConfig, batch_size: int, unroll: int, n_frames: int, ema: bool
) -> dict:
    """Bytes needed to train: frames (uint8), weights + Adam state + grads (fp32), and the
    activations of the largest phase (a G update through D or S, unrolled)."""
    g, d, s = build_models(mcfg)
    params = sum(p.numel() for m in (g, d, s) for p in m.parameters())
    g_params = sum(p.numel() for p in g.parameters())
    frame = torch.zeros(1, mcfg.channels, mcfg.height, mcfg.width)
    ctx = torch.zeros(1, mcfg.context, mcfg.channels, mcfg.height, mcfg.width)
    act_g = _activation_elems(g, ctx)
    act_critic = max(_activation_elems(d, frame), _activation_elems(s, frame, frame))
    frames_b = n_frames * mcfg.channels * mcfg.height * mcfg.width
    weights_b = 4 * (params * 4 + (g_params if ema else 0))  # weights, grads, Adam m and v
    acts_b = 4 * batch_size * unroll * (act_g + act_critic) * 2  # x2: saved inputs + grads
    total = frames_b + weights_b + acts_b
    return {
        "frames_bytes": frames_b,
        "weights_bytes": weights_b,
        "activations_bytes": acts_b,
        "total_bytes": int(total * 1.2),  # allocator slack, workspaces
        "train_size": f"{mcfg.width}x{mcfg.height}",  # what it was estimated for
    }


def estimate_generation_memory(mcfg: ModelConfig, src_w: int, src_h: int) -> dict:
    """Bytes needed to extend a strip of ``src_w`` x ``src_h`` frames: G's weights, one
    forward pass at the training size, and the full-size tensors of one step (the context, the
    scaled-up flows and blend weights, the warped frames, the output, the displacement fields
    it follows into the last real frame, pixel art's palette; core/generate.py
    FullSizePredictor; calibrating the motion gain before it needs less). The network never
    runs at the full size, so a 1080p strip costs a few hundred MB, not the gigabytes of
    training at 1080p."""
    g, _, _ = build_models(mcfg)
    ctx = torch.zeros(1, mcfg.context, mcfg.channels, mcfg.height, mcfg.width)
    weights_b = 4 * sum(p.numel() for p in g.parameters())
    acts_b = 4 * _activation_elems(g, ctx)
    k, c = mcfg.context, mcfg.channels
    # context, flow + weight, warped, out, grid, and the followed fields + the last real frame
    per_pixel = k * c + k * 3 + k * c + 4 * c + 2 * k + 2 * (k + 1) + c
    # filtering where that field shrinks the frame: its gradients, the level, the last real
    # frame's filtered copies (kept for the continuation) and a sample
    per_pixel += 4 + 2 + MIP_LEVELS * c + c
    # pixel art: looking for a palette sorts a copy of the context; snapping to it copies the
    # output twice and measures distances to at most 256 colours, 65,536 pixels at a time
    per_pixel += 2 * k * c + 2 * c
    # calibrating the motion gain (before the first frame) needs less: its k + 6 frames as
    # read (uint8) and as floats, 1.25 (k + 6) c floats a pixel; it runs at a few times the
    # training size, not at the full size
    palette_b = 4 * (1 << 16) * 256
    full_b = 4 * per_pixel * src_w * src_h + palette_b
    total = weights_b + acts_b + full_b
    return {
        "weights_bytes": weights_b,
        "activations_bytes": acts_b,
        "full_size_bytes": full_b,
        "total_bytes": int(total * 1.5),  # temporaries of resizing and sampling
    }


def available_memory(device: torch.device) -> int | None:
    """Free bytes on the device (CUDA: free GPU memory; CPU: MemAvailable); None if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


class MemoryEstimateError(ValueError):
    """The job would not fit; the message names what to lower."""


def check_fits(est: dict, device: torch.device, batch_size: int) -> None:
    free = available_memory(device)
    need = est["total_bytes"]
    if free is None or need <= 0.9 * free:
        return
    suggestion = (
        f"lower the batch size (now {batch_size})"
        if est["activations_bytes"] > est["frames_bytes"]
        else "train on fewer frames"
    )
    raise MemoryEstimateError(
        f"This job needs about {need / GB:.1f} GB but the {device.type.upper()} has "
        f"{free / GB:.1f} GB free: {suggestion}, or lower the training resolution or width "
        "multiplier."
    )
