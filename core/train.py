"""The training loop: update D, update S, update G against D, update G against S.

Each step, in this fixed order (the paper's section 3: G is updated *separately* twice):
  1. D  with eq. (1): real frames I_t+1 vs G's predictions
  2. S  with eq. (2): real difference maps I_t+1 - I_t vs G(I_t) - I_t
  3. G  against D (non-saturating BCE, plus the preset's L1 reconstruction term)
  4. G  against S (likewise), on a fresh forward pass since step 3 changed G
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed
from .augment import diff_augment
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import Clip, tensor_to_image, to_float
from .device import Runtime, pick_device
from .guard import Guard, holdout_windows
from .models import ModelConfig, build_models, estimate_flow, warp


@dataclass
class TrainConfig:
    steps: int = field(default=1000, metadata={"help": "training steps (one batch each)"})
    minutes: float = field(
        default=0.0,
        metadata={
            "help": "stop after this many minutes of training even if fewer steps ran (0 = no "
            "time limit; with a limit, steps is the most it runs)"
        },
    )
    batch_size: int | None = field(
        default=None,
        metadata={
            "help": "frame pairs per step. The paper is silent; 8 fits the paper preset at "
            "144x256 on an 8 GB GPU. The default preset takes 4 on a CPU without bf16 "
            "hardware (most laptops), where a step of 8 takes about a second: as many frames "
            "a second, twice the steps in the same minutes (docs/QUALITY.md, 'Batch size on "
            "a CPU without bf16'); 8 elsewhere"
        },
    )
    lr_g: float | None = field(
        default=None,
        metadata={
            "help": "generator Adam learning rate (paper preset 2e-4, DCGAN's, as the paper is "
            "silent; default preset 5e-4, measured on real clips, docs/QUALITY.md)"
        },
    )
    lr_d: float | None = field(
        default=None,
        metadata={"help": "learning rate of both discriminators (2e-4 for both presets)"},
    )
    beta1: float = field(
        default=0.5, metadata={"help": "Adam beta1; DCGAN's 0.5 damps GAN oscillation"}
    )
    beta2: float = field(default=0.999, metadata={"help": "Adam beta2"})
    l1_weight: float | None = field(
        default=None,
        metadata={
            "help": "weight of an L1 term |G(I_t) - I_t+1| added to both generator updates "
            "(default preset 10, paper preset 0: the paper is purely adversarial)"
        },
    )
    unroll: int | None = field(
        default=None,
        metadata={
            "help": "frames G predicts from its own output during training, against rollout "
            "drift (1 for both presets: 2 doubled the cost for no measured gain, docs/QUALITY.md)"
        },
    )
    ema: float | None = field(
        default=None,
        metadata={
            "help": "decay of an exponential moving average of G used for generation "
            "(default preset 0.995, paper preset 0 = off)"
        },
    )
    adv_weight: float | None = field(
        default=None,
        metadata={
            "help": "weight of the two adversarial terms in G's updates when an L1 term is on "
            "(default preset 0.1; 0 = an L1-only ablation; docs/QUALITY.md measures what the "
            "GAN adds)"
        },
    )
    flow_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of a flow term in G's updates (warp head): the L1 distance, in "
            "training pixels, between G's flow for the last context frame and a Lucas-Kanade "
            "flow from that frame to the real next one (core.models.estimate_flow). Trained on "
            "the image alone, a small network learns sub-pixel motion slowest and its flows "
            "lag the footage. 0 = off (both presets); 1 was measured in docs/QUALITY.md, 'The "
            "flow term': a small hand-held camera shot gains much; the same shot at 720p, a game "
            "capture and sprites lose a little"
        },
    )
    warp_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of a warp term in G's updates (warp head): the L1 distance between "
            "the last context frame warped by G's own flow for it and the real next frame, so "
            "that the flow alone, not the blend and residual, carries the picture. No flow "
            "estimate is involved: the real frames are the target. 0 = off (both presets); 10 "
            "(the L1 term's weight) was measured in docs/QUALITY.md, 'The warp term': +0.002 "
            "SSIM on average, the drive up, the flower shot at 720p down"
        },
    )
    adv_warmup: int | None = field(
        default=None,
        metadata={
            "help": "steps over which the adversarial weight ramps up from 0 when an L1 term is "
            "on, so the critics judge a generator that already predicts the motion (default "
            "preset 100; paper preset 0)"
        },
    )
    guard: str | None = field(
        default=None,
        metadata={
            "help": "watching the run on held-out frames (core/guard.py): 'recover' rolls back a "
            "collapse with lower learning rates and keeps the best state (default preset); "
            "'best' only keeps the best state, leaving the recipe as it is (paper preset); "
            "'off'"
        },
    )
    val_every: int = field(
        default=0,
        metadata={
            "help": "check the run on held-out frames every N steps (0 = auto: 10 on the CPU, "
            "50 on a GPU, and before every checkpoint)"
        },
    )
    diffaug: str | None = field(
        default=None,
        metadata={
            "help": "DiffAugment policy applied to real and fake alike before D and S, e.g. "
            "'translation,color' (default preset), '' for none (paper preset)"
        },
    )
    fit_aspect: bool = field(
        default=False,
        metadata={
            "help": "train at the frames' own aspect ratio with about width x height pixels "
            "(core.data.fitted_size: a square strip at 128x72 trains at 96x96) instead of "
            "letterboxing them into exactly width x height. Opt-in: on four real clips of "
            "other aspects it scored the same on average and was stable for 100 frames less "
            "often (docs/QUALITY.md, 'Fit Strip Aspect')"
        },
    )
    seed: int = field(default=0, metadata={"help": "random seed (runs are repeatable on CPU)"})
    device: str = field(
        default="auto", metadata={"help": "auto (cuda > mps > cpu), cuda, mps, cpu"}
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "auto (bf16 autocast on CUDA and on CPUs that multiply bf16 in hardware: "
            "Intel AMX, AVX-512 BF16; fp32 elsewhere), bf16 or fp32"
        },
    )
    compile: bool = field(
        default=False, metadata={"help": "torch.compile the networks (CUDA; pays on long runs)"}
    )
    checkpoint_every: int = field(
        default=250, metadata={"help": "save a checkpoint every N steps (and at the end)"}
    )
    preview_every: int = field(
        default=100, metadata={"help": "write a preview rollout every N steps (0 = never)"}
    )
    log_every: int = field(
        default=0,
        metadata={
            "help": "report progress every N steps; 0 = every step on the CPU, and on a GPU at "
            "most every 0.25 s and before each checkpoint (each report waits for the GPU, "
            "which must not happen every step)"
        },
    )

    def resolved(self, preset: str, runtime: Runtime | None = None) -> TrainConfig:
        """Fill the preset-dependent fields left as None; the batch size also depends on
        where it trains (``auto_batch_size``; without a ``runtime``, this machine's choice
        for ``device`` and ``precision``)."""
        paper = preset == "paper"
        defaults = {
            "lr_g": 2e-4 if paper else 5e-4,
            "lr_d": 2e-4,
            "l1_weight": 0.0 if paper else 10.0,
            "adv_weight": 1.0 if paper else 0.1,
            "adv_warmup": 0 if paper else 100,
            "guard": "best" if paper else "recover",
            "unroll": 1,
            "ema": 0.0 if paper else 0.995,
            "diffaug": "" if paper else "translation,color",
        }
        out = copy.copy(self)
        for k, v in defaults.items():
            if getattr(out, k) is None:
                setattr(out, k, v)
        if out.batch_size is None:
            rt = runtime or pick_device(out.device, out.precision)
            out.batch_size = auto_batch_size(preset, rt)
        if out.steps < 0 or out.batch_size < 1 or out.unroll < 1:
            raise ValueError("steps must be >= 0, batch_size >= 1 and unroll >= 1.")
        if min(out.minutes, out.adv_warmup, out.val_every, out.flow_weight, out.warp_weight) < 0:
            raise ValueError(
                "minutes, adv_warmup, val_every, flow_weight and warp_weight must be >= 0."
            )
        if out.guard not in ("recover", "best", "off"):
            raise ValueError(f"guard must be 'recover', 'best' or 'off', not {out.guard!r}.")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def auto_batch_size(preset: str, runtime: Runtime) -> int:
    """The batch size a run takes unless one is given: 8; 4 for the default preset on a CPU
    without bf16 autocast. There a step of 8 takes about a second (docs/PERFORMANCE.md, "a
    second machine"), so the add-on's 400 steps would take about 8 minutes; a step of 4
    takes half as long for about as many frames a second, and the same minutes make twice the
    steps (docs/QUALITY.md, "Batch size on a CPU without bf16"; the 400 steps then fit the
    add-on's 5-minute Time Limit). The paper preset keeps its 8 everywhere."""
    if preset != "paper" and runtime.device.type == "cpu" and runtime.amp_dtype is None:
        return 4
    return 8


# --- losses: small pure functions -----------------------------------------------------------


def d_loss_fn(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(real) - log(1 - D(fake)), i.e. BCE with logits against 1 and 0 (eqs. 1 and 2)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_fn(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(G(I_t)) (Goodfellow et al.'s practical variant)."""
    return F.softplus(-fake_logits).mean()


@dataclass
class StepStats:
    step: int
    losses: dict[str, float]
    outputs: dict[str, float]  # mean sigmoid outputs: d_real, d_fake, s_real, s_fake
    phases: list[str]


Callback = Callable[[dict], None]
REPORT_INTERVAL_S = 0.25  # GPU, log_every=0: the least time between two progress reports
DISTRIBUTED_REPORT_EVERY = 10  # GPU under torchrun, log_every=0: report every N steps


class Trainer:
    """Holds G, D, S, their optimizers and the clip; ``step()`` runs one training step."""

    def __init__(
        self,
        clip: Clip,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        runtime: Runtime | None = None,
        resume: Checkpoint | None = None,
    ):
        self.mcfg = model_cfg
        self.rt = runtime or pick_device(train_cfg.device, train_cfg.precision)
        self.tcfg = train_cfg.resolved(model_cfg.preset, self.rt)
        self.dist = distributed.current()  # torchrun's process group, or a single process
        if self.dist.active:
            distributed.check_batch(self.tcfg.batch_size, self.dist)
            self.rt = replace(self.rt, device=distributed.local_device(self.rt.device, self.dist))
        dev = self.rt.device
        self.context = model_cfg.context
        if len(clip) < self.context + 1:
            raise ValueError(
                f"The {model_cfg.preset} preset needs at least {self.context + 1} frames; "
                f"the clip has {len(clip)}."
            )
        self.unroll = min(self.tcfg.unroll, len(clip) - self.context)
        self.window = self.context + self.unroll
        self.frames = clip.frames.to(dev)  # (N, C, H, W) uint8, resident on the device
        # The last n_val windows are held out for validation (core/guard.py), never trained on.
        self.n_val = holdout_windows(len(clip) - self.window + 1)
        self.n_windows = len(clip) - self.window + 1 - self.n_val
        self.source = {
            "width": clip.letterbox.src_w,
            "height": clip.letterbox.src_h,
            "channels": clip.channels,
        }
        torch.manual_seed(self.tcfg.seed)
        g, d, s = build_models(model_cfg)
        # channels_last: cuDNN's tensor-core kernels and oneDNN's CPU convolutions are NHWC (CPU:
        # 1.07-1.41x per step at batch 8, interleaved A/B in docs/PERFORMANCE.md); MPS keeps NCHW.
        self.memory_format = (
            torch.channels_last if dev.type in ("cuda", "cpu") else torch.contiguous_format
        )
        self.g, self.d, self.s = (m.to(dev, memory_format=self.memory_format) for m in (g, d, s))
        if self.dist.active:  # global-batch BatchNorm; rank 0's weights on every rank
            self.g, self.d, self.s = (
                distributed.prepare_module(m, self.dist) for m in (self.g, self.d, self.s)
            )
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False) if self.tcfg.ema else None
        fused = {"fused": True} if dev.type == "cuda" else {}
        betas = (self.tcfg.beta1, self.tcfg.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), self.tcfg.lr_g, betas=betas, **fused)
        self.opt_d = torch.optim.Adam(self.d.parameters(), self.tcfg.lr_d, betas=betas, **fused)
        self.opt_s = torch.optim.Adam(self.s.parameters(), self.tcfg.lr_d, betas=betas, **fused)
        self.step_num = 0
        if resume is not None:
            self._load(resume)
        # Two handles per network: ``_x`` runs the network's own update (its DDP wrapper inside
        # a process group, which averages the gradients over the ranks), ``_x_frozen`` runs it
        # where it only passes gradients through (the critics inside G's updates; G's no-grad
        # predictions for the critics), which must not enter DDP's reducer.
        self._g, self._d, self._s = (
            distributed.wrap(m, self.dist) for m in (self.g, self.d, self.s)
        )
        self._g_frozen, self._d_frozen, self._s_frozen = self.g, self.d, self.s
        if self.tcfg.compile:
            compiled = {}  # one compiled graph per distinct module object

            def comp(m: nn.Module) -> nn.Module:
                return compiled.setdefault(id(m), torch.compile(m))

            self._g, self._d, self._s = (comp(m) for m in (self._g, self._d, self._s))
            self._g_frozen, self._d_frozen, self._s_frozen = (
                comp(m) for m in (self.g, self.d, self.s)
            )
        self.on_phase: Callable[[str], None] | None = None

    # --- state ------------------------------------------------------------------------------

    def _load(self, ck: Checkpoint) -> None:
        if ModelConfig.from_dict(ck.model_config) != self.mcfg:
            raise ValueError(
                "The checkpoint was trained with other model settings "
                f"({ck.model_config['preset']}, {ck.model_config['width']}x"
                f"{ck.model_config['height']}, {ck.model_config['channels']} channels); "
                "resume with the same preset, resolution and channels."
            )
        for name in ("g", "d", "s"):
            getattr(self, name).load_state_dict(ck.weights[name])
        for name in ("opt_g", "opt_d", "opt_s"):
            getattr(self, name).load_state_dict(ck.optim[name])
        if self.g_ema is not None:
            self.g_ema.load_state_dict(ck.weights.get("g_ema", ck.weights["g"]))
        self.step_num = ck.step

    def checkpoint(self) -> Checkpoint:
        weights = {"g": self.g.state_dict(), "d": self.d.state_dict(), "s": self.s.state_dict()}
        if self.g_ema is not None:
            weights["g_ema"] = self.g_ema.state_dict()
        optim = {n: getattr(self, n).state_dict() for n in ("opt_g", "opt_d", "opt_s")}
        return Checkpoint(
            model_config=self.mcfg.to_dict(),
            train_config=self.tcfg.to_dict(),
            step=self.step_num,
            weights=weights,
            optim=optim,
            source=self.source,
        )

    def save(self, path: str) -> None:
        save_checkpoint(path, self.checkpoint())

    @property
    def inference_generator(self) -> nn.Module:
        return self.g_ema if self.g_ema is not None else self.g

    # --- one step ---------------------------------------------------------------------------

    def _batch(self, gen: torch.Generator) -> torch.Tensor:
        # The global batch is drawn alike on every rank; each keeps its shard (distributed.py).
        idx = torch.randint(self.n_windows, (self.tcfg.batch_size,), generator=gen)
        idx = distributed.shard(idx, self.dist)
        if self.frames.is_cuda:  # pinned + non_blocking: the copy does not wait for the GPU
            idx = idx.pin_memory()
        idx = idx.to(self.frames.device, non_blocking=True)
        idx = idx[:, None] + torch.arange(self.window, device=idx.device)
        seq = to_float(self.frames[idx])  # (B, K+U, C, H, W) in [-1, 1]
        return seq.contiguous(memory_format=torch.contiguous_format)

    def _rollout(
        self,
        g: nn.Module,
        seq: torch.Tensor,
        prior: torch.Tensor | None = None,
        with_flow: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """G's predictions for the U frames after the context, each from the previous
        predictions (unrolled). ``prior``: the real context's motion prior, computed once per
        step for G's three passes. Returns (fake, prev, flow): (B*U, C, H, W) each, and with
        ``with_flow`` G's flow for the last real context frame (B, 2, H, W), else None."""
        ctx = seq[:, : self.context]
        fakes, prevs, flow = [], [], None
        for u in range(self.unroll):
            if u == 0 and with_flow:
                pred, flow = g(ctx, prior, with_flow=True)
            else:
                pred = g(ctx, prior) if (prior is not None and u == 0) else g(ctx)
            fakes.append(pred)
            prevs.append(ctx[:, -1])
            ctx = torch.cat([ctx[:, 1:], pred[:, None]], 1)
        return torch.cat(fakes), torch.cat(prevs), flow

    def _real(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(real next frames, real previous frames), each (B*U, C, H, W), in _rollout's order."""
        nxt = torch.cat([seq[:, self.context + u] for u in range(self.unroll)])
        prv = torch.cat([seq[:, self.context + u - 1] for u in range(self.unroll)])
        return nxt, prv

    def _aug(self, *xs: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        """The same random DiffAugment transform for tensors that belong together."""
        if not self.tcfg.diffaug:
            return list(xs)
        return diff_augment(list(xs), self.tcfg.diffaug, gen)

    def _flow_loss(
        self,
        flow: torch.Tensor,
        last: torch.Tensor,
        nxt: torch.Tensor,
        teacher: torch.Tensor | None,
    ) -> torch.Tensor:
        """G's flow for the last real context frame (B, 2, H, W) judged twice: the flow term
        (L1 to a Lucas-Kanade ``teacher``, training pixels) and the warp term (``last`` warped
        by it against the real next frame ``nxt``, pixel values): the flow alone has to carry
        the picture where it goes, not the blend weights and the residual."""
        cfg = self.tcfg
        loss = flow.new_zeros(())
        if teacher is not None:
            loss = loss + cfg.flow_weight * F.l1_loss(flow, teacher)
        if cfg.warp_weight:
            loss = loss + cfg.warp_weight * F.l1_loss(warp(last, flow), nxt)
        return loss

    def _phase(self, name: str, phases: list[str]) -> None:
        phases.append(name)
        if self.on_phase:
            self.on_phase(name)

    def step(self) -> dict[str, torch.Tensor]:
        """One training step; returns its losses and outputs as 0-d tensors (no host sync)."""
        cfg = self.tcfg
        step_seed = cfg.seed * 1_000_003 + self.step_num  # exact resume: no RNG state to save
        rank_seed = distributed.rank_seed(step_seed, self.dist)  # dropout, DiffAugment
        torch.manual_seed(rank_seed)
        gen = torch.Generator().manual_seed(step_seed)
        agen = torch.Generator(self.frames.device).manual_seed(rank_seed)
        seq = self._batch(gen)
        real, prev = self._real(seq)
        phases: list[str] = []
        out: dict[str, torch.Tensor] = {}
        for m in (self.g, self.d, self.s):
            m.train()

        # the motion prior of the real context (None without it): once for G's three passes
        prior = self.g.motion_prior(seq[:, : self.context]) if self.mcfg.uses_prior else None
        # the flow and warp terms (warp head) on G's flow for the last real context frame:
        # how that frame moves into the next real one
        last, nxt = seq[:, self.context - 1], seq[:, self.context]
        want_flow = self.mcfg.warps and bool(cfg.flow_weight or cfg.warp_weight)
        teacher = estimate_flow(last, nxt) if want_flow and cfg.flow_weight else None
        with torch.no_grad(), self.rt.autocast():
            fake, fprev, _ = self._rollout(self._g_frozen, seq, prior)
        fake = fake.float()

        # ---- update D: real frames vs predicted frames (eq. 1) ----
        self._phase("D", phases)
        with self.rt.autocast():
            r, f = self._aug(real, gen=agen) + self._aug(fake, gen=agen)
            d_real, d_fake = self._d(r), self._d(f)
            loss_d = d_loss_fn(d_real, d_fake)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        # ---- update S: real difference maps vs predicted ones (eq. 2) ----
        self._phase("S", phases)
        with self.rt.autocast():
            rn, rp = self._aug(real, prev, gen=agen)
            fn, fp = self._aug(fake, fprev, gen=agen)
            s_real, s_fake = self._s(rn - rp, rp), self._s(fn - fp, fp)
            loss_s = d_loss_fn(s_real, s_fake)
        self.opt_s.zero_grad(set_to_none=True)
        loss_s.backward()
        self.opt_s.step()

        # adversarial weight, ramped up over adv_warmup steps when an L1 term anchors G
        adv = cfg.adv_weight
        if cfg.l1_weight and cfg.adv_warmup:
            adv *= min(1.0, self.step_num / cfg.adv_warmup)

        # ---- update G against D ----
        self._phase("G_D", phases)
        self.d.requires_grad_(False)
        with self.rt.autocast():
            fake, _, flow = self._rollout(self._g, seq, prior, want_flow)
            (f,) = self._aug(fake, gen=agen)
            loss_gd = g_loss_fn(self._d_frozen(f))
            l1 = F.l1_loss(fake.float(), real)
            total = adv * loss_gd + cfg.l1_weight * l1 if cfg.l1_weight else loss_gd
            if want_flow:
                total = total + self._flow_loss(flow, last, nxt, teacher)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.d.requires_grad_(True)

        # ---- update G against S ----
        self._phase("G_S", phases)
        self.s.requires_grad_(False)
        with self.rt.autocast():
            fake, fprev, flow = self._rollout(self._g, seq, prior, want_flow)
            fn, fp = self._aug(fake, fprev, gen=agen)
            loss_gs = g_loss_fn(self._s_frozen(fn - fp, fp))
            l1_s = F.l1_loss(fake.float(), real)
            total = adv * loss_gs + cfg.l1_weight * l1_s if cfg.l1_weight else loss_gs
            if want_flow:
                total = total + self._flow_loss(flow, last, nxt, teacher)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.s.requires_grad_(True)

        if self.g_ema is not None:
            with torch.no_grad():
                # warm-up: average over the steps so far while they are fewer than
                # 1 / (1 - ema), so a short run's EMA is not mostly the initial weights
                decay = min(cfg.ema, (1.0 + self.step_num) / (10.0 + self.step_num))
                # one multi-tensor kernel instead of one per parameter (same numbers)
                torch._foreach_lerp_(
                    list(self.g_ema.parameters()), list(self.g.parameters()), 1.0 - decay
                )
                for be, b in zip(self.g_ema.buffers(), self.g.buffers()):
                    be.copy_(b)

        self.step_num += 1
        self.last_phases = phases
        with torch.no_grad():
            out = {
                "loss_d": loss_d.detach(),
                "loss_s": loss_s.detach(),
                "loss_g_d": loss_gd.detach(),
                "loss_g_s": loss_gs.detach(),
                "l1": l1_s.detach(),
                "d_real": torch.sigmoid(d_real.detach().float()).mean(),
                "d_fake": torch.sigmoid(d_fake.detach().float()).mean(),
                "s_real": torch.sigmoid(s_real.detach().float()).mean(),
                "s_fake": torch.sigmoid(s_fake.detach().float()).mean(),
            }
        return out

    # --- previews ---------------------------------------------------------------------------

    @torch.no_grad()
    def preview(self, n: int = 8) -> torch.Tensor:
        """A fixed-seed rollout from the clip's last frames: (n, C, H, W) in [-1, 1]."""
        from .generate import rollout

        ctx = to_float(self.frames[-self.context :])
        return rollout(self.inference_generator, ctx, n, self.rt)


def fit(
    trainer: Trainer,
    checkpoint_path: str | None = None,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
    preview_dir: str | None = None,
) -> dict:
    """Train until ``tcfg.steps`` (or ``tcfg.minutes``); checks ``should_stop`` before every
    step and, when it says stop, saves the last completed step.

    The run is watched on held-out frames (core/guard.py): a collapse is rolled back, a
    checkpoint is only written from a state that passed, and the model saved at the end is the
    best one. Returns {"step", "cancelled", "checkpoint", "validation"}; raises
    ``TrainingCollapsed`` when a collapse could not be recovered from (nothing is saved then).
    """
    cfg = trainer.tcfg
    ctx = trainer.dist
    main = ctx.is_main  # only rank 0 reports and writes files
    cb = (callback if main else None) or (lambda ev: None)
    t0 = time.perf_counter()
    first = trainer.step_num
    cancelled = False
    last_saved = -1
    last_report = t0
    last_out, checked = None, first
    every_step = trainer.rt.type == "cpu"  # reading a loss back waits for a GPU (CUDA, MPS)
    guarded = cfg.guard != "off" and not ctx.active  # ranks would have to agree on rollbacks
    guard = (
        Guard(trainer, lambda m: cb({"event": "log", "message": m}), cfg.guard == "recover")
        if guarded
        else None
    )
    val_every = cfg.val_every or (10 if every_step else 50)
    limit_s = cfg.minutes * 60.0 if cfg.minutes else None
    while trainer.step_num < cfg.steps:
        if distributed.any_rank(bool(should_stop and should_stop()), ctx):
            cancelled = True
            break
        if limit_s is not None and time.perf_counter() - t0 >= limit_s:
            break
        try:
            out = trainer.step()
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            oom = "out of memory" in str(exc).lower()
            # Ranks cannot shrink their batches in step with each other: only a single
            # process retries; under torchrun the OOM error names the setting to lower.
            if not oom or trainer.tcfg.batch_size <= 1 or ctx.active:
                raise
            # Retry the same step (same seed) at half the batch: slower, but the job survives.
            trainer.tcfg.batch_size //= 2
            if trainer.rt.type == "cuda":
                torch.cuda.empty_cache()
            cb(
                {
                    "event": "log",
                    "message": "Out of memory: retrying with batch size "
                    f"{trainer.tcfg.batch_size}.",
                }
            )
            continue
        step = trainer.step_num
        now = time.perf_counter()
        last_out = out
        # Never save a checkpoint of a diverged model: read back before each one (a step
        # every rank agrees on, so the mean over ranks inside cannot deadlock).
        saving = bool(cfg.checkpoint_every) and step % cfg.checkpoint_every == 0
        since = now - last_report
        vals = None
        if saving or should_report(step, cfg.steps, cfg.log_every, every_step, ctx.active, since):
            last_report, checked = now, step
            vals = _read_back(out, step, ctx, raise_on_nan=guard is None)
            elapsed = time.perf_counter() - t0
            rate = (step - first) / elapsed if elapsed > 0 else 0.0
            eta = (cfg.steps - step) / rate if rate > 0 else None
            if limit_s is not None:
                eta = max(0.0, limit_s - elapsed) if eta is None else min(eta, limit_s - elapsed)
            cb(
                {
                    "event": "progress",
                    "step": step,
                    "total": cfg.steps,
                    "losses": {
                        k: vals[k] for k in ("loss_d", "loss_s", "loss_g_d", "loss_g_s", "l1")
                    },
                    "outputs": {k: vals[k] for k in ("d_real", "d_fake", "s_real", "s_fake")},
                    "phases": list(trainer.last_phases),
                    "elapsed_s": elapsed,
                    "steps_per_s": rate,
                    "eta_s": max(0.0, eta) if eta is not None else None,
                    "time_limit_s": limit_s,
                }
            )
        finite = vals is None or all(math.isfinite(v) for v in vals.values())
        if guard is not None and (saving or step % val_every == 0 or not finite):
            if not guard.validate(finite):
                last_out, checked = None, trainer.step_num
                continue  # rolled back: train on from the last good state
        if main and preview_dir and cfg.preview_every and step % cfg.preview_every == 0:
            path = write_preview(trainer, preview_dir, step)
            cb({"event": "sample", "step": step, "path": path})
        if main and checkpoint_path and saving:
            trainer.save(checkpoint_path)
            last_saved = step
            cb({"event": "checkpoint", "step": step, "path": checkpoint_path})
    if last_out is not None and checked != trainer.step_num:  # cancelled between reports
        vals = _read_back(last_out, trainer.step_num, ctx, raise_on_nan=guard is None)
        if guard is not None and not all(math.isfinite(v) for v in vals.values()):
            guard.validate(False)  # rolls back to the last good state
    kept = guard.finish() if guard is not None else None
    if main and checkpoint_path and last_saved != trainer.step_num:
        trainer.save(checkpoint_path)
        cb({"event": "checkpoint", "step": trainer.step_num, "path": checkpoint_path})
    return {
        "step": trainer.step_num,
        "cancelled": cancelled,
        "checkpoint": checkpoint_path,
        "validation": kept.to_dict() if kept is not None else None,
        "recoveries": guard.recoveries if guard is not None else 0,
    }


def _read_back(
    out: dict[str, torch.Tensor], step: int, ctx, raise_on_nan: bool = True
) -> dict[str, float]:
    """The step's losses and outputs as floats (averaged over the ranks); raises when one is
    not finite (unless ``raise_on_nan`` is False: the guard rolls back instead)."""
    out = distributed.mean_over_ranks(out, ctx)
    vals = dict(zip(out, torch.stack([v.float() for v in out.values()]).tolist()))
    if raise_on_nan and not all(math.isfinite(v) for v in vals.values()):
        raise FloatingPointError(
            f"Training diverged at step {step} (a loss is not finite); lower the "
            "learning rates or use the default preset."
        )
    return vals


def should_report(
    step: int, total: int, log_every: int, every_step: bool, distributed: bool, since_s: float
) -> bool:
    """Whether ``fit`` reads the losses back after ``step`` (which waits for the GPU).

    ``log_every`` > 0: every that many steps. 0 (auto): every step where reading back is free
    (``every_step``: the CPU); on a GPU at most every ``REPORT_INTERVAL_S``, or, under
    torchrun, every ``DISTRIBUTED_REPORT_EVERY`` steps, since every rank must join the mean and
    the ranks' clocks differ. The last step is always reported.
    """
    if step == total:
        return True
    if log_every > 0:
        return step % log_every == 0
    if every_step:
        return True
    if distributed:
        return step % DISTRIBUTED_REPORT_EVERY == 0
    return since_s >= REPORT_INTERVAL_S


def write_preview(trainer: Trainer, folder: str, step: int) -> str:
    """The preview rollout as one horizontal strip PNG, written atomically."""
    import io
    import os

    from PIL import Image

    from .checkpoint import atomic_write_bytes

    frames = trainer.preview()
    imgs = [tensor_to_image(f) for f in frames]
    w, h = imgs[0].size
    sheet = Image.new(imgs[0].mode, (w * len(imgs), h))
    for i, im in enumerate(imgs):
        sheet.paste(im, (i * w, 0))
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    path = os.path.join(folder, f"preview_{step:06d}.png")
    atomic_write_bytes(path, buf.getvalue())
    for old in os.listdir(folder):  # keep only the newest preview
        if old.startswith("preview_") and old.endswith(".png") and old != os.path.basename(path):
            try:
                os.unlink(os.path.join(folder, old))
            except OSError:
                pass
    return path


def resume_trainer(clip: Clip, path: str, train_overrides: dict | None = None, runtime=None):
    """A Trainer continuing the checkpoint at ``path`` (same model, its train config updated
    with ``train_overrides``, e.g. more steps)."""
    ck = load_checkpoint(path)
    tcfg = TrainConfig.from_dict({**ck.train_config, **(train_overrides or {})})
    return Trainer(clip, ModelConfig.from_dict(ck.model_config), tcfg, runtime, resume=ck)
