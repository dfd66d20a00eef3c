"""The three networks of FrameSequenceGAN and the presets that configure them.

Preset ``paper`` is Tables 1-3 of the paper layer for layer (kernel sizes recovered from the
tables' parameter counts). Preset ``default`` is our improved model, chosen by the quality
benchmark (docs/QUALITY.md): a residual U-Net generator that sees the previous frame(s) too, and
spectrally normalised patch discriminators.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = ("paper", "default")
HEADS = ("warp", "residual")


@dataclass
class ModelConfig:
    preset: str = field(
        default="default",
        metadata={"help": "architecture: 'paper' (Tables 1-3 exactly) or 'default' (improved)"},
    )
    width: int = field(default=128, metadata={"help": "training frame width in pixels"})
    height: int = field(default=72, metadata={"help": "training frame height in pixels"})
    channels: int = field(
        default=3, metadata={"help": "3 (RGB) or 4 (RGBA); taken from the frames when training"}
    )
    width_mult: float = field(
        default=1.0,
        metadata={"help": "multiplies every layer's channel count (e.g. 0.125 for tiny CPU tests)"},
    )
    dropout: float = field(
        default=0.3,
        metadata={
            "help": "dropout rate of the paper preset's layers. The paper does not state it; 0.3 "
            "is the rate of the TensorFlow 2 DCGAN example the paper's Keras code follows"
        },
    )
    leaky_slope: float = field(
        default=0.3,
        metadata={
            "help": "LeakyReLU slope of the paper preset; 0.3 is Keras' default LeakyReLU(), "
            "which the paper's tables name without an argument"
        },
    )
    context: int = field(
        default=2,
        metadata={
            "help": "default preset: frames the generator sees (I_t-k+1 .. I_t); one frame cannot "
            "tell which way a pendulum swings. The paper preset always uses 1"
        },
    )
    base: int = field(
        default=16,
        metadata={
            "help": "default preset: channels of the U-Net's first level (16 since the warp "
            "head: at 32 a 2-core CPU ran a third of the steps in the same minutes and scored "
            "no better on real clips, docs/QUALITY.md)"
        },
    )
    levels: int = field(
        default=3, metadata={"help": "default preset: U-Net down-sampling levels (receptive field)"}
    )
    head: str = field(
        default="warp",
        metadata={
            "help": "default preset's output: 'warp' (the context frames moved by predicted flow, "
            "blended by a predicted mask, plus a small synthesised residual; applied to the "
            "full-size frames when generating, so detail survives at any resolution) or "
            "'residual' (last frame + 2 tanh(delta), clamped: the model before 0.2, kept to "
            "load its checkpoints and for the ablation)"
        },
    )

    motion_prior: bool = field(
        default=False,
        metadata={
            "help": "warp head: start the flows from a constant-velocity estimate (pyramidal "
            "Lucas-Kanade between the last two context frames, estimate_flow) that the "
            "network sees and corrects through a learned gate. Opt-in: on small camera shots "
            "it continues the motion (SSIM +0.04 to +0.07, motion 0.4x -> 0.5x real), but it "
            "carries walk cycles and cloth on in a straight line and cost the 1280x720 shot "
            "0.04 (docs/QUALITY.md)"
        },
    )

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"Unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}.")
        if self.channels not in (3, 4):
            raise ValueError(f"channels must be 3 (RGB) or 4 (RGBA), not {self.channels}.")
        if self.width < 8 or self.height < 8:
            raise ValueError(f"The training resolution {self.width}x{self.height} is too small.")
        if self.width_mult <= 0:
            raise ValueError("width_mult must be positive.")
        if self.head not in HEADS:
            raise ValueError(f"Unknown head {self.head!r}; choose one of {', '.join(HEADS)}.")
        if self.preset == "paper":
            self.context = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        d = dict(d)
        # Checkpoints written before the warp head existed hold the residual generator, those
        # written before the motion prior a generator without it.
        d.setdefault("head", "residual")
        d.setdefault("motion_prior", False)
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def warps(self) -> bool:
        """Whether G predicts motion that can be applied to frames of any size."""
        return self.preset == "default" and self.head == "warp"

    @property
    def uses_prior(self) -> bool:
        """Whether G starts from a constant-velocity flow estimate (needs two context frames)."""
        return self.warps and self.motion_prior and self.context >= 2


def _ch(n: int, mult: float) -> int:
    return max(1, int(round(n * mult)))


def _same(k: int) -> int:
    # Keras padding="same" for odd kernels; with stride 2 this gives ceil(n / 2) like Keras.
    return k // 2


def _down(n: int) -> int:
    return (n + 1) // 2


def glorot_uniform_(module: nn.Module) -> None:
    """Keras' defaults, which the paper's 'uniform' initialisation refers to: kernels from
    U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot uniform), biases zero,
    BatchNorm gamma 1 and beta 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.xavier_uniform_(w)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# Preset "paper": Tables 1-3.
