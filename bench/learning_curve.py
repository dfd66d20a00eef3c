"""What a preset learns against training steps: 1-step SSIM on held-out frames, as it trains.

    python bench/learning_curve.py --clip ../shared/clips/camera_flower_handheld --preset paper \
        --minutes 40 --out bench_out/curve/paper_flower.json [--svg docs/quality/curve.svg]

Issue 14 asks whether the ``paper`` preset, with its recipe exactly as the paper gives it,
learns at all, and at what budget. This trains one preset at the add-on's training size (128x72
letterboxed, model width 1.0 unless told otherwise) on all but the last 10 frames of a real
clip and, at log-spaced steps, measures at the training size (the picture, not the letterbox
bars), all channels in [0, 1]:

- ``ssim_heldout``: mean 1-step SSIM of G(I_t) against I_t+1 over the 10 held-out transitions
  (each from the real previous frames); ``ssim_train``: the same over the training transitions
  (whether it fits what it sees);
- ``std_ratio``: the predictions' spatial std / the real frames' (a flat colour scores ~0);
- copy-last's SSIM on the same transitions, for scale;
- ``ssim_heldout_batch_stats`` (models with BatchNorm: the paper preset): the held-out SSIM
  with BatchNorm normalising by the held-out frames' own statistics instead of its running
  ones (dropout still off). Keras' default momentum, which the paper preset keeps, makes the
  running statistics trail the weights; a large gap says generation suffers from that lag.

The generator sampled is the one ``extend`` would use (the EMA copy where the preset keeps
one), in eval mode. The recipe is the preset's own (``TrainConfig.resolved``): no guard, no
rollback, nothing changed along the way. ``--svg`` draws the curves of one or more result
files (``--plot a.json,b.json``) as a plain SVG line chart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from core.data import list_frames, load_clip, to_float  # noqa: E402
from core.models import ModelConfig  # noqa: E402
from core.train import TrainConfig, Trainer  # noqa: E402

TEST_FRAMES = 10


def eval_steps(limit: int) -> list[int]:
    """0, then about 6 per decade: 10, 15, 20, 30, 50, 70, 100, 150, ... up to ``limit``."""
    out, mant = [0], (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    dec = 10
    while dec <= limit:
        out += [int(dec * m) for m in mant if dec * m <= limit]
        dec *= 10
    return out


@torch.no_grad()
def one_step(g, frames: torch.Tensor, k: int, targets: range, inner) -> dict:
    """Mean 1-step SSIM of g over the transitions into ``targets`` (frame indices), with
    copy-last's and the std ratio, on the letterbox's picture."""
    from bench.quality import ssim

    left, top, w, h = inner
    ctx = torch.stack([frames[t - k : t] for t in targets])  # (B, K, C, H, W) in [-1, 1]
    was = g.training
    g.eval()
    pred = g(ctx).float().clamp(-1.0, 1.0)
    bns = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    batch_pred = None
    if bns:  # the same, with BatchNorm on these frames' own statistics (running ones untouched)
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
        for m in bns:
            m.train()
            m.momentum = 0.0
        batch_pred = g(ctx).float().clamp(-1.0, 1.0)
        for m, (mom, count) in zip(bns, saved):
            m.momentum = mom
            m.num_batches_tracked.copy_(count)
    g.train(was)
    real = frames[list(targets)]
    crop = lambda x: (x[..., top : top + h, left : left + w] + 1.0) / 2.0  # noqa: E731
    p, r, last = crop(pred), crop(real), crop(ctx[:, -1])
    std = float(p.flatten(1).std(1).mean()) / max(float(r.flatten(1).std(1).mean()), 1e-6)
    return {
        "ssim": float(ssim(p, r).mean()),
        "copy_last": float(ssim(last, r).mean()),
        "std_ratio": std,
        "ssim_batch_stats": None if batch_pred is None else float(ssim(crop(batch_pred), r).mean()),
    }


def run(args) -> dict:
    paths = list_frames(args.clip)
    n_train = len(paths) - TEST_FRAMES
    clip = load_clip(paths, args.width, args.height, exif=False)  # all frames, to judge
    train_clip = replace(clip, frames=clip.frames[:n_train], paths=paths[:n_train])  # read once
    mcfg = ModelConfig(preset=args.preset, width=args.width, height=args.height,
                       channels=clip.channels, width_mult=args.width_mult)  # fmt: skip
    tcfg = TrainConfig(seed=args.seed, device=args.device, precision=args.precision,
                       steps=args.steps, guard="off", preview_every=0, checkpoint_every=0)  # fmt: skip
    tr = Trainer(train_clip, mcfg, tcfg)
    k = mcfg.context
    frames = to_float(clip.frames).to(tr.rt.device)
    held = range(n_train, len(paths))
    seen = range(k, n_train)
    inner = clip.letterbox.inner
    marks = set(eval_steps(args.steps))
    points = []
    t0 = time.perf_counter()
    deadline = t0 + 60.0 * args.minutes if args.minutes > 0 else float("inf")
    while True:
        step = tr.step_num
        if step in marks or time.perf_counter() >= deadline or step >= args.steps:
            g = tr.inference_generator
            h, s = one_step(g, frames, k, held, inner), one_step(g, frames, k, seen, inner)
            points.append({
                "step": step, "seconds": round(time.perf_counter() - t0, 1),
                "ssim_heldout": h["ssim"], "ssim_train": s["ssim"], "std_ratio": h["std_ratio"],
                "copy_last_heldout": h["copy_last"], "copy_last_train": s["copy_last"],
                "ssim_heldout_batch_stats": h["ssim_batch_stats"],
            })  # fmt: skip
            print(f"step {step:6d} {points[-1]['seconds']:7.0f}s  1-step SSIM held-out "
                  f"{h['ssim']:.3f} (copy-last {h['copy_last']:.3f})  train {s['ssim']:.3f} "
                  f"(copy-last {s['copy_last']:.3f})  std {h['std_ratio']:.2f}"
                  + ("" if h["ssim_batch_stats"] is None else
                     f"  held-out with batch BN statistics {h['ssim_batch_stats']:.3f}"),
                  flush=True)  # fmt: skip
            if time.perf_counter() >= deadline or step >= args.steps:
                break
        out = tr.step()
        if not all(torch.isfinite(v).all() for v in out.values()):
            print(f"step {step}: a loss is not finite; stopping", flush=True)
            break
    return {
        "clip": os.path.basename(args.clip.rstrip("/")),
        "preset": args.preset,
        "size": [args.width, args.height],
        "width_mult": args.width_mult,
        "seed": args.seed,
        "train_config": tr.tcfg.to_dict(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {tr.rt.device.type}",
        "points": points,
    }


def svg(results: list[dict], title: str) -> str:
    """A line chart of held-out 1-step SSIM (solid) and training SSIM (dashed) against steps
    (log scale), copy-last held-out as a dotted line per result; plain SVG, no dependencies."""
    import math

    wd, ht, ml, mr, mt, mb = 720, 400, 60, 200, 40, 50
    pw, ph = wd - ml - mr, ht - mt - mb
    smax = max(max(p["step"] for p in r["points"]) for r in results)
    lmax = math.log10(max(smax, 10) + 1)
    x = lambda s: ml + pw * math.log10(s + 1) / lmax  # noqa: E731
    y = lambda v: mt + ph * (1.0 - max(0.0, min(1.0, v)))  # noqa: E731
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{wd}" height="{ht}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{wd}" height="{ht}" fill="white"/>',
        f'<text x="{ml}" y="22" font-size="14">{title}</text>',
    ]
    for v in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#ddd"/><text x="{ml - 8}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end">{v:.1f}</text>')  # fmt: skip
    dec = 1
    while dec <= smax:
        parts.append(f'<line x1="{x(dec):.1f}" x2="{x(dec):.1f}" y1="{mt}" y2="{mt + ph}" '
                     f'stroke="#eee"/><text x="{x(dec):.1f}" y="{mt + ph + 16}" '
                     f'text-anchor="middle">{dec}</text>')  # fmt: skip
        dec *= 10
    parts.append(f'<text x="{ml + pw / 2}" y="{ht - 10}" text-anchor="middle">training step '
                 f'(log scale)</text>')  # fmt: skip
    parts.append(f'<text x="16" y="{mt + ph / 2}" transform="rotate(-90 16 {mt + ph / 2})" '
                 f'text-anchor="middle">1-step SSIM</text>')  # fmt: skip
    for i, r in enumerate(results):
        c = colours[i % len(colours)]
        pts = r["points"]
        for key, dash in (("ssim_heldout", ""), ("ssim_train", ' stroke-dasharray="5,3"'),
                          ("copy_last_heldout", ' stroke-dasharray="1,3"')):  # fmt: skip
            line = " ".join(f"{x(p['step']):.1f},{y(p[key]):.1f}" for p in pts)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{c}" '
                         f'stroke-width="2"{dash}/>')  # fmt: skip
        ly = mt + 10 + 36 * i
        parts.append(f'<line x1="{ml + pw + 12}" x2="{ml + pw + 36}" y1="{ly}" y2="{ly}" '
                     f'stroke="{c}" stroke-width="2"/><text x="{ml + pw + 42}" y="{ly + 4}">'
                     f'{r["preset"]}, {r["clip"][:18]}</text>')  # fmt: skip
    parts.append(f'<text x="{ml + pw + 12}" y="{mt + 10 + 36 * len(results) + 8}" '
                 f'fill="#555">solid: held-out</text>')  # fmt: skip
    parts.append(f'<text x="{ml + pw + 12}" y="{mt + 10 + 36 * len(results) + 24}" '
                 f'fill="#555">dashed: training frames</text>')  # fmt: skip
    parts.append(f'<text x="{ml + pw + 12}" y="{mt + 10 + 36 * len(results) + 40}" '
                 f'fill="#555">dotted: copy-last, held-out</text>')  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", help="a folder of frames (a clip of ../shared/clips)")
    ap.add_argument("--preset", default="paper", choices=("paper", "default"))
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=72)
    ap.add_argument("--width-mult", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=100_000, help="at most this many steps")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", help="write the curve as JSON here")
    ap.add_argument("--plot", help="comma-separated result JSONs to draw instead of training")
    ap.add_argument("--svg", help="write an SVG chart of the curve(s) here")
    args = ap.parse_args(argv)
    if args.plot:
        results = []
        for p in args.plot.split(","):
            with open(p) as f:
                results.append(json.load(f))
    else:
        if not args.clip or not os.path.isdir(args.clip):
            ap.error("--clip must name a folder of frames")
        if len(list_frames(args.clip)) < TEST_FRAMES + 4:
            ap.error(f"the clip needs at least {TEST_FRAMES + 4} frames")
        results = [run(args)]
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(results[0], f, indent=1)
    if args.svg:
        os.makedirs(os.path.dirname(os.path.abspath(args.svg)), exist_ok=True)
        with open(args.svg, "w") as f:
            f.write(svg(results, "1-step SSIM against training steps (128x72, width 1.0)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
