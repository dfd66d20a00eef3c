"""Generation: roll G recurrently from start frames and write numbered PNGs atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import atomic_write_bytes, load_checkpoint
from .data import (
    FrameError,
    Letterbox,
    Stopped,
    load_clip,
    load_full_size,
    tensor_to_image,
    to_float,
)
from .device import Runtime, pick_device
from .loops import HISTORY, find_loop, loop_index
from .models import ModelConfig, Motion, build_models, compose, warp

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
    and blend weights are cut out of the letterbox, scaled up and applied to full-size frames
    with bicubic sampling, so what moves keeps the source's detail; the difference between the
    model's own training-size frame and that warp, scaled down, is added back scaled up (the
    residual and all coarse structure, at the scale they were learnt at). Other models' frames
    are scaled up. Memory: a few full-size frames and flow fields, never the network at full
    size.

    **One resampling per frame** (``track=True``, the default). Warping a generated frame again
    at every step resamples the picture again each time: over a long continuation the detail
    softens and most continuations freeze (docs/QUALITY.md, ``default_resample``: sharpness
    0.82 and 8 of 24 runs stable for 100 frames, against 1.07 and 15). So the predictor
    follows, for each generated frame, where its pixels came from in the last real frame (a
    full-size displacement field, the model's flows chained); every frame's detail is sampled
    once from that real frame, and only the coarse picture passes through the model's own
    frames.
    Context frames before the last real one have no such field; their share of the blend is
    warped from them directly, as before. Call ``begin`` for a new continuation (``step``
    begins on its first call, and when given a context it did not produce). ``smooth`` keeps
    the chained field as smooth as the model's own flows (left at full size, it folds where
    the content folds and turns a cloth simulation into noise). Measured against
    ``track=False`` (warping each generated frame again) in docs/QUALITY.md. ``mip``: where the
    followed field shrinks the real frame, sample it filtered (``_sample_anchor``), as a
    texture is, instead of aliasing its detail into creases.

    **Motion gain** (``gain``): the model's flows are multiplied by it at every step, its own
    training-size frame included. ``extend`` calibrates it on the strip's last frames
    (``calibrate_motion_gain``); 1.0 is the model as trained.

    **Pixel art keeps its palette** (``palette=True``, the default): when the real context has
    at most 256 colours (``find_palette``), every generated pixel takes the nearest of them, so
    edges stay hard and no blended or half-transparent colour appears (a sprite otherwise
    trails translucent ghosts). Sampling nearest instead was worse on every pixel-art clip.
    """

    def __init__(
        self,
        g: nn.Module,
        mcfg: ModelConfig,
        box: Letterbox,
        runtime: Runtime,
        track: bool = True,
        smooth: bool = True,
        palette: bool = True,
        mip: bool = True,
        gain: float = 1.0,
    ):
        self.g, self.mcfg, self.box, self.rt = g, mcfg, box, runtime
        self.gain = float(gain)  # the model's flows x this (calibrate_motion_gain)
        self.track, self.smooth = track, smooth
        self.mip = mip  # filter where the followed field shrinks the anchor (_sample_anchor)
        self.palette = palette  # pixel art keeps its palette (find_palette, snap_to_palette)
        self._colours: torch.Tensor | None = None  # (P, C) the context's palette, or None
        self._anchor: torch.Tensor | None = None  # the last real frame (B, C, H, W)
        self._mips: list[torch.Tensor] | None = None  # its filtered copies, made when first needed
        self._disp: list[torch.Tensor | None] = []  # per context slot: field into the anchor
        self._last: torch.Tensor | None = None  # the context's last frame step() expects next

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

    def begin(self, full_ctx: torch.Tensor) -> None:
        """Start a continuation of the (B, K, C, H, W) real context frames."""
        b, k, _, hh, ww = full_ctx.shape
        self._anchor = full_ctx[:, -1].float()
        self._mips = None
        zero = torch.zeros(b, 2, hh, ww, device=full_ctx.device)
        self._disp = [None] * (k - 1) + [zero]
        self._last = full_ctx[:, -1]  # step() on this context continues from here
        self._colours = find_palette(full_ctx) if self.palette else None

    def _continues(self, full_ctx: torch.Tensor) -> bool:
        return (
            self._anchor is not None
            and self._last is not None
            and full_ctx[:, -1].shape == self._last.shape
            and bool(torch.equal(full_ctx[:, -1], self._last))
        )

    @torch.no_grad()
    def step(self, full_ctx: torch.Tensor) -> torch.Tensor:
        """(B, K, C, H, W) full-size context in [-1, 1] -> (B, C, H, W) next frames."""
        b, k, c, hh, ww = full_ctx.shape
        if not self._continues(full_ctx):
            self.begin(full_ctx)
        small = self.to_train(full_ctx.reshape(b * k, c, hh, ww)).reshape(b, k, c, *self.box_hw)
        with self.rt.autocast():
            if not self.mcfg.warps:
                pred = self.g(small).float()  # (B, C, h, w)
                left, top, w, h = self.box.inner
                pred = pred[..., top : top + h, left : left + w]
                up = F.interpolate(pred, size=(hh, ww), mode="bicubic", antialias=False)
                self._last = self._keep_palette(up.clamp(-1.0, 1.0))
                return self._last
            m = self.g.motion(small)
        if self.gain != 1.0:
            m.flow = m.flow * self.gain
        pred = compose(small.float(), m).clamp(-1.0, 1.0)  # the model's frame, training size
        _, _, w, h = self.box.inner
        flow = self._up(m.flow)  # (B, K, 2, H, W), still in training pixels
        scale = torch.tensor([ww / w, hh / h], device=flow.device).view(1, 1, 2, 1, 1)
        flow = flow * scale
        weight = self._up(m.weight)  # (B, K, 1, H, W)
        if not self.track:
            zero = torch.zeros_like(full_ctx[:, 0])
            moved = compose(full_ctx.float(), Motion(flow, weight, zero), mode="bicubic")
        else:
            moved, disp = self._tracked(full_ctx.float(), flow, weight)
        # Detail from the full-size warp, everything coarser from the model's own frame: the
        # residual and the blend come in at the scale they were learnt at, and the next
        # context, scaled down, is the frame the model predicted (a residual added at full size
        # instead fed back on itself and blew a hand-held shot up within 100 frames).
        out = (moved + self._up(pred - self.to_train(moved))).clamp(-1.0, 1.0)
        out = self._keep_palette(out)
        if self.track:
            self._disp = self._disp[1:] + [disp]
        self._last = out
        return out

    def _keep_palette(self, frames: torch.Tensor) -> torch.Tensor:
        return frames if self._colours is None else snap_to_palette(frames, self._colours)

    def _tracked(self, ctx: torch.Tensor, flow: torch.Tensor, weight: torch.Tensor):
        """The blended warp with the detail of generated context frames sampled once from the
        anchor: (moved (B, C, H, W), the new frame's displacement into the anchor)."""
        known = torch.zeros_like(weight[:, 0])
        disp = torch.zeros_like(flow[:, 0])
        moved = torch.zeros_like(ctx[:, 0])
        for i, d in enumerate(self._disp):
            if d is None:  # a real frame before the anchor: warp it directly
                moved = moved + weight[:, i] * warp(ctx[:, i], flow[:, i], "bicubic")
                continue
            # frame i is anchor(q + d(q)); the new frame takes frame i at p + flow(p)
            disp = disp + weight[:, i] * (flow[:, i] + warp(d, flow[:, i], padding="border"))
            known = known + weight[:, i]
        disp = disp / known.clamp_min(1e-6)
        if self.smooth:
            # as smooth as the model's flows: chained at full size, a field folds into noise
            _, _, w, h = self.box.inner
            disp = F.interpolate(
                F.interpolate(disp, size=(h, w), mode="area"), size=disp.shape[-2:], mode="bilinear"
            )
        moved = moved + known * self._sample_anchor(disp)
        return moved, disp

    def _sample_anchor(self, disp: torch.Tensor) -> torch.Tensor:
        """The last real frame sampled at p + disp(p), filtered where the field shrinks it.

        Where a chained field packs an area of the anchor into fewer output pixels (its
        Jacobian determinant above 1), point-sampling it aliases: the cloth flag came out with
        1.5x the real frames' fine detail, in creases and crawling texture. As a texture unit
        does (mip-mapping), such pixels are sampled from the anchor averaged over 2x2 and 4x4
        blocks, blended by log2 of the linear shrink factor; elsewhere it is a plain bicubic
        sample, so what does not shrink keeps all its detail (docs/QUALITY.md, ``_nomip``)."""
        out = warp(self._anchor, disp, "bicubic")
        if not self.mip:
            return out
        dx = torch.gradient(disp, dim=(-1,))[0]
        dy = torch.gradient(disp, dim=(-2,))[0]
        det = ((1 + dx[:, 0]) * (1 + dy[:, 1]) - dy[:, 0] * dx[:, 1]).abs()[:, None]
        level = (0.5 * torch.log2(det.clamp_min(1e-6))).clamp(0.0, float(MIP_LEVELS))
        if float(level.max()) <= 0.0:
            return out
        for lv, blur in enumerate(self._filtered(), 1):
            share = (level - (lv - 1)).clamp(0.0, 1.0)
            out = out + share * (warp(blur, disp, "bilinear") - out)
        return out

    def _filtered(self) -> list[torch.Tensor]:
        """The anchor averaged over 2x2, 4x4, ... blocks, at its own size; made once per
        continuation (the anchor does not change within one), only when a field shrinks it."""
        if self._mips is None:
            hh, ww = self._anchor.shape[-2:]
            self._mips = []
            for lv in range(1, MIP_LEVELS + 1):
                f = 2**lv
                if hh < 2 * f or ww < 2 * f:
                    break
                blur = F.avg_pool2d(self._anchor, f, ceil_mode=True)
                self._mips.append(F.interpolate(blur, size=(hh, ww), mode="bilinear"))
        return self._mips

    @property
    def box_hw(self) -> tuple[int, int]:
        return self.box.dst_h, self.box.dst_w

    def rollout(
        self,
        context: torch.Tensor,
        count: int,
        until: Callable[[torch.Tensor], bool] | None = None,
        keep: bool = True,
    ) -> torch.Tensor:
        """(K, C, H, W) full-size context -> (count, C, H, W) frames, each from the previous;
        fewer when ``until(frame)`` says stop (the frame it was given is the last one).
        ``keep=False``: only the last frame is kept and returned (1, C, H, W)."""
        ctx = context[None].to(self.rt.device).float()
        self.begin(ctx)
        out = []
        for _ in range(count):
            nxt = self.step(ctx)
            if keep:
                out.append(nxt[0])
            else:
                out = [nxt[0]]
            if until is not None and until(nxt[0]):
                break
            ctx = torch.cat([ctx[:, 1:], nxt[:, None]], 1)
        return torch.stack(out)