# --------------------------------------------------------------------------------------------


def _paper_block(cin, cout, k, stride, bn, cfg: ModelConfig) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, _same(k))]
    if bn:
        # Keras' BatchNormalization defaults: momentum 0.99 (PyTorch counts 1 - 0.99), eps 1e-3.
        layers.append(nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01))
    layers += [nn.LeakyReLU(cfg.leaky_slope), nn.Dropout(cfg.dropout)]
    return layers


class PaperGenerator(nn.Module):
    """Table 1: six same-padded stride-1 convolutions, 7-5-5-5-3-3, output tanh. (B,C,H,W)->same."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m, c = cfg.width_mult, cfg.channels
        w = [_ch(64, m), _ch(128, m), _ch(256, m), _ch(128, m), _ch(64, m)]
        self.net = nn.Sequential(
            *_paper_block(c, w[0], 7, 1, False, cfg),
            *_paper_block(w[0], w[1], 5, 1, True, cfg),
            *_paper_block(w[1], w[2], 5, 1, True, cfg),
            *_paper_block(w[2], w[3], 5, 1, True, cfg),
            *_paper_block(w[3], w[4], 3, 1, True, cfg),
            nn.Conv2d(w[4], c, 3, 1, 1),
            nn.Tanh(),
        )
        glorot_uniform_(self)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        # ctx: (B, K=1, C, H, W) -> (B, C, H, W)
        return self.net(ctx[:, -1])


class _PaperCritic(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: list[tuple[int, int, int, bool]]):
        super().__init__()
        layers: list[nn.Module] = []
        cin = cfg.channels
        h, w = cfg.height, cfg.width
        for cout, k, stride, bn in spec:
            cout = _ch(cout, cfg.width_mult)
            layers += _paper_block(cin, cout, k, stride, bn, cfg)
            cin = cout
            if stride == 2:
                h, w = _down(h), _down(w)
        self.features = nn.Sequential(*layers)
        self.dense = nn.Linear(cin * h * w, 1)  # input size follows the configured resolution
        glorot_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Flatten in Keras' (H, W, C) order is only a permutation of the Dense weights.
        return self.dense(torch.flatten(self.features(x), 1))  # (B, 1) logits


class PaperFrameDiscriminator(_PaperCritic):
    """Table 2: D(I) -> logit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(
            cfg, [(64, 5, 2, False), (128, 5, 2, True), (128, 3, 1, True), (128, 3, 1, False),
                  (32, 5, 1, True)]
        )  # fmt: skip


