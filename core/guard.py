"""Watching a GAN train: held-out validation, collapse detection, rollback, the best state.

A GAN can fail without a NaN: one bad step pushes the generator's output to a constant colour,
the critics then win outright and nothing pulls it back (issue 14: a camera clip came out all
black after 500 "successful" steps). ``Guard`` checks the run every few steps on frames the
trainer does not learn from (the clip's last transitions) and:

- keeps a snapshot of the last state that passed, and the best one (lowest held-out error);
- on a collapse (constant output), a divergence (held-out error far above both the best so far
  and simply copying the last frame) or a non-finite loss: restores the last good snapshot,
  halves the learning rates and the adversarial weight, and goes on; after ``MAX_RECOVERIES``
  it stops with ``TrainingCollapsed``, a message for the user;
- at the end, hands back the best state when the last one is clearly worse, so the saved model
  is never a collapsed one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from .data import to_float

MAX_RECOVERIES = 3
STD_FLOOR = 0.2  # output's spatial std / the real frames': below this the output is "constant"
DIVERGE_FACTOR = 2.0  # held-out L1 above this x max(best, copy-last) + DIVERGE_MARGIN: diverged
DIVERGE_MARGIN = 0.05
KEEP_LAST_TOLERANCE = 1.25  # the final state is kept unless its held-out L1 is this x the best


class TrainingCollapsed(RuntimeError):
    """Training collapsed and could not recover; the message is one sentence for the user."""


@dataclass
class Check:
    step: int
    l1: float  # held-out rollout L1 of the generator used for sampling (EMA when on)
    l1_g: float  # the same for the raw generator (a collapse shows here first)
    copy_l1: float  # copying the last context frame, for scale
    std_ratio: float  # min over held-out frames of output std / real std (raw generator)
    finite: bool

    @property
    def reason(self) -> str | None:
        """Why this check fails, or None."""
        if not self.finite:
            return "a loss or the output is not finite"
        if self.std_ratio < STD_FLOOR:
            return f"the generator outputs a near-constant image (detail {self.std_ratio:.2f}x)"
        limit = DIVERGE_FACTOR * self.copy_l1 + DIVERGE_MARGIN
        if min(self.l1, self.l1_g) > limit:
            return (
                f"the held-out error jumped to {min(self.l1, self.l1_g):.3f} "
                f"(copying the last frame: {self.copy_l1:.3f})"
            )
        return None

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "l1": self.l1,
            "l1_g": self.l1_g,
            "copy_last_l1": self.copy_l1,
            "std_ratio": self.std_ratio,
        }


def holdout_windows(n_windows: int) -> int:
    """How many of the clip's last training windows are kept out of training for validation:
    about 5 %, at most 3, none when the clip has fewer than 16 windows: a short clip needs every
    transition to learn from (the guard then checks on the last training frames)."""
    if n_windows < 16:
        return 0
    return min(3, max(1, n_windows // 20))


@torch.no_grad()
def held_out_rollout(trainer, g) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, real) on the held-out frames, each (T, C, H, W)."""
    k = trainer.context
    n = trainer.frames.shape[0]
    t = max(1, trainer.n_val)
    first = n - t  # the first held-out target frame
    ctx = to_float(trainer.frames[first - k : first])[None]  # (1, K, C, H, W)
    real = to_float(trainer.frames[first:])
    was = g.training
    g.eval()
    outs = []
    for _ in range(t):
        with trainer.rt.autocast():
            nxt = g(ctx).float().clamp(-1, 1)
        outs.append(nxt[0])
        ctx = torch.cat([ctx[:, 1:], nxt[:, None].to(ctx.dtype)], 1)
    g.train(was)
    return torch.stack(outs), real


@torch.no_grad()
def check(trainer) -> Check:
    first = trainer.frames.shape[0] - max(1, trainer.n_val)
    last_ctx = to_float(trainer.frames[first - 1 : first])
    pred, real = held_out_rollout(trainer, trainer.inference_generator)
    pred_g = pred if trainer.g_ema is None else held_out_rollout(trainer, trainer.g)[0]
    l1 = float((pred - real).abs().mean())
    l1_g = float((pred_g - real).abs().mean())
    copy_l1 = float((last_ctx - real).abs().mean())
    real_std = real.flatten(1).std(1)
    ok = real_std > 0.02  # a blank frame has no detail to lose
    ratio = (pred_g.flatten(1).std(1)[ok] / real_std[ok]).min() if bool(ok.any()) else None
    return Check(
        step=trainer.step_num,
        l1=l1,
        l1_g=l1_g,
        copy_l1=copy_l1,
        std_ratio=float(ratio) if ratio is not None else 1.0,
        finite=math.isfinite(l1) and math.isfinite(l1_g),
    )


