"""Quality on real clips, judged at each clip's own resolution, as the add-on inserts frames.

    python bench/quality.py --real                       # ../shared/clips, add-on defaults
    python bench/quality.py --real --clips DIR --seeds 0,1,2 --sheets docs/quality/real

Protocol: each clip is a folder of frames. A model trains on all but the last ``TEST_FRAMES``
frames, at the add-on's training size (letterboxed), then continues the clip from its last
training frames at the clip's own size (core.generate.FullSizePredictor, as `extend` does).
Metrics, at the clip's own size, over all channels in [0, 1]:

- SSIM / PSNR at k = 1, 5, 10 frames after the split and their mean over k = 1..10;
- sharpness ratio: mean squared Laplacian of the luma (alpha-weighted for RGBA), generated /
  real, over the 10 frames (1.0 = as crisp; a blurry continuation scores less, noise more);
- motion ratio: mean |I_t+1 - I_t| of the continuation / the real one (1.0 = as lively);
- 100-frame stability: finite; the per-frame spatial std stays >= STD_FLOOR x the real
  frames' (no fade to grey); every frame's mean colour stays within DRIFT_BOUND of the range
  the real frames' mean colours span, per channel (no drift; a scrolling clip changes colour
  itself: the platformer's real frames lie up to 0.112 from its mean colour); the motion of
  frames 90-100 >= FREEZE_FLOOR x the real clip's (no freeze; clips whose real motion is below
  0.5/255 are exempt); their sharpness <= BLOWUP_BOUND x the real frames' (no blow-up).

Baselines: copy-last, linear extrapolation (2 I_t - I_t-1), and constant-velocity optical-flow
extrapolation: Farnebaeck flow between the last two frames (OpenCV, the bench extra only),
the last frame warped by k times that flow for the k-th frame.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from core.data import (
    Clip,
    Letterbox,
    fitted_size,
    list_frames,
    load_clip,
    load_full_size,
    read_frame,
    to_float,
)
from core.device import pick_device
from core.generate import (
    FullSizePredictor,
    calibrate_motion_gain,
    load_generator,
    reference_picks,
    visible,
)
from core.generate import luma_detail as luma_laplacian_energy  # the sharpness measure
from core.loops import HISTORY, find_loop, loop_index
from core.train import Trainer

TEST_FRAMES = 10
KS = (1, 5, 10)
STABILITY_FRAMES = 100
STD_FLOOR = 0.5
DRIFT_BOUND = 0.1
FREEZE_FLOOR = 0.1
BLOWUP_BOUND = 4.0
BASELINES = ("copy_last", "linear", "flow")
# What the add-on ships (fsgan_blender/properties.py): its training size and model width.
ADDON = {"width": 128, "height": 72, "width_mult": 1.0}


def default_clips_dir() -> str | None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d = os.path.join(os.path.dirname(here), "shared", "clips")
    return d if os.path.isdir(d) else None


def clip_dirs(root: str) -> list[str]:
    return sorted(
        os.path.join(root, d)
        for d in os.listdir(root)
        if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
    )


# --- metrics ------------------------------------------------------------------------------


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def motion_energy(seq: torch.Tensor) -> float:
    return float((seq[1:] - seq[:-1]).abs().mean()) if len(seq) > 1 else 0.0


def score(gen: torch.Tensor, real: torch.Tensor, last: torch.Tensor, long: torch.Tensor | None,
          clip_all: torch.Tensor) -> dict:  # fmt: skip
    """gen, real: (T, C, H, W) in [-1, 1], T = TEST_FRAMES; last: the last context frame;
    long: a STABILITY_FRAMES rollout (or None for baselines); clip_all: the whole real clip."""
    from bench.quality import psnr, ssim

    g, r = _unit(gen), _unit(real)
    ps, ss = psnr(g, r), ssim(g, r)
    lu = _unit(last[None])
    real_motion = motion_energy(torch.cat([lu, r]))
    gen_motion = motion_energy(torch.cat([lu, g]))
    sharp_real = float(luma_laplacian_energy(r).mean())
    sharp_gen = float(luma_laplacian_energy(g).mean())
    out = {
        "ssim": {str(k): float(ss[k - 1]) for k in KS},
        "psnr": {str(k): float(ps[k - 1]) for k in KS},
        "ssim_mean": float(ss.mean()),
        "psnr_mean": float(ps.mean()),
        "sharpness_ratio": sharp_gen / sharp_real if sharp_real > 1e-8 else None,
        "motion_ratio": gen_motion / real_motion if real_motion > 1e-6 else None,
    }
    if long is not None:
        out["stability"] = stability(long, clip_all)
    return out


def stability(roll: torch.Tensor, clip_all: torch.Tensor) -> dict:
    finite = bool(torch.isfinite(roll).all())
    u = _unit(torch.nan_to_num(roll, nan=0.0))
    real = _unit(clip_all)
    # colours, contrast and motion as seen: premultiplied by alpha where there is one
    seen_u, seen_real = visible(u), visible(real)
    ref_std = float(seen_real.flatten(1).std(1).mean())
    std_ratio = float(seen_u.flatten(1).std(1).min()) / ref_std if ref_std > 0 else 1.0
    means, gen = seen_real.mean((2, 3)), seen_u.mean((2, 3))  # (N, C) per-frame mean colours
    lo, hi = means.min(0).values, means.max(0).values
    outside = float(torch.maximum(lo - gen, gen - hi).clamp_min(0.0).max())
    drift = float((gen - means.mean(0)).abs().max())  # from the clip's mean: the old bound
    real_motion = motion_energy(seen_real)
    tail_motion = motion_energy(seen_u[-11:])
    freeze_ratio = tail_motion / real_motion if real_motion > 0.5 / 255 else None
    sharp_real = float(luma_laplacian_energy(real).mean())
    blowup = float(luma_laplacian_energy(u[-11:]).mean()) / sharp_real if sharp_real > 0 else 0.0
    ok = (
        finite
        and std_ratio >= STD_FLOOR
        and outside <= DRIFT_BOUND
        and (freeze_ratio is None or freeze_ratio >= FREEZE_FLOOR)
        and blowup <= BLOWUP_BOUND
    )
    return {
        "frames": len(roll),
        "finite": finite,
        "std_ratio_min": std_ratio,
        "color_drift_max": drift,
        "color_outside_range_max": outside,
        "tail_motion_ratio": freeze_ratio,
        "tail_sharpness_ratio": blowup,
        "stable": ok,
    }


# --- methods ------------------------------------------------------------------------------


def baseline(name: str, full: torch.Tensor, n_train: int, count: int) -> torch.Tensor:
    """(count, C, H, W) continuation of the full-size frames[:n_train] in [-1, 1]."""
    last, prev = full[n_train - 1], full[n_train - 2]
    if name == "copy_last":
        return last[None].expand(count, *last.shape).clone()
    if name == "linear":
        v = last - prev
        return torch.stack([(last + (k + 1) * v).clamp(-1, 1) for k in range(count)])
    if name == "flow":
        return flow_extrapolation(last, prev, count)
    raise ValueError(name)


def flow_extrapolation(last: torch.Tensor, prev: torch.Tensor, count: int) -> torch.Tensor:
    """Constant velocity: Farnebaeck flow last -> prev, the last frame warped by k x it."""
    import cv2

    def gray(x):
        a = (_unit(x[:3]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)

    # flow(p): where pixel p of the last frame was in the previous one; so the next frame's
    # pixel p comes from p + flow(p) in the last frame (constant velocity).
    flow = cv2.calcOpticalFlowFarneback(gray(last), gray(prev), None, 0.5, 4, 15, 3, 5, 1.2, 0)
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    src = _unit(last).permute(1, 2, 0).numpy().astype(np.float32)
    out = []
    for k in range(1, count + 1):
        mx, my = gx + k * flow[..., 0], gy + k * flow[..., 1]
        a = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if a.ndim == 2:
            a = a[..., None]
        out.append(torch.from_numpy(a).permute(2, 0, 1) * 2.0 - 1.0)
    return torch.stack(out)


def train_on(paths: list[str], preset: str, overrides: dict, seed: int, device: str,
             precision: str = "auto") -> tuple[Trainer, dict]:  # fmt: skip
    """Train at the add-on's size on ``paths``, letterboxed as the add-on does, or fitted to
    the clip's aspect with ``fit_aspect`` (core.data.fitted_size); returns (trainer, info)."""
    from bench.quality import train_trainer

    over = {**ADDON, **overrides}
    w, h = over.pop("width"), over.pop("height")
    if over.get("fit_aspect", False):
        w, h = fitted_size(*read_frame(paths[0], exif=False).size, w, h)
    clip: Clip = load_clip(paths, w, h, exif=False)
    return train_trainer(clip, preset, over, seed, device, precision)