class PaperSequenceDiscriminator(_PaperCritic):
    """Table 3: S(I_t+1 - I_t) -> logit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(
            cfg, [(64, 5, 2, False), (128, 5, 2, True), (32, 5, 1, True), (64, 3, 1, True),
                  (32, 3, 1, True)]
        )  # fmt: skip

    def forward(self, diff: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(diff)


# --------------------------------------------------------------------------------------------
# Preset "default": residual U-Net generator with context, spectral-norm patch critics.
# --------------------------------------------------------------------------------------------


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(ch, ch, 3, 1, 1)
        )
        with torch.no_grad():  # the branch starts small: activations stay bounded down the stack
            self.body[2].weight.mul_(0.1)

    def forward(self, x):
        return F.leaky_relu(x + self.body(x), 0.2)


class UNetGenerator(nn.Module):
    """Predicts I_t+1 from K context frames (B, K, C, H, W) -> (B, C, H, W).

    Inputs are the context frames and their differences (motion made explicit); each level
    halves the resolution, so ``levels`` sets the receptive field.

    Head ``warp`` (the default): the network predicts, per context frame k, a flow field (in
    training pixels) and a blend weight, plus a synthesised residual:
        I_t+1 = sum_k w_k * warp(I_t-k, flow_k) + tanh(r)
    The output is made of real pixels moved around, so it cannot collapse to a constant colour
    (every pixel keeps a gradient through the warp), and the same motion can be applied to the
    full-size frames (``apply_motion``): a model trained at 128x72 keeps a 1080p strip's detail.
    At initialisation it copies the last frame.

    **Motion prior** (``cfg.motion_prior``, opt-in; measured in docs/QUALITY.md): a small
    network learns sub-pixel motion slowest (it has to divide a temporal difference by a
    spatial gradient; trained for 2 minutes, its flows on the hand-held flower shot stayed at
    0.06 pixels whatever the real motion), so the flows can start from a constant-velocity
    estimate instead of zero: ``estimate_flow`` between
    the last two context frames gives the field f with I_t ~ warp(I_t-1, f). The network sees
    f as two more input channels and predicts a gate g (per pixel) and corrections d_k:
        flow_k = d_k + g * (K + 1 - k) * f      (k = 1 .. K, the last context frame is K)
    (content that moved by f from I_t-1 to I_t moves by f again; from I_t-1 it is 2 f away).
    At initialisation g = 0.5: halfway between copying the last frame and constant velocity.

    Head ``residual``: I_t + 2 tanh(delta), clamped (the model before the warp head).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, k = cfg.channels, cfg.context
        self.channels, self.context, self.warp = c, k, cfg.head == "warp"
        self.prior = cfg.uses_prior
        widths = [_ch(cfg.base * 2 ** min(i, 2), cfg.width_mult) for i in range(cfg.levels + 1)]
        cin = c * k + c * (k - 1) + (2 if self.prior else 0)
        self.stem = nn.Sequential(nn.Conv2d(cin, widths[0], 3, 1, 1), nn.LeakyReLU(0.2))
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        for i in range(cfg.levels):
            self.enc.append(_ResBlock(widths[i]))
            self.down.append(
                nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1), nn.LeakyReLU(0.2))
            )
        self.mid = nn.Sequential(_ResBlock(widths[-1]), _ResBlock(widths[-1]))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(cfg.levels)):
            self.up.append(nn.Conv2d(widths[i + 1], widths[i], 3, 1, 1))
            self.dec.append(
                nn.Sequential(
                    nn.Conv2d(2 * widths[i], widths[i], 3, 1, 1), nn.LeakyReLU(0.2),
                    _ResBlock(widths[i]),
                )
            )  # fmt: skip
        # warp: K flows (2 each), K blend logits, C residual channels (+ the prior's gate)
        out = 3 * k + c + (1 if self.prior else 0) if self.warp else c
        self.head = nn.Conv2d(widths[0], out, 3, 1, 1)
        nn.init.zeros_(self.head.weight)  # starts as "copy the last frame"
        nn.init.zeros_(self.head.bias)
        if self.warp:
            with torch.no_grad():
                self.head.bias[3 * k - 1] = 4.0  # blend weight ~0.98 on the last frame
                if self.prior:
                    self.head.bias[-1] = PRIOR_GATE_INIT

    def motion_prior(self, ctx: torch.Tensor) -> torch.Tensor | None:
        """The constant-velocity flow estimate this generator starts from: (B, 2, H, W) float32
        with I_t ~ warp(I_t-1, f), or None without the prior. No gradient flows through it."""
        if not self.prior:
            return None
        with torch.no_grad():
            return estimate_flow(ctx[:, -2], ctx[:, -1])

    def _features(self, ctx: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        diffs = [ctx[:, i + 1] - ctx[:, i] for i in range(ctx.shape[1] - 1)]
        extra = [] if prior is None else [(prior * PRIOR_INPUT_SCALE).to(ctx.dtype)]
        x = self.stem(torch.cat([*ctx.unbind(1), *diffs, *extra], 1))
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for up, dec in zip(self.up, self.dec):
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = dec(torch.cat([F.leaky_relu(up(x), 0.2), skip], 1))
        return self.head(x)

    def motion(self, ctx: torch.Tensor, prior: torch.Tensor | None = None) -> Motion:
        """The warp head's prediction at the context's resolution (float32). ``prior``: this
        context's ``motion_prior`` when the caller has it already (the trainer's G updates
        share one context), else computed here."""
        k, c = self.context, self.channels
        if not self.prior:
            prior = None
        elif prior is None:
            prior = self.motion_prior(ctx)
        h = self._features(ctx, prior).float()
        b, _, hh, ww = h.shape
        flow = h[:, : 2 * k].reshape(b, k, 2, hh, ww)
        if self.prior:
            gate = torch.sigmoid(h[:, 3 * k + c :])  # (B, 1, H, W)
            steps = torch.arange(k, 0, -1, device=h.device, dtype=h.dtype).view(1, k, 1, 1, 1)
            flow = flow + steps * (gate * prior.float())[:, None]
        return Motion(
            flow=flow,
            weight=torch.softmax(h[:, 2 * k : 3 * k], 1)[:, :, None],
            residual=torch.tanh(h[:, 3 * k : 3 * k + c]),
        )

    def forward(
        self, ctx: torch.Tensor, prior: torch.Tensor | None = None, with_flow: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The next frame; ``with_flow`` (warp head): (frame, the flow of the last context
        frame (B, 2, H, W), float32), for the trainer's flow term."""
        if not self.warp:
            last = ctx[:, -1]  # (B, C, H, W)
            return torch.clamp(last + 2.0 * torch.tanh(self._features(ctx)), -1.0, 1.0)
        m = self.motion(ctx, prior)
        out = compose(ctx.float(), m)
        # Training keeps the gradient everywhere; a generated frame stays in the pixel range.
        out = out if self.training else out.clamp(-1.0, 1.0)
        return (out, m.flow[:, -1]) if with_flow else out


@dataclass
class Motion:
    """What the warp head predicts for the next frame, at the training resolution."""

    flow: torch.Tensor  # (B, K, 2, H, W): where each output pixel comes from, in pixels (x, y)
    weight: torch.Tensor  # (B, K, 1, H, W): blend weights of the K warped frames (sum 1)
    residual: torch.Tensor  # (B, C, H, W): synthesised correction in [-1, 1]


def warp(
    frames: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear", padding: str = "reflection"
) -> torch.Tensor:
    """Backward warp: out(p) = frames(p + flow(p)); (B, C, H, W) by (B, 2, H, W) pixels.

    Outside the frame it reflects the picture: content moving in from outside is never black,
    and a flow pointing far outside still samples real pixels with a gradient (a border that
    repeats the edge pixel would give a flat image with none: a collapse with no way back).
    ``padding="border"`` repeats the edge instead (for fields such as flows, not pictures)."""
    b, _, h, w = frames.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype)
    gx = (2.0 * (xs[None, None, :] + flow[:, 0]) + 1.0) / w - 1.0  # (B, H, W), align_corners=False
    gy = (2.0 * (ys[None, :, None] + flow[:, 1]) + 1.0) / h - 1.0
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(frames, grid, mode=mode, padding_mode=padding, align_corners=False)


AUTOCAST_DEVICES = ("cuda", "cpu", "mps", "xpu")
PRIOR_GATE_INIT = 0.0  # sigmoid(0) = 0.5: halfway between copy-last and constant velocity
PRIOR_INPUT_SCALE = 0.25  # the prior's flow (training pixels, mostly under 4) as an input


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * r + 1, 1, r, count_include_pad=False)


