"""The CPU target of the speed issue: the default preset, trained on a 64-frame 128x72 clip for at
most 5 minutes of wall time on this machine, must beat copy-last-frame on 1-step SSIM (the
quality benchmark's metric, bench/quality.py).

    python bench/cpu_target.py [--clip bouncing_ball] [--budget-s 300] [--width-mult 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.quality import TRAIN_FRACTION, CopyLast, _clip_of, evaluate  # noqa: E402
from core.data import to_float  # noqa: E402
from core.device import pick_device  # noqa: E402
from core.models import ModelConfig  # noqa: E402
from core.procedural import make_clip  # noqa: E402
from core.train import TrainConfig, Trainer  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--clip", default="bouncing_ball", help="procedural clip (default: bouncing_ball)"
    )
    p.add_argument(
        "--budget-s", type=float, default=300.0, help="training wall time (default: 300)"
    )
    p.add_argument("--width-mult", type=float, default=0.25, help="model width (default: 0.25)")
    p.add_argument(
        "--precision", default="auto", help="auto (the CPU default), fp32 or bf16 (default: auto)"
    )
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    arr = make_clip(args.clip, 64, 128, 72, seed=0)
    n_train = int(round(64 * TRAIN_FRACTION))
    rt = pick_device("cpu", args.precision)
    mcfg = ModelConfig(preset="default", width=128, height=72, width_mult=args.width_mult)
    tcfg = TrainConfig(steps=10**9, device="cpu", precision=args.precision)
    trainer = Trainer(_clip_of(arr[:n_train]), mcfg, tcfg, rt)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.budget_s:
        trainer.step()
    train_s = time.perf_counter() - t0
    frames = to_float(torch.from_numpy(arr).permute(0, 3, 1, 2))
    res = evaluate(trainer.inference_generator, mcfg.context, frames, n_train, rt)
    base = evaluate(CopyLast(), 1, frames, n_train, rt)
    out = {
        "clip": args.clip, "size": "128x72", "frames": 64, "train_frames": n_train,
        "threads": torch.get_num_threads(), "precision": "bf16" if rt.amp_dtype else "fp32",
        "steps": trainer.step_num,
        "train_s": round(train_s, 1), "default_1step_ssim": res["one_step"]["ssim"],
        "copy_last_1step_ssim": base["one_step"]["ssim"],
        "default_ssim_at_10": res["rollout"]["10"]["ssim"],
        "copy_last_ssim_at_10": base["rollout"]["10"]["ssim"],
        "beats_copy_last": res["one_step"]["ssim"] > base["one_step"]["ssim"],
    }  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