def run_clip(folder: str, methods: dict, seeds: list[int], device: str, precision: str, log,
             rollouts: dict | None = None, save_dir: str | None = None,
             rescore: str | None = None, resample: bool = False,
             no_palette: bool = False, no_loop: bool = False,
             no_mip: bool = False, no_cal: bool = False) -> dict:  # fmt: skip
    """All methods on one clip folder. ``methods``: name -> (preset, overrides) for learned
    ones; baselines by name with None. ``save_dir``: keep each trained model there
    (``<clip>_<method>_s<seed>.safetensors`` and its training info as ``.json``);
    ``rescore``: judge the models kept there instead of training. ``resample``: also judge
    every learned model with its generated frames warped again at each step (``<method>
    _resample``: FullSizePredictor(track=False), the ablation of following the detail).
    ``no_palette``: also judge it with pixel art not kept to its palette (``<method>
    _nopalette``: FullSizePredictor(palette=False)). ``no_mip``: also judge it with the last
    real frame sampled unfiltered where the followed field shrinks it (``<method>_nomip``:
    FullSizePredictor(mip=False)). Every model's motion gain is calibrated on the training
    frames' end, as ``extend`` does (core.generate.calibrate_motion_gain); ``no_cal`` also
    judges it with the model's own flows (``<method>_nocal``: gain 1). Where the training
    frames end on a loop (core.loops.find_loop, as ``extend`` looks for one), a learned method
    continues the loop as ``extend`` does; ``no_loop`` also judges the model itself there
    (``<method>_noloop``).
    Returns {method: {seed: result}}."""
    name = os.path.basename(folder.rstrip("/"))
    paths = list_frames(folder)
    n = len(paths)
    n_train = n - TEST_FRAMES
    channels = load_clip(paths, 8, 8, exif=False).channels  # 4 where a frame has transparency
    full = to_float(load_full_size(paths, channels, exif=False))  # (N, C, H, W) in [-1, 1]
    real = full[n_train:]
    rt = pick_device(device, precision)
    out: dict = {}
    periods: dict = {}  # (width, height, channels) -> the loop's period or None
    for m, spec in methods.items():
        out[m] = {}
        if spec is None:
            gen = baseline(m, full, n_train, TEST_FRAMES)
            out[m]["-"] = score(gen, real, full[n_train - 1], None, full)
            if rollouts is not None:
                rollouts.setdefault(name, {})[m] = gen
            log(f"  {name:<26} {m:<14} {_short(out[m]['-'])}")
            continue
        preset, over = spec
        variants = [(m, {})]
        if resample:
            variants.append((f"{m}_resample", {"track": False}))
        if no_palette:
            variants.append((f"{m}_nopalette", {"palette": False}))
        if no_mip:
            variants.append((f"{m}_nomip", {"mip": False}))
        if no_loop:
            variants.append((f"{m}_noloop", {"loop": False}))
        if no_cal:
            variants.append((f"{m}_nocal", {"gain": 1.0}))
        for v, _ in variants[1:]:
            out[v] = {}
        for seed in seeds:
            stem = f"{name}_{m}_s{seed}"
            if rescore:
                kept = os.path.join(rescore, stem + ".safetensors")
                if not os.path.exists(kept):
                    raise SystemExit(f"error: {kept} is missing (train with --save-models first)")
                g, mcfg, _ = load_generator(kept, rt)
                with open(os.path.join(rescore, stem + ".json")) as f:
                    info = json.load(f)
            else:
                tr, info = train_on(paths[:n_train], preset, over, seed, device, precision)
                g, mcfg = tr.inference_generator.eval(), tr.mcfg
                if save_dir:
                    os.makedirs(save_dir, exist_ok=True)
                    tr.save(os.path.join(save_dir, stem + ".safetensors"))
                    with open(os.path.join(save_dir, stem + ".json"), "w") as f:
                        json.dump(info, f)
            box = Letterbox(full.shape[-1], full.shape[-2], mcfg.width, mcfg.height)
            k = mcfg.context
            size = (mcfg.width, mcfg.height, mcfg.channels)
            if size not in periods:  # as extend looks for a loop; read once per training size
                history = paths[max(0, n_train - HISTORY) : n_train]
                small = load_clip(history, *size[:2], channels=size[2], exif=False)
                periods[size] = find_loop(small.frames)
            period = periods[size]
            gain = None  # the motion gain extend would use, once a variant generates
            for v, kw in variants:
                kw = dict(kw)
                loop = kw.pop("loop", True)
                if loop and period is not None:  # what extend writes
                    idx = [loop_index(n_train, period, i) for i in range(STABILITY_FRAMES)]
                    long = full[idx]
                    res = score(long[:TEST_FRAMES], real, full[n_train - 1], long, full)
                    res["train"], res["loop"] = info, period
                    out[v][str(seed)] = res
                    if rollouts is not None and seed == seeds[0]:
                        rollouts.setdefault(name, {})[v] = long[:TEST_FRAMES]
                    log(f"  {name:<26} {v:<14} seed {seed} {_short(res)}  (continues its "
                        f"{period}-frame loop)")  # fmt: skip
                    continue
                if not loop and period is None:
                    continue  # no loop: the same as the method's own row
                if gain is None:  # calibrated on the frames before the split, as extend does
                    # for STABILITY_FRAMES new frames (kept steady against the same frames)
                    history = full[max(0, n_train - HISTORY) : n_train]
                    reference = history[reference_picks(len(history))]
                    gain, _ = calibrate_motion_gain(
                        g, mcfg, full[:n_train], rt, ahead=STABILITY_FRAMES, reference=reference
                    )
                kw.setdefault("gain", gain)
                pred = FullSizePredictor(g, mcfg, box, rt, **kw)
                long = pred.rollout(full[n_train - k : n_train], STABILITY_FRAMES).cpu()
                res = score(long[:TEST_FRAMES], real, full[n_train - 1], long, full)
                res["train"], res["motion_gain"] = info, kw["gain"]
                out[v][str(seed)] = res
                if rollouts is not None and seed == seeds[0]:
                    rollouts.setdefault(name, {})[v] = long[:TEST_FRAMES]
                log(f"  {name:<26} {v:<14} seed {seed} {_short(res)}  ({info['train_s']:.0f}s, "
                    f"{info['steps']} steps, {info['recoveries']} rollbacks, motion gain "
                    f"{kw['gain']:g})")  # fmt: skip
    out = {v: r for v, r in out.items() if r}  # a _noloop row only where there is a loop
    if rollouts is not None:
        rollouts.setdefault(name, {})["real"] = real
        rollouts[name]["last"] = full[n_train - 1]
    return out


