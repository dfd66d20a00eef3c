"""Training and rollout speed: a naive port against the optimized path, side by side.

    python -m core bench speed --full --json speed.json     # a GPU: paper 144x256 + default
    python -m core bench speed --quick                      # this 2-core CPU, a few minutes
    python bench/speed.py --quick --configs paper:32x32:0.125 --batches 1,2 --steps 1   # smoke

Variants (all start from the same weights and seed, so their first steps are one experiment):
- naive:     fp32, NCHW, eager, Adam without foreach/fused kernels, cudnn.benchmark and TF32 off;
- optimized: exactly what ``Trainer`` does by default on this device (on CUDA: bf16 autocast,
             channels_last, fused Adam, cudnn.benchmark, TF32, frames resident on the GPU, no
             host sync inside the step);
- compiled:  optimized + ``TrainConfig.compile`` (torch.compile of G, D and S);
- cl_fp32 / bf16: CPU candidates, channels_last in fp32 / with bf16 autocast (AMX CPUs).

Reported per (preset, size, batch, variant): steps/s, frames/s (training windows per second:
batch x steps/s), peak memory, model FLOPs of one step (``models.training_flops``; G's unrolled
frames counted), achieved TFLOP/s and its fraction of the device's dense bf16 peak, and the ratio
to naive. Per preset and variant: rollout frames/s from 1 and from many start frames. The losses
of every variant's first steps are compared with naive's (same seed, same batches).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

if __package__ in (None, ""):  # `python bench/speed.py` from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from core.data import Clip, Letterbox, to_float
from core.device import Runtime, pick_device
from core.generate import rollout
from core.models import ModelConfig, training_flops
from core.train import TrainConfig, Trainer

# Dense (no sparsity) bf16 tensor-core peaks with fp32 accumulation, TFLOP/s, from NVIDIA's
# datasheets. Matched in order against torch.cuda.get_device_name(): specific names first.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("H20", 148.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
)

VARIANTS = {
    # precision, channels_last (None = Trainer's choice), plain Adam, cudnn.benchmark, compile
    "naive": dict(precision="fp32", channels_last=False, plain_adam=True, fast_cuda=False),
    "optimized": dict(precision="auto", channels_last=None, plain_adam=False, fast_cuda=True),
    "compiled": dict(
        precision="auto", channels_last=None, plain_adam=False, fast_cuda=True, compile=True
    ),
    "cl_fp32": dict(precision="fp32", channels_last=True, plain_adam=False, fast_cuda=True),
    "bf16": dict(precision="bf16", channels_last=True, plain_adam=False, fast_cuda=True),
}
LOSS_KEYS = ("loss_d", "loss_s", "loss_g_d", "loss_g_s", "l1")

PROFILES = {
    # configs: preset:WIDTHxHEIGHT:width_mult
    "full": dict(
        configs=["paper:256x144:1", "default:128x72:1"],
        batches=[1, 8, 32],
        warmup=5,
        steps=20,
        rollout_frames=32,
        rollout_batch=64,
        variants=["naive", "optimized", "compiled"],
    ),
    "quick": dict(
        configs=["paper:128x72:0.25", "default:128x72:1"],
        batches=[1, 4],
        warmup=1,
        steps=3,
        rollout_frames=8,
        rollout_batch=8,
        variants=["naive", "optimized", "cl_fp32", "bf16"],
    ),
}


# --- the machine --------------------------------------------------------------------------


def peak_bf16_tflops(rt: Runtime) -> float | None:
    if rt.type != "cuda":
        return None
    name = torch.cuda.get_device_name(rt.device)
    for key, peak in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None


def _rss_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_cpu_peak() -> bool:
    """Linux resets the peak RSS (VmHWM) when '5' is written to /proc/self/clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """CUDA: torch.cuda.max_memory_allocated (tensors only). CPU: the process's peak RSS
    (VmHWM, reset before each run), which includes Python and torch themselves; where the reset
    is unavailable, ru_maxrss, the peak of the whole process lifetime."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.kind = "cuda.max_memory_allocated"
        if rt.type != "cuda":
            ok = _reset_cpu_peak() and _rss_mb("VmHWM") is not None
            self.kind = "cpu peak RSS (VmHWM, reset per run)" if ok else "cpu ru_maxrss (lifetime)"

    def reset(self) -> None:
        if self.rt.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.rt.device)
        elif "VmHWM" in self.kind:
            _reset_cpu_peak()

    def peak_mb(self) -> float:
        if self.rt.type == "cuda":
            return torch.cuda.max_memory_allocated(self.rt.device) / 2**20
        if "VmHWM" in self.kind:
            return _rss_mb("VmHWM") or 0.0
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sync(rt: Runtime) -> None:
    if rt.type == "cuda":
        torch.cuda.synchronize(rt.device)


# --- building a variant -------------------------------------------------------------------


def synthetic_clip(n: int, w: int, h: int, channels: int = 3) -> Clip:
    """Smooth moving gradients (the content does not change the speed)."""
    t = torch.arange(n, dtype=torch.float32)[:, None, None, None]
    ys = torch.linspace(0, 1, h)[None, None, :, None]
    xs = torch.linspace(0, 1, w)[None, None, None, :]
    c = torch.arange(channels, dtype=torch.float32)[None, :, None, None]
    img = 0.5 + 0.5 * torch.sin(6.0 * xs + 4.0 * ys + 0.3 * t + 2.0 * c)
    frames = (img * 255).round().to(torch.uint8).contiguous()  # (N, C, H, W)
    return Clip(frames=frames, paths=[], letterbox=Letterbox(w, h, w, h))


def set_cuda_flags(fast: bool) -> None:
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = fast
        torch.backends.cuda.matmul.allow_tf32 = fast
        torch.backends.cudnn.allow_tf32 = fast


def build(variant: str, clip: Clip, mcfg: ModelConfig, batch: int, device: str) -> Trainer:
    v = VARIANTS[variant]
    tcfg = TrainConfig(
        batch_size=batch,
        device=device,
        precision=v["precision"],
        compile=v.get("compile", False),
        preview_every=0,
        checkpoint_every=0,
    )
    rt = pick_device(device, v["precision"])
    set_cuda_flags(v["fast_cuda"])  # after pick_device, which turns them on
    trainer = Trainer(clip, mcfg, tcfg, rt)
    if v["channels_last"] is not None:
        fmt = torch.channels_last if v["channels_last"] else torch.contiguous_format
        trainer.memory_format = fmt
        for m in (trainer.g, trainer.d, trainer.s, trainer.g_ema):
            if m is not None:
                m.to(memory_format=fmt)
    if v["plain_adam"]:
        t = trainer.tcfg
        kw = dict(betas=(t.beta1, t.beta2), foreach=False, fused=False)
        trainer.opt_g = torch.optim.Adam(trainer.g.parameters(), t.lr_g, **kw)
        trainer.opt_d = torch.optim.Adam(trainer.d.parameters(), t.lr_d, **kw)
        trainer.opt_s = torch.optim.Adam(trainer.s.parameters(), t.lr_d, **kw)
    return trainer


def sync_free_step(trainer: Trainer) -> str:
    """CUDA: run one step with torch.cuda.set_sync_debug_mode('error'); 'none' when nothing in
    it waited for the GPU, else the error. CPU: 'n/a'."""
    if trainer.rt.type != "cuda":
        return "n/a"
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.step()
        return "none"
    except RuntimeError as exc:
        return f"sync: {str(exc).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --- measurements -------------------------------------------------------------------------


def time_training(trainer: Trainer, warmup: int, steps: int, mem: PeakMemory) -> dict:
    rt = trainer.rt
    mem.reset()
    for _ in range(warmup):
        trainer.step()
    sync(rt)
    times = []
    t0 = time.perf_counter()
    for _ in range(steps):
        t1 = time.perf_counter()
        trainer.step()
        if rt.type != "cuda":  # CPU: per-step times, so a busy neighbour spoils one, not all
            times.append(time.perf_counter() - t1)
    sync(rt)
    dt = time.perf_counter() - t0
    # CUDA: steps queue up asynchronously, so only the total is meaningful; CPU: the median.
    per_step = sorted(times)[len(times) // 2] if times else dt / steps
    return {"seconds": dt, "steps_per_s": 1.0 / per_step, "peak_mem_mb": mem.peak_mb()}


@torch.no_grad()
def time_rollout(trainer: Trainer, n_start: int, frames: int) -> float:
    """Frames per second of ``generate.rollout`` (inference generator, eval mode) from
    ``n_start`` start points at once."""
    g, rt = trainer.inference_generator, trainer.rt
    ctx = to_float(trainer.frames[: trainer.context]).to(rt.device)  # (K, C, H, W)
    ctx = ctx[None].expand(n_start, *ctx.shape).contiguous()
    rollout(g, ctx, 2, rt)  # warm-up (cudnn autotuning, compile-free: G runs eager here)
    sync(rt)
    t0 = time.perf_counter()
    rollout(g, ctx, frames, rt)
    sync(rt)
    return n_start * frames / (time.perf_counter() - t0)


def parse_config(spec: str) -> tuple[str, int, int, float]:
    try:
        preset, size, mult = (spec.split(":") + ["1"])[:3]
        w, h = (int(x) for x in size.lower().split("x"))
        return preset, w, h, float(mult)
    except ValueError:
        msg = f"error: bad --configs entry {spec!r}; use preset:WxH[:width_mult]"
        raise SystemExit(msg) from None


def run(args) -> dict:
    prof = PROFILES[args.profile]
    configs = [parse_config(c) for c in (args.configs or prof["configs"])]
    batches = args.batches or prof["batches"]
    variants = args.variants or prof["variants"]
    warmup = prof["warmup"] if args.warmup is None else args.warmup
    steps = args.steps or prof["steps"]
    r_frames = args.rollout_frames or prof["rollout_frames"]
    r_batch = args.rollout_batch or prof["rollout_batch"]
    if args.threads:
        torch.set_num_threads(args.threads)
    rt = pick_device(args.device)
    mem = PeakMemory(rt)
    peak = peak_bf16_tflops(rt)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m core bench speed " + " ".join(args.argv),
        "device": rt.describe(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "profile": args.profile,
        "warmup": warmup,
        "steps": steps,
        "memory_kind": mem.kind,
        "rss_baseline_mb": _rss_mb("VmRSS"),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "peak_bf16_tflops": peak,
        "frames_per_s_means": "training windows (frame pairs, x unroll) per second = batch x steps/s",
        "flops_convention": "2 x multiply-adds of convs and dense layers; backward = 2 forwards",
    }
    rows, rollouts, equivalence = [], [], []
    for preset, w, h, mult in configs:
        mcfg = ModelConfig(preset=preset, width=w, height=h, width_mult=mult)
        clip = synthetic_clip(64, w, h)
        for batch in batches:
            flops = None
            results = {}
            for variant in variants:
                print(f"  {preset} {w}x{h} x{mult} batch {batch}: {variant} ...", flush=True)
                trainer = build(variant, clip, mcfg, batch, args.device)
                if flops is None:
                    flops = training_flops(mcfg, batch * trainer.unroll)
                res = time_training(trainer, warmup, steps, mem)
                res["host_syncs_in_step"] = sync_free_step(trainer)
                # at once, so a run cut short (a time limit) still leaves its numbers in the log
                print(f"    {json.dumps(res)}", flush=True)
                if batch == batches[0]:
                    for n_start in (1, r_batch):
                        fps = time_rollout(trainer, n_start, r_frames)
                        rollouts.append(
                            {"preset": preset, "width": w, "height": h, "width_mult": mult,
                             "variant": variant, "start_frames": n_start, "frames": r_frames,
                             "frames_per_s": fps}
                        )  # fmt: skip
                results[variant] = res
                del trainer
                if rt.type == "cuda":
                    torch.cuda.empty_cache()
            base = results.get("naive")
            for variant, res in results.items():
                tflops = flops * res["steps_per_s"] / 1e12
                rows.append(
                    {
                        "preset": preset, "width": w, "height": h, "width_mult": mult,
                        "batch": batch, "variant": variant,
                        "steps_per_s": res["steps_per_s"],
                        "frames_per_s": res["steps_per_s"] * batch,
                        "peak_mem_mb": res["peak_mem_mb"],
                        "flops_per_step": flops,
                        "tflops": tflops,
                        "fraction_of_bf16_peak": tflops / peak if peak else None,
                        "ratio_vs_naive": res["steps_per_s"] / base["steps_per_s"] if base else None,
                        "host_syncs_in_step": res["host_syncs_in_step"],
                    }
                )  # fmt: skip
        if "naive" in variants and args.check_steps:
            # Batch >= 2: at batch 1 the paper preset amplifies rounding differences through
            # Adam's first, sign-like steps even sooner. Judged with the weights held still
            # (frozen_history); the real steps' drift is recorded beside it.
            batch = max(2, batches[0])
            frozen = {
                v: frozen_history(v, clip, mcfg, batch, args.device, args.check_steps)
                for v in variants
            }
            hist = {
                v: loss_history(v, clip, mcfg, batch, args.device, args.check_steps)
                for v in variants
            }
            for v in variants:
                if v != "naive":
                    e = compare_losses(
                        preset, w, h, batch, v, frozen["naive"][0], frozen[v][0], args.device
                    )
                    e.update(compare_grads(frozen["naive"][1], frozen[v][1], e["precision"]))
                    e["within_tolerance"] = e["within_tolerance"] and e["grads_within_tolerance"]
                    trained = compare_losses(
                        preset, w, h, batch, v, hist["naive"], hist[v], args.device
                    )
                    e["trained_max_rel_diff"] = trained["max_rel_diff"]
                    e["trained_naive_losses"] = trained["naive_losses"]
                    e["trained_variant_losses"] = trained["variant_losses"]
                    equivalence.append(e)
    return {"meta": meta, "training": rows, "rollout": rollouts, "loss_equivalence": equivalence}


def loss_history(variant: str, clip: Clip, mcfg: ModelConfig, batch: int, device: str, n: int):
    """(n, len(LOSS_KEYS)) losses of n steps from the shared seed, with dropout off: a dropout
    mask is drawn in memory order, so channels_last (or another dtype's kernel) draws another
    mask from the same seed, which says nothing about the arithmetic."""
    mcfg = ModelConfig.from_dict({**mcfg.to_dict(), "dropout": 0.0})
    trainer = build(variant, clip, mcfg, batch, device)
    outs = [trainer.step() for _ in range(n)]
    return torch.stack([torch.stack([o[k].float() for k in LOSS_KEYS]) for o in outs]).cpu()


def frozen_history(variant: str, clip: Clip, mcfg: ModelConfig, batch: int, device: str, n: int):
    """``loss_history`` with every learning rate at 0: (losses (n, 5), {net: gradient}), where
    a net's gradient is Adam's first moment after the n steps, a fixed weighting of the n
    steps' gradients. Every step starts from the same weights, so the comparison judges the
    arithmetic of the forward and backward passes alone. With real steps the paper preset
    (purely adversarial) is chaotic: Adam's first updates are about lr x sign(gradient), so
    rounding noise in near-zero gradient components picks their direction, and at 144x256
    fp32 channels_last and NCHW on the CPU part by 4.5 % in one G update and 5.8x by step 3."""
    mcfg = ModelConfig.from_dict({**mcfg.to_dict(), "dropout": 0.0})
    trainer = build(variant, clip, mcfg, batch, device)
    opts = {"g": trainer.opt_g, "d": trainer.opt_d, "s": trainer.opt_s}
    for opt in opts.values():
        for group in opt.param_groups:
            group["lr"] = 0.0
    outs = [trainer.step() for _ in range(n)]
    losses = torch.stack([torch.stack([o[k].float() for k in LOSS_KEYS]) for o in outs]).cpu()
    grads = {}
    for net, opt in opts.items():
        parts = [opt.state[p]["exp_avg"].float().flatten() for g in opt.param_groups
                 for p in g["params"] if p in opt.state]  # fmt: skip
        grads[net] = torch.cat(parts).cpu()
    return losses, grads


def compare_grads(a: dict, b: dict, precision: str) -> dict:
    """Per net, |grad_variant - grad_naive| / |grad_naive| (the frozen steps' Adam moments).
    fp32 variants within 1e-2 (paper preset at 144x256 on the CPU: 3.4e-3 for G), bf16 ones
    within 0.5: the purely adversarial G gradient of the paper preset is the least precise
    (0.24 at 144x256, 0.19 at 16x16 on the CPU; D 0.03-0.09), a broken one is off by 1 or more."""
    tol = 1e-2 if precision == "fp32" else 0.5
    err = {k: ((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12)).item() for k in a}
    return {
        "grad_rel_error": err,
        "grad_tolerance_rel": tol,
        "grads_within_tolerance": bool(max(err.values()) <= tol),
    }


def compare_losses(preset, w, h, batch, variant, a, b, device: str = "auto") -> dict:
    """Same seed, same batches: the variants' losses over their first steps (the weights held
    still, see frozen_history, when the benchmark judges them). fp32 variants must
    agree to 1e-4 (only summation order differs); bf16 ones to 5e-2 (8-bit mantissa). "auto"
    is whatever the device resolves it to (bf16 on CUDA and on CPUs with bf16 hardware)."""
    n = min(len(a), len(b))
    diff = (a[:n] - b[:n]).abs()
    rel = diff / a[:n].abs().clamp_min(1e-3)
    fp32 = pick_device(device, VARIANTS[variant]["precision"]).amp_dtype is None
    tol = 1e-4 if fp32 else 5e-2
    return {
        "preset": preset, "width": w, "height": h, "batch": batch, "variant": variant,
        "steps": n, "tolerance_rel": tol, "precision": "fp32" if fp32 else "bf16",
        "max_abs_diff": diff.max().item(), "max_rel_diff": rel.max().item(),
        "within_tolerance": bool(rel.max().item() <= tol),
        "naive_losses": a[:n].tolist(), "variant_losses": b[:n].tolist(), "loss_keys": LOSS_KEYS,
    }  # fmt: skip


# --- output -------------------------------------------------------------------------------


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(report: dict) -> str:
    m = report["meta"]
    out = [
        f"device: {m['device']} | torch {m['torch']} | threads {m['torch_threads']} of "
        f"{m['cpu_count']} CPUs | bf16 peak {_fmt(m['peak_bf16_tflops'], '.0f')} TFLOP/s | "
        f"memory: {m['memory_kind']} | load avg {_fmt(m.get('loadavg_start', [None])[0], '.1f')}",
        "",
        f"{'preset':<8}{'size':>10}{'xw':>6}{'batch':>6} {'variant':<10}{'steps/s':>9}"
        f"{'frames/s':>10}{'peak MB':>9}{'GFLOP/step':>11}{'TFLOP/s':>9}{'%peak':>7}"
        f"{'vs naive':>9}  syncs",
    ]
    for r in report["training"]:
        frac = None if r["fraction_of_bf16_peak"] is None else 100 * r["fraction_of_bf16_peak"]
        out.append(
            f"{r['preset']:<8}{r['width']:>5}x{r['height']:<4}{r['width_mult']:>6g}{r['batch']:>6} "
            f"{r['variant']:<10}{r['steps_per_s']:>9.3f}{r['frames_per_s']:>10.2f}"
            f"{r['peak_mem_mb']:>9.0f}{r['flops_per_step'] / 1e9:>11.1f}{r['tflops']:>9.4f}"
            f"{_fmt(frac, '.1f'):>7}{_fmt(r['ratio_vs_naive'], '.2f'):>9}  "
            f"{r['host_syncs_in_step']}"
        )
    out += ["", f"{'rollout':<8}{'size':>10}{'xw':>6} {'variant':<10}{'starts':>7}{'frames/s':>10}"]
    for r in report["rollout"]:
        out.append(
            f"{r['preset']:<8}{r['width']:>5}x{r['height']:<4}{r['width_mult']:>6g} "
            f"{r['variant']:<10}{r['start_frames']:>7}{r['frames_per_s']:>10.1f}"
        )
    out += ["", "same seed and batches, weights held still, variant vs naive (first steps):"]
    for e in report["loss_equivalence"]:
        ok = "ok" if e["within_tolerance"] else "OUTSIDE"
        grads = " ".join(f"{k}={v:.1e}" for k, v in e.get("grad_rel_error", {}).items())
        out.append(
            f"  {e['preset']:<8} batch {e['batch']:<3} {e['variant']:<10} {e['steps']} steps: "
            f"max rel diff {e['max_rel_diff']:.2e} (tol {e['tolerance_rel']:g}); gradients "
            f"{grads} (tol {e.get('grad_tolerance_rel', float('nan')):g}) {ok}; real steps "
            f"drift apart by {e.get('trained_max_rel_diff', float('nan')):.1e}"
        )
        last = dict(zip(e["loss_keys"], e["naive_losses"][-1]))
        last_v = dict(zip(e["loss_keys"], e["variant_losses"][-1]))
        out.append(
            "      last step  naive: "
            + " ".join(f"{k}={v:.4f}" for k, v in last.items())
            + "\n      last step  variant: "
            + " ".join(f"{k}={v:.4f}" for k, v in last_v.items())
        )
    return "\n".join(out)


def markdown(report: dict) -> str:
    """The training and rollout tables as Markdown, for docs/PERFORMANCE.md."""
    out = [
        "| preset | size | width x | batch | variant | steps/s | frames/s | peak MB | "
        "GFLOP/step | TFLOP/s | % bf16 peak | vs naive |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["training"]:
        frac = r["fraction_of_bf16_peak"]
        out.append(
            f"| {r['preset']} | {r['width']}x{r['height']} | {r['width_mult']:g} | {r['batch']} "
            f"| {r['variant']} | {r['steps_per_s']:.3f} | {r['frames_per_s']:.2f} "
            f"| {r['peak_mem_mb']:.0f} | {r['flops_per_step'] / 1e9:.1f} | {r['tflops']:.4f} "
            f"| {_fmt(None if frac is None else 100 * frac, '.1f')} "
            f"| {_fmt(r['ratio_vs_naive'], '.2f')} |"
        )
    out += [
        "",
        "| preset | size | width x | variant | start frames | frames/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rollout"]:
        out.append(
            f"| {r['preset']} | {r['width']}x{r['height']} | {r['width_mult']:g} | {r['variant']} "
            f"| {r['start_frames']} | {r['frames_per_s']:.1f} |"
        )
    out += [
        "",
        "| preset | batch | variant | steps | max rel. loss diff vs naive (weights held) "
        "| tolerance | max rel. gradient error | tolerance | within | drift of real steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["loss_equivalence"]:
        gerr = max(e["grad_rel_error"].values()) if e.get("grad_rel_error") else None
        out.append(
            f"| {e['preset']} | {e['batch']} | {e['variant']} | {e['steps']} "
            f"| {e['max_rel_diff']:.1e} | {e['tolerance_rel']:g} | {_fmt(gerr, '.1e')} "
            f"| {_fmt(e.get('grad_tolerance_rel'), 'g')} | {'yes' if e['within_tolerance'] else 'no'}"
            f" | {_fmt(e.get('trained_max_rel_diff'), '.1e')} |"
        )
    return "\n".join(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m core bench speed",
        description="Training/rollout speed: naive port vs optimized path, side by side.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="paper 256x144 + default, batches 1/8/32")
    mode.add_argument("--quick", action="store_true", help="reduced sizes for a CPU (minutes)")
    p.add_argument("--configs", type=lambda s: s.split(","), help="preset:WxH[:width_mult],...")
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], help="e.g. 1,8,32")
    p.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        help=f"subset of {','.join(VARIANTS)} (naive is the baseline of the ratio)",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    p.add_argument("--steps", type=int, default=None, help="timed steps")
    p.add_argument("--rollout-frames", type=int, default=None, help="frames per rollout")
    p.add_argument("--rollout-batch", type=int, default=None, help="'many' start frames")
    p.add_argument(
        "--check-steps", type=int, default=3, help="steps of the loss comparison (0 = skip)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--json", default=None, help="write the report to this JSON file")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown too")
    args = p.parse_args(argv)
    args.argv = list(argv)
    if not (args.full or args.quick):
        args.full = torch.cuda.is_available()
    args.profile = "full" if args.full else "quick"
    bad = set(args.variants or []) - set(VARIANTS)
    if bad:
        p.error(f"unknown variant(s) {', '.join(sorted(bad))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    report = run(args)
    report["meta"]["wall_s"] = time.perf_counter() - t0
    if hasattr(os, "getloadavg"):  # other work on the machine skews CPU timings
        report["meta"]["loadavg_end"] = os.getloadavg()
    print(table(report))
    if args.markdown:
        print("\n" + markdown(report))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