MOTION_GAINS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)  # the flow gains calibration tries
CALIBRATION_FRAMES = 6  # real frames continued per gain (with a 2-frame context: 8 frames)
MIN_CALIBRATION_FRAMES = 3  # fewer, and the model's flows are used as they are
CALIBRATION_PIXELS = 4  # calibrate at most at this x the training size's pixel count
MIN_GAIN, MAX_GAIN = 0.1, 4.0  # the motion gains a user may set
SSIM_WINDOW = 11  # pixels: frames narrower than this are not calibrated
# A gain above 1 must also keep the continuation steady (``Steadiness``) for the frames asked for,
# up to STEADY_FRAMES of them, judged against REFERENCE_FRAMES of the strip's own frames.
STEADY_FRAMES = 100
REFERENCE_FRAMES = 24  # evenly spaced over the frames extend reads (up to core.loops.HISTORY)
COLOUR_MARGIN = 0.1  # per channel, in [0, 1]: how far a frame's mean colour may leave the range
FADE_FLOOR = 0.5  # x the strip's mean contrast (per-frame std) that every frame keeps
BLOWUP_CEILING = 4.0  # x the strip's mean detail (luma Laplacian energy) no frame exceeds


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each pair of frames (N, C, H, W) in [0, 1] -> (N,): Wang et al. (2004),
    an 11x11 Gaussian window (sigma 1.5), each channel on its own, valid pixels only (frames
    at least 11 pixels on each side)."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=a.device) - SSIM_WINDOW // 2
    w = torch.exp(-(x**2) / (2 * 1.5**2))
    w = w / w.sum()
    c = a.shape[1]
    kx = w.view(1, 1, 1, SSIM_WINDOW).repeat(c, 1, 1, 1)
    ky = w.view(1, 1, SSIM_WINDOW, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)

    a, b = a.float(), b.float()
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s.flatten(1).mean(1)