def _f(v, nd=3):
    return "n/a" if v is None else f"{v:.{nd}f}"


def _short(r: dict) -> str:
    st = r.get("stability")
    return (
        f"SSIM@1/5/10 {_f(r['ssim']['1'])} {_f(r['ssim']['5'])} {_f(r['ssim']['10'])} "
        f"mean {_f(r['ssim_mean'])} | sharp {_f(r['sharpness_ratio'], 2)} | motion "
        f"{_f(r['motion_ratio'], 2)}" + (f" | stable {st['stable']}" if st else "")
    )


def aggregate(per_seed: dict) -> dict:
    """{seed: result} -> mean and spread (max - min) / 2 of each number over the seeds."""
    rows = list(per_seed.values())

    def ms(get):
        vals = [get(r) for r in rows]
        vals = [v for v in vals if v is not None]
        if not vals:
            return None, None
        return float(np.mean(vals)), float((max(vals) - min(vals)) / 2)

    out = {
        "ssim_mean": ms(lambda r: r["ssim_mean"]),
        "psnr_mean": ms(lambda r: r["psnr_mean"]),
        "sharpness_ratio": ms(lambda r: r["sharpness_ratio"]),
        "motion_ratio": ms(lambda r: r["motion_ratio"]),
        "seeds": len(rows),
    }
    for k in KS:
        out[f"ssim@{k}"] = ms(lambda r, k=k: r["ssim"][str(k)])
        out[f"psnr@{k}"] = ms(lambda r, k=k: r["psnr"][str(k)])
    if "stability" in rows[0]:
        out["stable"] = sum(r["stability"]["stable"] for r in rows)
        out["collapsed"] = sum(r["stability"]["std_ratio_min"] < STD_FLOOR for r in rows)
        out["train_s"] = ms(lambda r: r["train"]["train_s"])
        out["steps"] = ms(lambda r: r["train"]["steps"])
    return out


