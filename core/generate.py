"""Generation: roll G recurrently from start frames and write numbered PNGs atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import torch
import torch.nn as nn

from .checkpoint import atomic_write_bytes, load_checkpoint
from .data import Letterbox, load_clip, tensor_to_image, to_float
from .device import Runtime, pick_device
from .models import ModelConfig, build_models


def load_generator(path: str, runtime: Runtime) -> tuple[nn.Module, ModelConfig, dict]:
    """The generator to sample from (the EMA copy when the checkpoint has one), in eval mode."""
    ck = load_checkpoint(path)
    mcfg = ModelConfig.from_dict(ck.model_config)
    g, _, _ = build_models(mcfg)
    try:
        g.load_state_dict(ck.weights.get("g_ema", ck.weights["g"]))
    except RuntimeError as exc:
        raise ValueError(
            f"{os.path.basename(path)} does not match its own model settings."
        ) from exc
    # NHWC like training (core/train.py): the fast layout on CUDA and the CPU, not on MPS.
    fmt = torch.channels_last if runtime.type in ("cuda", "cpu") else torch.contiguous_format
    g = g.to(runtime.device, memory_format=fmt).eval()
    return g, mcfg, {"step": ck.step, "source": ck.source}


@torch.no_grad()
def rollout(g: nn.Module, context: torch.Tensor, count: int, runtime: Runtime) -> torch.Tensor:
    """Predict ``count`` frames, each from the previous predictions.

    context: (K, C, H, W) or (B, K, C, H, W) in [-1, 1] (several start points at once);
    returns (count, C, H, W) or (B, count, C, H, W).
    """
    single = context.dim() == 4
    ctx = (context[None] if single else context).to(runtime.device)
    was_training = g.training
    g.eval()
    out = []
    for _ in range(count):
        with runtime.autocast():
            nxt = g(ctx).float()  # (B, C, H, W)
        out.append(nxt)
        ctx = torch.cat([ctx[:, 1:], nxt[:, None]], 1)
    g.train(was_training)
    frames = torch.stack(out, 1)
    return frames[0] if single else frames


def context_tensor(frames: torch.Tensor, k: int) -> torch.Tensor:
    """The last k frames as (k, C, H, W) float; a clip shorter than k repeats its first frame
    (no motion known yet)."""
    if frames.shape[0] < k:
        pad = frames[:1].expand(k - frames.shape[0], *frames.shape[1:])
        frames = torch.cat([pad, frames])
    return to_float(frames[-k:])


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def extend(
    checkpoint: str,
    frames: list[str],
    count: int,
    out_dir: str,
    prefix: str = "frame_",
    start_number: int = 1,
    size: str = "source",
    device: str = "auto",
    on_frame: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    runtime: Runtime | None = None,
    exif: bool = True,
) -> list[str]:
    """Generate ``count`` frames after ``frames`` (context; the last is the start frame) and
    write ``<out_dir>/<prefix><number:04d>.png``. ``size``: 'source' scales back to the start
    frame's size, 'train' keeps the training resolution. Returns the written paths (fewer than
    ``count`` when ``should_stop`` said stop; every returned file is complete)."""
    if count < 1:
        raise ValueError("The number of frames to generate must be at least 1.")
    if size not in ("source", "train"):
        raise ValueError(f"size must be 'source' or 'train', not {size!r}.")
    if os.sep in prefix or (os.altsep and os.altsep in prefix) or ".." in prefix:
        raise ValueError("The file name prefix must not contain path separators.")
    taken = [
        name
        for name in (f"{prefix}{start_number + i:04d}.png" for i in range(count))
        if os.path.exists(os.path.join(out_dir, name))
    ]
    if taken:
        raise ValueError(
            f"{os.path.join(out_dir, taken[0])} exists"
            + (f" (and {len(taken) - 1} more)" if len(taken) > 1 else "")
            + "; choose another output folder, prefix or start number: frames are never "
            "overwritten."
        )
    rt = runtime or pick_device(device)
    g, mcfg, _ = load_generator(checkpoint, rt)
    ctx_paths = frames[-mcfg.context :]
    clip = load_clip(ctx_paths, mcfg.width, mcfg.height, channels=mcfg.channels, exif=exif)
    ctx = context_tensor(clip.frames, mcfg.context)  # (K, C, H, W)
    os.makedirs(out_dir, exist_ok=True)
    box: Letterbox = clip.letterbox
    paths = []
    for i in range(count):  # one frame at a time: each is on disk before the next, cancellable
        if should_stop and should_stop():
            break
        frame = rollout(g, ctx, 1, rt)[0]  # (C, H, W)
        ctx = torch.cat([ctx[1:], frame[None].to(ctx.device)])
        img = tensor_to_image(frame)
        if size == "source":
            img = box.undo(img)
        path = os.path.join(out_dir, f"{prefix}{start_number + i:04d}.png")
        atomic_write_bytes(path, png_bytes(img))
        paths.append(path)
        if on_frame:
            on_frame(i, count, path)
    return paths