def snapshot(trainer) -> dict:
    """Everything a rollback restores, copied (on the trainer's device)."""
    state = {
        "step": trainer.step_num,
        "g": copy.deepcopy(trainer.g.state_dict()),
        "d": copy.deepcopy(trainer.d.state_dict()),
        "s": copy.deepcopy(trainer.s.state_dict()),
        "opt_g": copy.deepcopy(trainer.opt_g.state_dict()),
        "opt_d": copy.deepcopy(trainer.opt_d.state_dict()),
        "opt_s": copy.deepcopy(trainer.opt_s.state_dict()),
    }
    if trainer.g_ema is not None:
        state["g_ema"] = copy.deepcopy(trainer.g_ema.state_dict())
    return state


def restore(trainer, state: dict) -> None:
    for name in ("g", "d", "s", "g_ema", "opt_g", "opt_d", "opt_s"):
        if name in state:
            getattr(trainer, name).load_state_dict(state[name])
    trainer.step_num = state["step"]


class Guard:
    """Validation, rollback and best-state keeping for one ``fit`` run."""

    def __init__(self, trainer, log, recover: bool = True):
        self.trainer = trainer
        self.log = log
        self.recover = recover
        self.recoveries = 0
        self.best: Check | None = None
        self.best_state: dict | None = None
        self.good_state = snapshot(trainer)
        self.last: Check | None = None

    def validate(self, losses_finite: bool = True) -> bool:
        """Check the current state. True: it is good (snapshots updated). False: it was bad
        and the trainer has been rolled back and slowed down. Raises TrainingCollapsed when
        recovery has failed too often."""
        tr = self.trainer
        c = check(tr)
        if not losses_finite:
            c.finite = False
        self.last = c
        reason = c.reason
        if reason is None:
            self.good_state = snapshot(tr)
            if self.best is None or c.l1 < self.best.l1:
                self.best, self.best_state = c, self.good_state
            return True
        if not self.recover:  # 'best': the recipe stays as it is; only NaN stops the run
            if not c.finite:
                raise TrainingCollapsed(
                    f"Training diverged at step {c.step} (a loss is not finite); lower the "
                    "learning rates or use the default preset."
                )
            return True
        self.recoveries += 1
        if self.recoveries > MAX_RECOVERIES:
            raise TrainingCollapsed(
                f"Training collapsed at step {c.step} ({reason}) and did not recover after "
                f"{MAX_RECOVERIES} rollbacks with lower learning rates; try fewer steps, a "
                "lower learning rate or --adv-weight 0."
            )
        bad_step = c.step
        restore(tr, self.good_state)
        cfg = tr.tcfg
        cfg.lr_g *= 0.5
        cfg.lr_d *= 0.5
        cfg.adv_weight *= 0.5
        for opt, lr in ((tr.opt_g, cfg.lr_g), (tr.opt_d, cfg.lr_d), (tr.opt_s, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr
        self.log(
            f"Training became unstable at step {bad_step} ({reason}); rolled back to step "
            f"{tr.step_num} with half the learning rates (G {cfg.lr_g:.2g}, critics "
            f"{cfg.lr_d:.2g}) and adversarial weight {cfg.adv_weight:.2g}."
        )
        return False

    def finish(self) -> Check | None:
        """Before the final save: restore the best state when the last one is clearly worse.
        Returns the check of the state that is kept."""
        tr = self.trainer
        if self.last is None or self.last.step != tr.step_num:
            self.validate()
        if self.best is None:
            return self.last
        if self.last is not None and self.last.reason is None:
            if self.last.l1 <= KEEP_LAST_TOLERANCE * self.best.l1 + 1e-4:
                return self.last
        restore(tr, self.best_state)
        self.log(
            f"Keeping the model of step {self.best.step} (held-out error {self.best.l1:.3f}); "
            f"the last state scored {self.last.l1 if self.last else float('nan'):.3f}."
        )
        return self.best