@torch.no_grad()
def calibrate_motion_gain(
    g: nn.Module,
    mcfg: ModelConfig,
    frames: torch.Tensor,
    runtime: Runtime,
    gains: tuple[float, ...] = MOTION_GAINS,
    count: int = CALIBRATION_FRAMES,
    ahead: int = 0,
    reference: torch.Tensor | Callable[[], torch.Tensor | None] | None = None,
    held: dict[float, str] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[float, dict[float, float]]:
    """The flow gain with which the model best continues the strip's own last frames.

    A next-frame model trained with an L1 loss hedges: where it cannot be sure how far
    something moves, a short flow costs it less than a long wrong one. At the training size
    its blend and residual make up for part of that, but the detail ``FullSizePredictor``
    moves at the source's size follows the flows alone and lags: on the real clips the camera
    shots moved at about 0.4x the real speed and a scrolling level drifted off its tiles
    (docs/QUALITY.md, "Motion gain"). So before extending, the predictor continues the last
    ``count`` real frames up to the start frame (itself included) from the frames before them,
    once per gain, and the gain whose frames match the real ones best (mean SSIM; the smallest
    on a tie) is used for the new frames. Only the strip's own frames are used, never the
    frames to be generated.

    **A gain must keep the continuation steady** (``ahead`` > 0: the frames to be generated).
    Six frames do not show what a gain does over a long continuation: where a shot moves
    forward, flows sped up magnify the sky sooner, and over 100 frames the picture drifts past
    any colour the shot has (docs/QUALITY.md, "Motion gain, kept steady"). So, best score first,
    a gain above 1 continues the strip from the start frame for ``min(ahead, STEADY_FRAMES)``
    frames, and is used only when that continuation is steady against the strip's own frames
    (``Steadiness``: ``reference``, (M, C, H, W) in [-1, 1] at any size, or a function that
    reads them, called only when a check runs, else ``frames``; the continuation stops at its
    first unsteady frame); else the next best slower gain is tried (a faster one than a gain
    that drifted would drift sooner, and is skipped), down to 1.0, the model as trained, which
    is always kept. ``held`` (when given) is told each gain checked and passed over, and why.

    ``frames``: (N, C, H, W) in [-1, 1], the strip's frames up to the start frame at the
    source's size. Calibration runs at most at ``CALIBRATION_PIXELS`` x the training size's
    pixels (scaled down, antialiased), so it costs the same for any source: about a second on
    a 2-core CPU, plus reading the frames, and a few seconds per steadiness check. Returns
    (gain, {gain: mean SSIM}); (1.0, {}) when the model does not warp, there are fewer than its
    context + ``MIN_CALIBRATION_FRAMES`` frames or they are under ``SSIM_WINDOW`` pixels on a
    side. ``should_stop`` (a Cancel) is asked before each gain and after each frame of a
    steadiness check: when it says stop, 1.0 is returned at once (with the scores judged so
    far), and ``extend`` then writes nothing."""
    k = mcfg.context
    count = min(count, frames.shape[0] - k)
    if not mcfg.warps or count < MIN_CALIBRATION_FRAMES:
        return 1.0, {}
    h, w = frames.shape[-2:]
    if min(h, w) < SSIM_WINDOW:  # a sprite a few pixels across: nothing to measure SSIM on
        return 1.0, {}
    size = calibration_size(h, w, mcfg)
    frames = scaled(frames[-(k + count) :].to(runtime.device).float(), size)
    box = Letterbox(frames.shape[-1], frames.shape[-2], mcfg.width, mcfg.height)
    real = (frames[k:] + 1.0) / 2.0
    stop = should_stop or (lambda: False)
    scores: dict[float, float] = {}
    for gain in gains:
        if stop():
            break
        pred = FullSizePredictor(g, mcfg, box, runtime, gain=gain)
        out = pred.rollout(frames[:k], count)
        scores[gain] = float(ssim((out + 1.0) / 2.0, real).mean())
    ranked = sorted(scores, key=lambda gn: (-scores[gn], gn))
    if not ranked or stop():  # cancelled before any or every gain was judged
        return 1.0, scores
    if ahead <= 0:
        return ranked[0], scores
    judge = None
    tried = []  # gains whose continuation was not steady
    for gain in ranked:
        if gain <= 1.0:  # no faster than the model as trained: kept as it is
            return gain, scores
        if any(gain >= t for t in tried):
            continue  # faster than a gain that drifted: it would drift sooner
        if judge is None:  # the strip's frames are read only when a check runs
            ref = reference() if callable(reference) else reference
            judge = Steadiness(frames if ref is None else scaled(ref.to(frames), size))
        why: list[str] = []
        pred = FullSizePredictor(g, mcfg, box, runtime, gain=gain)

        def until(frame: torch.Tensor, judge=judge, why=why) -> bool:
            return judge.fails(frame, reasons=why) or stop()

        pred.rollout(frames[-k:], min(ahead, STEADY_FRAMES), until=until, keep=False)
        if stop():  # cancelled mid-check: not judged steady
            return 1.0, scores
        if not why:
            return gain, scores
        tried.append(gain)
        if held is not None:
            held[gain] = why[0]
    return 1.0, scores


def calibration_size(h: int, w: int, mcfg: ModelConfig) -> tuple[int, int]:
    """(H, W) frames of h x w are calibrated at: at most ``CALIBRATION_PIXELS`` x the training
    size's pixels, the same aspect."""
    cap = CALIBRATION_PIXELS * mcfg.width * mcfg.height
    if h * w <= cap:
        return h, w
    f = (cap / (h * w)) ** 0.5
    return max(SSIM_WINDOW, round(h * f)), max(SSIM_WINDOW, round(w * f))


def scaled(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] scaled to ``size`` (antialiased bicubic), or as they are."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bicubic", antialias=True).clamp(-1, 1)