def markdown(results: dict) -> str:
    """One row per clip and method: means over seeds +- half the range."""

    def pm(v, nd=3):
        m, s = v
        if m is None:
            return "n/a"
        return f"{m:.{nd}f}" + (f" ± {s:.{nd}f}" if s else "")

    lines = [
        "| clip | method | SSIM@1 | SSIM@5 | SSIM@10 | SSIM mean 1-10 | PSNR mean 1-10 | "
        "sharpness | motion | stable 100 | train s |",
        "|" + "---|" * 11,
    ]
    for clip, res in results.items():
        for m, per_seed in res.items():
            a = aggregate(per_seed)
            stable = f"{a['stable']}/{a['seeds']}" if "stable" in a else "–"
            train = pm(a["train_s"], 0) if "train_s" in a else "–"
            lines.append(
                f"| {clip} | {m} | {pm(a['ssim@1'])} | {pm(a['ssim@5'])} | {pm(a['ssim@10'])} "
                f"| {pm(a['ssim_mean'])} | {pm(a['psnr_mean'], 2)} | "
                f"{pm(a['sharpness_ratio'], 2)} | {pm(a['motion_ratio'], 2)} | {stable} | "
                f"{train} |"
            )
    return "\n".join(lines)


def means_markdown(results: dict) -> str:
    """One row per method: the mean over the clips of each clip's mean over seeds, and the
    seeds stable for 100 frames out of all."""
    methods = list(dict.fromkeys(m for r in results.values() for m in r))
    lines = [
        "| method | clips | SSIM mean 1-10 | PSNR mean 1-10 | sharpness | motion | stable 100 |",
        "|" + "---|" * 7,
    ]
    for m in methods:
        aggs = [aggregate(r[m]) for r in results.values() if m in r]

        def mean(key, aggs=aggs):
            vals = [a[key][0] for a in aggs if a[key][0] is not None]
            return float(np.mean(vals)) if vals else None

        stable = "–"
        if all("stable" in a for a in aggs):
            stable = f"{sum(a['stable'] for a in aggs)}/{sum(a['seeds'] for a in aggs)}"
        lines.append(
            f"| {m} | {len(aggs)} | {_f(mean('ssim_mean'))} | {_f(mean('psnr_mean'), 2)} | "
            f"{_f(mean('sharpness_ratio'), 2)} | {_f(mean('motion_ratio'), 2)} | {stable} |"
        )
    return "\n".join(lines)


