"""Interleaved A/B timing of two training variants of bench/speed.py, step by step.

    python bench/ab.py [--variants naive,cl_fp32] [--configs default:128x72:0.25,...]
                       [--batch 8] [--steps 12] [--json out.json]

bench/speed.py times each variant in its own block of steps, so on a noisy machine (a VM, a
laptop that throttles) drift between the blocks lands in the ratio: two sequential runs on this
2-core VM put channels_last at 0.89x and 1.26x of NCHW. Here both trainers live side by side and
take turns, one step each; the ratio is computed per pair of neighbouring steps and its median
reported, which cancels drift slower than a step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.speed import VARIANTS, build, parse_config, sync, synthetic_clip  # noqa: E402
from core.models import ModelConfig  # noqa: E402


def ab(a: str, b: str, cfg: str, batch: int, steps: int, warmup: int, device: str) -> dict:
    preset, w, h, mult = parse_config(cfg)
    clip = synthetic_clip(64, w, h)
    mcfg = ModelConfig(preset=preset, width=w, height=h, width_mult=mult)
    ta_, tb_ = build(a, clip, mcfg, batch, device), build(b, clip, mcfg, batch, device)
    for _ in range(warmup):
        ta_.step()
        tb_.step()
    times = {a: [], b: []}
    for _ in range(steps):
        for name, trainer in ((a, ta_), (b, tb_)):
            sync(trainer.rt)
            t = time.perf_counter()
            trainer.step()
            sync(trainer.rt)
            times[name].append(time.perf_counter() - t)
    ratios = sorted(x / y for x, y in zip(times[a], times[b]))
    return {
        "config": cfg, "batch": batch, "steps": steps, "a": a, "b": b,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "speedup_b_over_a": statistics.median(ratios),
        "speedup_min": ratios[0], "speedup_max": ratios[-1],
    }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="naive,cl_fp32", help=f"A,B from {','.join(VARIANTS)}")
    p.add_argument(
        "--configs",
        default="default:128x72:0.25,default:128x72:1,paper:128x72:0.5",
        help="preset:WxH[:width_mult],...",
    )
    p.add_argument("--batch", type=int, default=8, help="pairs per step (default 8)")
    p.add_argument("--steps", type=int, default=12, help="timed steps per variant (default 12)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    a, b = args.variants.split(",")
    if a not in VARIANTS or b not in VARIANTS:
        p.error(f"variants must be two of {', '.join(VARIANTS)}")
    results = []
    for cfg in args.configs.split(","):
        r = ab(a, b, cfg, args.batch, args.steps, args.warmup, args.device)
        results.append(r)
        print(
            f"{cfg} batch {args.batch}: {a} {r['median_s'][a]:.3f} s/step, {b} "
            f"{r['median_s'][b]:.3f} s/step; {b}/{a} speed-up median {r['speedup_b_over_a']:.2f} "
            f"(per-pair range {r['speedup_min']:.2f}-{r['speedup_max']:.2f}, {args.steps} pairs)",
            flush=True,
        )
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d"), "command": "python bench/ab.py " + " ".join(
            sys.argv[1:] if argv is None else argv)}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
