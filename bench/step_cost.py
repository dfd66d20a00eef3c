"""What a training term costs: seconds per step of the default preset with TrainConfig overrides,
side by side in one run, on a real clip (or a procedural one), with the ratio to the first.

    python bench/step_cost.py                # default, warp term, flow term (a procedural clip)
    python bench/step_cost.py --variants "base:;warp:warp_weight=10;flow:flow_weight=1" \
        --clip ../shared/clips/camera_flower_handheld --steps 10 --rounds 3

The variants' steps are interleaved (round r times each variant's next ``--steps`` steps), so a
machine that speeds up or slows down during the run touches every variant alike; the median of
the rounds is reported. Each variant keeps its own Trainer (same seed, same batches), trains at
the add-on's size by default (128x72 letterboxed, width 1.0) and warms up ``--warmup`` steps
untimed. Values parse as int, else float, else text (``batch_size=4``, ``guard=off``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

if __package__ in (None, ""):  # `python bench/step_cost.py` from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from core.data import list_frames, load_clip
from core.models import ModelConfig
from core.train import TrainConfig, Trainer

DEFAULT_VARIANTS = "default:;warp_term:warp_weight=10;flow_term:flow_weight=1"


def parse_variants(text: str) -> list[tuple[str, dict]]:
    """'name:key=value,key=value;name:...' -> [(name, {key: float or str})]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, body = part.partition(":")
        kw: dict = {}
        for item in filter(None, body.split(",")):
            k, _, v = (t.strip() for t in item.partition("="))
            for kind in (int, float, str):  # batch_size=4 an int, warp_weight=10 a weight
                try:
                    kw[k] = kind(v)
                    break
                except ValueError:
                    continue
        out.append((name.strip(), kw))
    if not out:
        raise SystemExit("error: no variants")
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="name:key=value,...;name:...")
    p.add_argument("--clip", help="a folder of frames (default: a procedural scrolling clip)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, help="batch size (default: the device's choice)")
    p.add_argument("--size", default="128x72", help="training size WxH (the add-on's)")
    p.add_argument("--width-mult", type=float, default=1.0, help="model width (the add-on's 1.0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    args = p.parse_args(argv)
    variants = parse_variants(args.variants)

    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.clip:
        paths = list_frames(args.clip)
        clip = load_clip(paths, w, h)  # letterboxed, as the add-on trains
    else:
        import tempfile

        from core.procedural import make_clip, write_frames

        with tempfile.TemporaryDirectory(prefix="step_cost_") as tmp:
            write_frames(make_clip("scrolling_background", 24, 128, 72), tmp)
            paths = list_frames(tmp)
            clip = load_clip(paths, w, h)
    mcfg = ModelConfig(
        preset="default", width=w, height=h, channels=clip.channels, width_mult=args.width_mult
    )
    trainers = []
    for name, kw in variants:
        tcfg = TrainConfig(
            steps=10**6, device=args.device, precision=args.precision, seed=0,
            batch_size=args.batch, log_every=0, preview_every=0, **kw,
        )  # fmt: skip
        tr = Trainer(clip, mcfg, tcfg)
        for _ in range(args.warmup):
            tr.step()
        trainers.append((name, tr, []))
    for _ in range(args.rounds):
        for _name, tr, times in trainers:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                tr.step()
            times.append((time.perf_counter() - t0) / args.steps)
    tr0 = trainers[0][1]
    dtype = tr0.rt.amp_dtype or torch.float32
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {tr0.rt.type} {dtype}, batch {tr0.tcfg.batch_size}, "
        f"{w}x{h}, width {args.width_mult}, {len(paths)} frames; "
        f"median of {args.rounds} rounds x {args.steps} steps"
    )
    base = statistics.median(trainers[0][2])
    print(f"{'variant':<14} {'s/step':>8} {'ratio':>7}  rounds")
    rows = []
    for name, tr, times in trainers:
        med = statistics.median(times)
        rows.append({"variant": name, "s_per_step": med, "ratio": med / base, "rounds": times,
                     "config": tr.tcfg.to_dict()})  # fmt: skip
        rounds = " ".join(f"{t:.3f}" for t in times)
        print(f"{name:<14} {med:8.3f} {med / base:7.2f}  {rounds}")
    return rows


if __name__ == "__main__":
    main()