def estimate_flow(
    src: torch.Tensor, dst: torch.Tensor, levels: int = 3, iters: int = 2, radius: int = 2,
    eps: float = 1e-3,
) -> torch.Tensor:  # fmt: skip
    """The backward flow f with dst ~ warp(src, f), (B, C, H, W) frames -> (B, 2, H, W) pixels.

    Pyramidal Lucas-Kanade (Bouguet's coarse-to-fine scheme): at each level, from the coarsest,
    ``iters`` Gauss-Newton steps solve the 2x2 normal equations summed over a (2 radius + 1)^2
    window and over the channels (colour and alpha edges both count); ``eps`` regularises
    flat regions toward no motion, each step moves at most a pixel of its level. On the real
    clips at 128x72 it agreed with OpenCV's Farnebaeck flow (regression slope 0.8-1.0 on the
    camera shots) and warping I_t by it predicted I_t+1 better than copying I_t on 7 of 8 of
    them (a one-off check, docs/QUALITY.md; the tests check known shifts). Float32, any
    device, no learned weights; about 20 ms for 8 frames of 128x72 on a 2-core CPU."""
    dev = src.device.type  # float32 under autocast; the meta device (estimates) has none
    off = torch.autocast(dev, enabled=False) if dev in AUTOCAST_DEVICES else nullcontext()
    with off:
        pyr = [(src.float(), dst.float())]
        while len(pyr) < levels and min(pyr[-1][0].shape[-2:]) >= 16:
            s, d = pyr[-1]
            pyr.append((F.avg_pool2d(s, 2, ceil_mode=True), F.avg_pool2d(d, 2, ceil_mode=True)))
        flow: torch.Tensor | None = None
        for s, d in reversed(pyr):
            h, w = s.shape[-2:]
            if flow is None:
                flow = s.new_zeros(s.shape[0], 2, h, w)
            else:
                scale = torch.tensor([w / flow.shape[-1], h / flow.shape[-2]], device=s.device)
                flow = F.interpolate(flow, size=(h, w), mode="bilinear") * scale.view(1, 2, 1, 1)
            for _ in range(iters):
                moved = warp(s, flow, padding="border")
                px = F.pad(moved, (1, 1, 0, 0), mode="replicate")
                py = F.pad(moved, (0, 0, 1, 1), mode="replicate")
                gx = 0.5 * (px[..., 2:] - px[..., :-2])
                gy = 0.5 * (py[..., 2:, :] - py[..., :-2, :])
                e = d - moved
                terms = torch.stack(
                    [(gx * gx).sum(1), (gx * gy).sum(1), (gy * gy).sum(1), (gx * e).sum(1),
                     (gy * e).sum(1)], 1,
                )  # fmt: skip
                a11, a12, a22, b1, b2 = _box(terms, radius).unbind(1)
                a11, a22 = a11 + eps, a22 + eps
                det = a11 * a22 - a12 * a12
                step = torch.stack([a22 * b1 - a12 * b2, a11 * b2 - a12 * b1], 1) / det[:, None]
                flow = flow + step.clamp(-1.0, 1.0)
        return _box(flow, radius)