def luma_detail(x: torch.Tensor) -> torch.Tensor:
    """Per frame of (N, C, H, W) in [0, 1]: the mean squared Laplacian of its luma (times alpha
    where there is one), the sharpness measure of docs/QUALITY.md."""
    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    if x.shape[1] == 4:
        y = y * x[:, 3]
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device)
    return F.conv2d(y[:, None], k[None, None].to(y)).pow(2).mean((1, 2, 3))


def visible(x: torch.Tensor) -> torch.Tensor:
    """Frames (N, C, H, W) in [0, 1] as they are seen: with an alpha channel, the colours
    premultiplied by it (what lies under a transparent pixel is not seen, so it neither drifts
    nor adds contrast), alpha kept as the fourth channel; other frames as they are."""
    if x.shape[1] != 4:
        return x
    return torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], 1)


class Steadiness:
    """Judges generated frames against the strip's own frames (M, C, H, W) in [-1, 1]: a frame
    is not steady when a value is not finite, its mean colour leaves the range of the strip's
    mean colours by more than ``COLOUR_MARGIN`` on a channel (a drift), it has under
    ``FADE_FLOOR`` x the strip's contrast (a fade to a flat colour) or over
    ``BLOWUP_CEILING`` x its detail (noise). Colours and contrast are judged as seen
    (``visible``: premultiplied by alpha where there is one). The bounds are docs/QUALITY.md's
    for a stable 100-frame continuation; the strip's frames stand in for the footage to come."""

    def __init__(self, reference: torch.Tensor):
        real = ((reference.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        seen = visible(real)
        means = seen.mean((2, 3))
        self.lo, self.hi = means.min(0).values, means.max(0).values
        self.contrast = float(seen.flatten(1).std(1).mean())
        self.detail = float(luma_detail(real).mean())

    def why(self, frames: torch.Tensor) -> str | None:
        """Why frames (N, C, H, W) in [-1, 1] are not steady (the first reason), or None."""
        if not bool(torch.isfinite(frames).all()):
            return "it is not finite"
        gen = ((frames.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        seen = visible(gen)
        got = seen.mean((2, 3))
        outside = float(torch.maximum(self.lo - got, got - self.hi).max())
        if outside > COLOUR_MARGIN:
            return f"its colours drift {outside:.2f} past the strip's"
        low = float(seen.flatten(1).std(1).min())
        if self.contrast > 0.01 and low < FADE_FLOOR * self.contrast:
            return "it fades to a flat colour"
        if self.detail > 0 and float(luma_detail(gen).max()) > BLOWUP_CEILING * self.detail:
            return "its detail turns to noise"
        return None

    def fails(self, frame: torch.Tensor, reasons: list[str]) -> bool:
        """For ``FullSizePredictor.rollout(until=...)``: one frame (C, H, W); a reason is
        appended to ``reasons`` when it is not steady."""
        why = self.why(frame[None])
        if why is not None:
            reasons.append(why)
        return why is not None


MIP_LEVELS = 2  # the anchor averaged over 2x2 and 4x4 pixels where a field shrinks it
MAX_PALETTE = 256  # colours; pixel art and flat-shaded sprites use far fewer


def find_palette(frames: torch.Tensor, limit: int = MAX_PALETTE) -> torch.Tensor | None:
    """The (P, C) colours of frames (..., C, H, W) when there are 2 to ``limit`` of them and
    they are under 1 % of the pixels (pixel art: 13-14 colours in the clips we measure on;
    camera footage, smoke and cloth: 671 to 30,000), else None. One colour is a flat frame
    (black before a fade-in, say), not a palette: it would pin every later frame to it."""
    c = frames.shape[-3]
    px = frames.detach().float().movedim(-3, -1).reshape(-1, c)
    if px.shape[0] == 0:
        return None
    # a cheap look first: a small sample with more colours than the limit ends it
    step = max(1, px.shape[0] // 4096)
    if torch.unique(px[::step], dim=0).shape[0] > limit:
        return None
    colours = torch.unique(px, dim=0)
    if not 2 <= colours.shape[0] <= limit or colours.shape[0] > 0.01 * px.shape[0]:
        return None
    return colours


def snap_to_palette(frames: torch.Tensor, colours: torch.Tensor, chunk: int = 1 << 16):
    """Each pixel of (B, C, H, W) frames replaced by its nearest colour of the (P, C) palette."""
    b, c, h, w = frames.shape
    px = frames.movedim(1, -1).reshape(-1, c)
    out = torch.empty_like(px)
    pal = colours.to(px)
    for i in range(0, px.shape[0], chunk):
        out[i : i + chunk] = pal[torch.cdist(px[i : i + chunk], pal).argmin(1)]
    return out.reshape(b, h, w, c).movedim(-1, 1)


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


def _context_and_gain(
    g: nn.Module,
    mcfg: ModelConfig,
    frames: list[str],
    motion_gain: float | None,
    rt: Runtime,
    exif: bool,
    count: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[torch.Tensor, float, bool]:
    """The context frames at the source's size (uint8, each file read once), the motion gain
    and whether it was calibrated: ``motion_gain`` as given, or calibrated on the frames up to
    the start (1.0, not calibrated, where they are too few or older ones differ in size from
    the start frame), kept steady for the ``count`` frames to be generated against up to
    ``REFERENCE_FRAMES`` of ``frames`` (``calibrate_motion_gain``)."""
    k = mcfg.context
    if motion_gain is not None or not mcfg.warps:
        full = load_full_size(frames[-k:], mcfg.channels, exif, should_stop)
        return full, motion_gain or 1.0, False
    paths = frames[-(k + CALIBRATION_FRAMES) :]
    try:
        full = load_full_size(paths, mcfg.channels, exif, should_stop)
    except FrameError:  # e.g. older frames of another size: the model's own motion
        return load_full_size(frames[-k:], mcfg.channels, exif, should_stop), 1.0, False
    size = calibration_size(full.shape[-2], full.shape[-1], mcfg)
    history = frames[-HISTORY:]

    def reference() -> torch.Tensor | None:  # read only when a gain above 1 is checked
        try:
            picks = [history[i] for i in reference_picks(len(history))]
            return load_scaled(picks, size, mcfg.channels, exif, should_stop)
        except FrameError:  # older frames of another size: the calibration's frames alone
            return None
        except Stopped:  # cancelled: the check that asked stops at its first frame
            return None

    gain, scores = calibrate_motion_gain(
        g, mcfg, to_float(full), rt, ahead=count, reference=reference, should_stop=should_stop
    )
    # a copy: the older frames are not kept while generating
    return full[-k:].clone(), gain, bool(scores)


def reference_picks(n: int) -> list[int]:
    """Which of the last n frames (up to ``HISTORY``) a steadiness check compares with: up to
    ``REFERENCE_FRAMES`` evenly spaced, the first and the last included."""
    n = min(n, HISTORY)
    if n <= REFERENCE_FRAMES:
        return list(range(n))
    return sorted({round(i * (n - 1) / (REFERENCE_FRAMES - 1)) for i in range(REFERENCE_FRAMES)})


def load_scaled(
    paths: list[str],
    size: tuple[int, int],
    channels: int,
    exif: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Frames (N, C, H, W) in [-1, 1] scaled to ``size`` (H, W) as ``scaled`` does, one file
    at a time (a 1080p strip's history is never all in memory at its own size); FrameError
    when their sizes differ, ``Stopped`` when ``should_stop`` says stop before a file."""
    out, first = [], None
    for path in paths:
        full = load_full_size([path], channels, exif, should_stop)
        first = first or tuple(full.shape[-2:])
        if tuple(full.shape[-2:]) != first:
            raise FrameError(f"{os.path.basename(path)} differs in size from the other frames.")
        out.append(scaled(to_float(full), size))
    return torch.cat(out)


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
    loop: bool = True,
    on_loop: Callable[[int], None] | None = None,
    motion_gain: float | None = None,
    on_gain: Callable[[float, bool], None] | None = None,
) -> list[str]:
    """Generate ``count`` frames after ``frames`` (the last is the start frame; the model sees
    the last few, a loop is looked for in up to ``core.loops.HISTORY``) and write
    ``<out_dir>/<prefix><number:04d>.png``. ``size``: 'source' scales back to the start
    frame's size, 'train' keeps the training resolution. ``loop``: where the frames end on a
    repeating cycle (``core.loops.find_loop``), continue the cycle instead of generating;
    ``on_loop(period)`` is told when that happens. ``motion_gain``: the factor on the model's
    flows for frames at the source's size; None calibrates it on the frames up to the start
    (``calibrate_motion_gain``), and ``on_gain(gain, calibrated)`` is told the one used and
    whether it was calibrated (False: given, or too few frames to calibrate). Returns the
    written paths (fewer than ``count`` when ``should_stop`` said stop; every returned file is
    complete)."""
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
    if motion_gain is not None and not MIN_GAIN <= motion_gain <= MAX_GAIN:
        raise ValueError(
            f"The motion gain must be between {MIN_GAIN} and {MAX_GAIN} (1 = the model's own "
            f"motion), not {motion_gain}."
        )
    rt = runtime or pick_device(device)
    g, mcfg, _ = load_generator(checkpoint, rt)
    ctx_paths = frames[-mcfg.context :]
    history = frames[-HISTORY:]
    period = None
    if loop and len(history) > 1:
        try:
            small = load_clip(
                history, mcfg.width, mcfg.height, mcfg.channels, exif=exif, should_stop=should_stop
            )
            period = find_loop(small.frames)
        except FrameError:  # e.g. older frames of another size: no loop; the context decides
            period = None
        except Stopped:  # cancelled while reading the history: nothing written
            return []
    if period is not None:  # the cycle again, each frame read from its own file
        if on_loop:
            on_loop(period)

        def next_frame(i: int) -> torch.Tensor:
            src = history[loop_index(len(history), period, i)]
            if size == "source":
                return to_float(load_full_size([src], mcfg.channels, exif)[0])
            small = load_clip([src], mcfg.width, mcfg.height, channels=mcfg.channels, exif=exif)
            return to_float(small.frames[0])

    elif size == "source":  # generated at the source's size (FullSizePredictor)
        try:
            full, gain, calibrated = _context_and_gain(
                g, mcfg, frames, motion_gain, rt, exif, count=count, should_stop=should_stop
            )
        except Stopped:  # cancelled while reading the frames to calibrate on
            return []
        box = Letterbox(full.shape[-1], full.shape[-2], mcfg.width, mcfg.height)
        if on_gain and mcfg.warps:
            on_gain(gain, calibrated)
        predictor = FullSizePredictor(g, mcfg, box, rt, gain=gain)
        ctx = context_tensor(full, mcfg.context).to(rt.device)[None]  # (1, K, C, H, W)

        def next_frame(i: int) -> torch.Tensor:
            nonlocal ctx
            frame = predictor.step(ctx)  # (1, C, H, W)
            if i == 0:
                check_not_flat(frame[0], ctx[0], checkpoint)
            ctx = torch.cat([ctx[:, 1:], frame[:, None]], 1)
            return frame[0]

    else:
        clip = load_clip(ctx_paths, mcfg.width, mcfg.height, channels=mcfg.channels, exif=exif)
        ctx = context_tensor(clip.frames, mcfg.context)  # (K, C, H, W)

        def next_frame(i: int) -> torch.Tensor:
            nonlocal ctx
            frame = rollout(g, ctx, 1, rt)[0]  # (C, H, W)
            if i == 0:
                check_not_flat(frame, ctx, checkpoint)
            ctx = torch.cat([ctx[1:], frame[None].to(ctx.device)])
            return frame

    paths = []
    for i in range(count):  # one frame at a time: each is on disk before the next, cancellable
        if should_stop and should_stop():
            break
        img = tensor_to_image(next_frame(i))
        if i == 0:  # made with the first frame: a job cancelled before it leaves no folder
            os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, f"{prefix}{start_number + i:04d}.png")
        atomic_write_bytes(path, png_bytes(img))
        paths.append(path)
        if on_frame:
            on_frame(i, count, path)
    return paths