SCORE_KEYS = ("beats_copy_last", "beats_flow", "motion_ok", "sharpness_ok", "stable", "no_collapse")


def report(results: dict, log) -> dict:
    """Logs the per-clip table, the means and each learned method's scorecard; returns the
    scorecards."""
    log("\n" + markdown(results))
    log("\n" + means_markdown(results))
    cards = {
        m: scorecard(results, m)
        for m in dict.fromkeys(v for r in results.values() for v in r)
        if m not in BASELINES
    }
    for m, card in cards.items():
        for key in SCORE_KEYS:
            log(f"{m}: {key} on {sum(c[key] for c in card.values())}/{len(card)} clips")
    return cards


def merge(paths: list[str]) -> dict:
    """The results of several runs' real_results.json in one (a later file adds methods to a
    clip, or replaces a method it also has)."""
    results: dict = {}
    for p in paths:
        with open(p) as f:
            for clip, res in json.load(f)["results"].items():
                results.setdefault(clip, {}).update(res)
    return results


def scorecard(results: dict, method: str = "default") -> dict:
    """Per clip: does ``method`` beat copy-last and flow on mean SSIM (over seeds), with a
    motion ratio in [0.5, 1.5], a sharpness ratio in [0.8, 1.25], and every seed stable?"""
    card = {}
    for clip, res in results.items():
        if method not in res:
            continue
        a = aggregate(res[method])
        mean = a["ssim_mean"][0]
        motion, sharp = a["motion_ratio"][0], a["sharpness_ratio"][0]
        row = {
            "beats_copy_last": "copy_last" in res and mean > aggregate(res["copy_last"])["ssim_mean"][0],
            "beats_flow": "flow" in res and mean > aggregate(res["flow"])["ssim_mean"][0],
            "motion_ok": motion is None or 0.5 <= motion <= 1.5,
            "sharpness_ok": sharp is None or 0.8 <= sharp <= 1.25,
            "stable": a.get("stable") == a["seeds"],
            "no_collapse": a.get("collapsed", 0) == 0,
        }  # fmt: skip
        card[clip] = row
    return card