def compose(frames: torch.Tensor, m: Motion, mode: str = "bilinear") -> torch.Tensor:
    """The next frame from context frames (B, K, C, H, W) and a Motion of the same size."""
    k = frames.shape[1]
    moved = torch.stack([warp(frames[:, i], m.flow[:, i], mode) for i in range(k)], 1)
    return (m.weight * moved).sum(1) + m.residual


class PatchCritic(nn.Module):
    """Spectral-norm PatchGAN critic: (B, Cin, H, W) -> (B, 1, h, w) logits, one per patch."""

    def __init__(self, cin: int, cfg: ModelConfig, depth: int = 3):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        w = _ch(cfg.base, cfg.width_mult)
        layers: list[nn.Module] = [sn(nn.Conv2d(cin, w, 4, 2, 1)), nn.LeakyReLU(0.2)]
        for i in range(1, depth):
            cout = _ch(cfg.base * 2 ** min(i, 3), cfg.width_mult)
            layers += [sn(nn.Conv2d(w, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
            w = cout
        layers += [sn(nn.Conv2d(w, w, 3, 1, 1)), nn.LeakyReLU(0.2), sn(nn.Conv2d(w, 1, 3, 1, 1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DefaultFrameDiscriminator(PatchCritic):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.channels, cfg)


class DefaultSequenceDiscriminator(PatchCritic):
    """Judges the difference map, conditioned on the frame it starts from (what moved where)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(2 * cfg.channels, cfg)

    def forward(self, diff: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(torch.cat([diff, prev], 1))


def build_models(cfg: ModelConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(G, D, S) for a config. G takes (B, K, C, H, W) context; D takes a frame; S takes
    (difference map, previous frame)."""
    if cfg.preset == "paper":
        return PaperGenerator(cfg), PaperFrameDiscriminator(cfg), PaperSequenceDiscriminator(cfg)
    return UNetGenerator(cfg), DefaultFrameDiscriminator(cfg), DefaultSequenceDiscriminator(cfg)


# --------------------------------------------------------------------------------------------
# Parameter counting and the layer table of `python -m core summary`.
# --------------------------------------------------------------------------------------------


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_keras_style(module: nn.Module) -> int:
    """Keras counts BatchNorm's moving mean and variance too (4 numbers per channel)."""
    extra = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in module.modules()
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None
    )
    return count_trainable(module) + extra


def layer_table(module: nn.Module, example: torch.Tensor, *args) -> list[tuple[str, tuple, int]]:
    """(layer type, output shape (H, W, C) like the paper, Keras-style parameter count) rows."""
    rows: list[tuple[str, tuple, int]] = []
    names = {
        nn.Conv2d: "Conv2D", nn.BatchNorm2d: "BatchNormalization", nn.LeakyReLU: "LeakyReLu",
        nn.Dropout: "Dropout", nn.Linear: "Dense", nn.Tanh: "tanh activation",
    }  # fmt: skip

    def hook(mod, _inp, out):
        shape = tuple(out.shape[1:])
        if len(shape) == 3:
            shape = (shape[1], shape[2], shape[0])
        if isinstance(mod, nn.Linear):
            rows.append(("Flatten", (mod.in_features,), 0))
        rows.append((names.get(type(mod), type(mod).__name__), shape, count_keras_style(mod)))

    # Shapes only: run on the meta device, which computes no numbers.
    meta = copy.deepcopy(module).to("meta").eval()
    for m in meta.modules():
        if type(m) in names:
            m.register_forward_hook(hook)  # the copy is thrown away: no need to remove them
    with torch.no_grad():
        meta(example.to("meta"), *(a.to("meta") for a in args))
    return rows


def summary(cfg: ModelConfig) -> dict:
    g, d, s = build_models(cfg)
    return {
        "generator": count_trainable(g),
        "frame_discriminator": count_trainable(d),
        "sequence_discriminator": count_trainable(s),
        "keras_style": {
            "generator": count_keras_style(g),
            "frame_discriminator": count_keras_style(d),
            "sequence_discriminator": count_keras_style(s),
        },
    }


def forward_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of convolutions and dense layers."""
    acc = [0]

    def hook(m, _inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            acc[0] += out[0].numel() * k
        else:
            acc[0] += m.in_features * m.out_features

    hs = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = module.training
    with torch.no_grad():
        module.eval()(*[x[:1] for x in inputs])
    module.train(was_training)
    for h in hs:
        h.remove()
    return acc[0]


def training_flops(cfg: ModelConfig, batch: int) -> float:
    """FLOPs of one training step (2 per multiply-add; a backward pass costs 2 forwards).

    G: a no-grad forward for the D/S phases, then forward + backward in each of its two
    updates = 7 forwards. D and S: forward + backward on real and fake in their own phase
    (6 forwards) and forward + backward in G's phase against them (3) = 9 forwards each.
    """
    g, d, s = build_models(cfg)
    frame = torch.zeros(1, cfg.channels, cfg.height, cfg.width)
    ctx = torch.zeros(1, cfg.context, cfg.channels, cfg.height, cfg.width)
    macs = 7 * forward_macs(g, ctx) + 9 * forward_macs(d, frame) + 9 * forward_macs(s, frame, frame)
    return 2.0 * macs * batch
