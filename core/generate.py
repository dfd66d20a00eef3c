"""Generation: roll G recurrently from start frames and write numbered PNGs atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import atomic_write_bytes, load_checkpoint
from .data import Letterbox, load_clip, load_full_size, tensor_to_image, to_float
from .device import Runtime, pick_device
from .models import ModelConfig, Motion, build_models, compose

FLAT_RATIO = 0.05  # a frame with under this x the context's detail (spatial std) is "flat"


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


class FullSizePredictor:
    """Next frames at the source's size from a generator trained at a smaller size.

    The context is letterboxed down to the training size, as in training. A warp model's flow
    and blend weights are cut out of the letterbox, scaled up and applied to the full-size
    frames with bicubic sampling, so what moves keeps the source's detail; the difference
    between the model's own training-size frame and that warp, scaled down, is added back
    scaled up (the residual and all coarse structure, at the scale they were learnt at). Other
    models' frames are scaled up. Memory: a few full-size frames and flow fields, never the
    network at full size.
    """

    def __init__(self, g: nn.Module, mcfg: ModelConfig, box: Letterbox, runtime: Runtime):
        self.g, self.mcfg, self.box, self.rt = g, mcfg, box, runtime

    def to_train(self, full: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) at the source size -> letterboxed (N, C, h, w), in [-1, 1]."""
        left, top, w, h = self.box.inner
        small = F.interpolate(full, size=(h, w), mode="bicubic", antialias=True)
        small = small.clamp(-1.0, 1.0)
        right = self.box.dst_w - w - left
        bottom = self.box.dst_h - h - top
        return F.pad(small, (left, right, top, bottom), value=-1.0)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        """(..., h_box, w_box) at the training size -> the picture part at the source size."""
        left, top, w, h = self.box.inner
        lead = x.shape[:-3]
        x = x[..., top : top + h, left : left + w].reshape(-1, *x.shape[-3:-2], h, w)
        x = F.interpolate(x, size=(self.box.src_h, self.box.src_w), mode="bilinear")
        return x.reshape(*lead, *x.shape[-3:])

    @torch.no_grad()
    def step(self, full_ctx: torch.Tensor) -> torch.Tensor:
        """(B, K, C, H, W) full-size context in [-1, 1] -> (B, C, H, W) next frames."""
        b, k, c, hh, ww = full_ctx.shape
        small = self.to_train(full_ctx.reshape(b * k, c, hh, ww)).reshape(b, k, c, *self.box_hw)
        with self.rt.autocast():
            if not self.mcfg.warps:
                pred = self.g(small).float()  # (B, C, h, w)
                left, top, w, h = self.box.inner
                pred = pred[..., top : top + h, left : left + w]
                up = F.interpolate(pred, size=(hh, ww), mode="bicubic", antialias=False)
                return up.clamp(-1.0, 1.0)
            m = self.g.motion(small)
        pred = compose(small.float(), m).clamp(-1.0, 1.0)  # the model's frame, training size
        _, _, w, h = self.box.inner
        flow = self._up(m.flow)  # (B, K, 2, H, W), still in training pixels
        scale = torch.tensor([ww / w, hh / h], device=flow.device).view(1, 1, 2, 1, 1)
        zero = torch.zeros_like(full_ctx[:, 0])
        moved = compose(
            full_ctx.float(), Motion(flow * scale, self._up(m.weight), zero), mode="bicubic"
        )
        # Detail from the full-size warp, everything coarser from the model's own frame: the
        # residual and the blend come in at the scale they were learnt at, and the next
        # context, scaled down, is the frame the model predicted (a residual added at full size
        # instead fed back on itself and blew a hand-held shot up within 100 frames).
        return (moved + self._up(pred - self.to_train(moved))).clamp(-1.0, 1.0)

    @property
    def box_hw(self) -> tuple[int, int]:
        return self.box.dst_h, self.box.dst_w

    def rollout(self, context: torch.Tensor, count: int) -> torch.Tensor:
        """(K, C, H, W) full-size context -> (count, C, H, W) frames, each from the previous."""
        ctx = context[None].to(self.rt.device).float()
        out = []
        for _ in range(count):
            nxt = self.step(ctx)
            out.append(nxt[0])
            ctx = torch.cat([ctx[:, 1:], nxt[:, None]], 1)
        return torch.stack(out)


def check_not_flat(frame: torch.Tensor, context: torch.Tensor, path: str) -> None:
    """Refuse a model whose first frame is a flat colour where the context has detail (a
    generator that collapsed in training: issue 14 saw all-black strips)."""
    ref = float(context.float().flatten(1).std(1).mean())
    got = float(frame.float().std())
    if ref > 0.02 and got < FLAT_RATIO * ref:
        raise ValueError(
            f"The model {os.path.basename(path)} outputs a flat colour instead of a picture (its "
            "training collapsed); train it again, or continue from an earlier checkpoint."
        )


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
    if size == "source":  # generated at the source's size (FullSizePredictor)
        full = load_full_size(ctx_paths, mcfg.channels, exif)  # each file read once
        box = Letterbox(full.shape[-1], full.shape[-2], mcfg.width, mcfg.height)
        predictor = FullSizePredictor(g, mcfg, box, rt)
        ctx = context_tensor(full, mcfg.context).to(rt.device)[None]  # (1, K, C, H, W)
    else:
        clip = load_clip(ctx_paths, mcfg.width, mcfg.height, channels=mcfg.channels, exif=exif)
        ctx = context_tensor(clip.frames, mcfg.context)  # (K, C, H, W)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(count):  # one frame at a time: each is on disk before the next, cancellable
        if should_stop and should_stop():
            break
        if size == "source":
            frame = predictor.step(ctx)  # (1, C, H, W)
            if i == 0:
                check_not_flat(frame[0], ctx[0], checkpoint)
            ctx = torch.cat([ctx[:, 1:], frame[:, None]], 1)
            frame = frame[0]
        else:
            frame = rollout(g, ctx, 1, rt)[0]  # (C, H, W)
            if i == 0:
                check_not_flat(frame, ctx, checkpoint)
            ctx = torch.cat([ctx[1:], frame[None].to(ctx.device)])
        img = tensor_to_image(frame)
        path = os.path.join(out_dir, f"{prefix}{start_number + i:04d}.png")
        atomic_write_bytes(path, png_bytes(img))
        paths.append(path)
        if on_frame:
            on_frame(i, count, path)
    return paths
