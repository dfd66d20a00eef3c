"""The built-in default job: a procedural clip -> train -> extend -> contact sheet."""

from __future__ import annotations

import os

from .data import load_clip
from .generate import extend
from .models import ModelConfig
from .procedural import contact_sheet, make_clip, write_frames
from .train import TrainConfig, Trainer, fit

DEMO_FRAMES = 48
DEMO_W, DEMO_H = 96, 56
DEMO_STEPS = 600


def run_demo(out: str, steps: int | None = None, device: str = "auto", log=print) -> dict:
    src_dir = os.path.join(out, "source")
    gen_dir = os.path.join(out, "generated")
    paths = write_frames(make_clip("bouncing_ball", DEMO_FRAMES, DEMO_W, DEMO_H), src_dir)
    clip = load_clip(paths, DEMO_W, DEMO_H)
    mcfg = ModelConfig(
        preset="default", width=DEMO_W, height=DEMO_H, channels=clip.channels, width_mult=0.5
    )
    tcfg = TrainConfig(steps=steps or DEMO_STEPS, device=device, preview_every=0, log_every=25)
    trainer = Trainer(clip, mcfg, tcfg)
    log(
        f"training the default preset on {trainer.rt.describe()} for {tcfg.steps} steps "
        f"({len(paths)} frames, {DEMO_W}x{DEMO_H})"
    )

    def progress(ev):
        if ev["event"] == "progress":
            losses = " ".join(f"{k}={v:.3f}" for k, v in ev["losses"].items())
            log(f"  step {ev['step']}/{ev['total']}  {losses}  eta {ev['eta_s'] or 0:.0f}s")

    ckpt = os.path.join(out, "model.safetensors")
    fit(trainer, ckpt, progress)
    for i in range(1, 17):  # the demo's own frames of an earlier run (extend never overwrites)
        old = os.path.join(gen_dir, f"frame_{i:04d}.png")
        if os.path.isfile(old):
            os.remove(old)
    generated = extend(ckpt, paths, 16, gen_dir, device=device)
    sheet = contact_sheet(
        [paths[-8:], generated[:8], generated[8:]],
        os.path.join(out, "contact_sheet.png"),
        cell=96,
        labels=["source", "generated", "generated"],
    )
    return {"checkpoint": ckpt, "source": src_dir, "generated": gen_dir, "contact_sheet": sheet}
