"""bench/speed.py at toy sizes: the JSON report has every field, and the ratios add up."""

from __future__ import annotations

import json

import pytest
import torch

from bench import speed

ARGS = [
    "--quick", "--configs", "paper:16x16:0.125,default:16x16:0.125", "--batches", "1,2",
    "--variants", "naive,optimized", "--warmup", "0", "--steps", "1", "--rollout-frames", "1",
    "--rollout-batch", "2", "--check-steps", "3", "--device", "cpu", "--threads", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "speed.json"
    threads = torch.get_num_threads()
    try:
        assert speed.main([*ARGS, "--json", str(path)]) == 0
    finally:
        torch.set_num_threads(threads)
    return json.loads(path.read_text())


def test_meta(report):
    m = report["meta"]
    assert m["device"] == "cpu" and m["torch_threads"] == 1 and m["peak_bf16_tflops"] is None
    for key in ("date", "command", "torch", "cpu_count", "memory_kind", "warmup", "steps"):
        assert key in m


def test_training_rows(report):
    rows = report["training"]
    assert {(r["preset"], r["batch"], r["variant"]) for r in rows} == {
        (p, b, v) for p in ("paper", "default") for b in (1, 2) for v in ("naive", "optimized")
    }
    for r in rows:
        assert r["steps_per_s"] > 0 and r["peak_mem_mb"] > 0 and r["flops_per_step"] > 0
        assert r["frames_per_s"] == pytest.approx(r["steps_per_s"] * r["batch"])
        assert r["tflops"] == pytest.approx(r["flops_per_step"] * r["steps_per_s"] / 1e12)
        assert r["fraction_of_bf16_peak"] is None  # no peak on a CPU
        naive = next(
            x for x in rows
            if (x["preset"], x["batch"], x["variant"]) == (r["preset"], r["batch"], "naive")
        )  # fmt: skip
        assert r["ratio_vs_naive"] == pytest.approx(r["steps_per_s"] / naive["steps_per_s"])
    # FLOPs grow with the batch: one step at batch 2 is twice batch 1's work.
    f = {(r["preset"], r["batch"]): r["flops_per_step"] for r in rows}
    assert f[("paper", 2)] == pytest.approx(2 * f[("paper", 1)])


def test_rollout_rows(report):
    starts = {(r["preset"], r["variant"], r["start_frames"]) for r in report["rollout"]}
    assert ("paper", "optimized", 1) in starts and ("default", "naive", 2) in starts
    assert all(r["frames_per_s"] > 0 for r in report["rollout"])


def test_optimized_trains_like_naive(report):
    """The default CPU path computes what the naive port computes: with the weights held still
    (frozen_history), the same losses to 1e-4 where it is fp32, to 5e-2 where it is bf16
    autocast (CPUs with bf16 hardware, like CI's), and the same gradients (1e-2, bf16 0.5).
    The real steps' drift is recorded, not judged: the paper preset is chaotic."""
    from core.device import pick_device

    bf16 = pick_device("cpu").amp_dtype is not None
    eq = report["loss_equivalence"]
    assert {e["preset"] for e in eq} == {"paper", "default"}
    for e in eq:
        assert e["precision"] == ("bf16" if bf16 else "fp32"), e
        assert e["tolerance_rel"] == (5e-2 if bf16 else 1e-4), e
        assert e["within_tolerance"] and e["max_rel_diff"] <= e["tolerance_rel"], e
        assert set(e["grad_rel_error"]) == {"g", "d", "s"}
        assert max(e["grad_rel_error"].values()) <= e["grad_tolerance_rel"], e
        assert e["steps"] == 3 and len(e["trained_variant_losses"]) == 3


def test_frozen_check_sees_other_arithmetic():
    """The frozen check can fail: the same variant with the generator's weights moved (other
    arithmetic) is far outside both tolerances, while channels_last
    (the same arithmetic in another order) is inside the fp32 ones, on the paper preset."""
    from core.models import ModelConfig

    mcfg = ModelConfig(preset="paper", width=16, height=16, width_mult=0.125)
    clip = speed.synthetic_clip(8, 16, 16)
    la, ga = speed.frozen_history("naive", clip, mcfg, 2, "cpu", 2)
    lb, gb = speed.frozen_history("cl_fp32", clip, mcfg, 2, "cpu", 2)
    assert ((la - lb).abs() / la.abs().clamp_min(1e-3)).max().item() <= 1e-4
    assert speed.compare_grads(ga, gb, "fp32")["grads_within_tolerance"]
    orig = speed.build

    def other_g(*a, **k):  # the generator's weights moved by noise of their own size
        t = orig(*a, **k)
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            for p in t.g.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * p.std().nan_to_num(0.1))
        return t

    speed.build = other_g
    try:
        lc, gc = speed.frozen_history("naive", clip, mcfg, 2, "cpu", 2)
    finally:
        speed.build = orig
    assert ((la - lc).abs() / la.abs().clamp_min(1e-3)).max().item() > 5e-2
    err = speed.compare_grads(ga, gc, "bf16")
    assert not err["grads_within_tolerance"] and err["grad_rel_error"]["g"] > 0.5, err


def test_peak_table():
    class Rt:
        type = "cpu"

    assert speed.peak_bf16_tflops(Rt()) is None
    names = [k for k, _ in speed.PEAK_BF16_TFLOPS]
    assert names.index("H100 PCIe") < names.index("H100")  # specific names match first


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_channels_last_trains_like_contiguous_on_cpu(preset):
    """The CPU candidate cl_fp32 changes only the memory layout: same losses to 1e-4."""
    from core.models import ModelConfig

    mcfg = ModelConfig(preset=preset, width=16, height=16, width_mult=0.125)
    clip = speed.synthetic_clip(8, 16, 16)
    a = speed.loss_history("naive", clip, mcfg, 2, "cpu", 3)
    b = speed.loss_history("cl_fp32", clip, mcfg, 2, "cpu", 3)
    assert ((a - b).abs() / a.abs().clamp_min(1e-3)).max().item() <= 1e-4


def test_bf16_trains_like_fp32_on_the_default_preset():
    """bf16 autocast (the default on CUDA and on CPUs with bf16 hardware) keeps the default
    preset's training on the fp32 path over several steps: losses within 5e-2."""
    from core.models import ModelConfig

    mcfg = ModelConfig(preset="default", width=16, height=16, width_mult=0.125)
    clip = speed.synthetic_clip(8, 16, 16)
    a = speed.loss_history("cl_fp32", clip, mcfg, 2, "cpu", 4)
    b = speed.loss_history("bf16", clip, mcfg, 2, "cpu", 4)
    assert ((a - b).abs() / a.abs().clamp_min(1e-3)).max().item() <= 5e-2


def test_interleaved_ab(tmp_path):
    """bench/ab.py: both variants timed in turn; the speed-up is the median per-pair ratio."""
    from bench import ab

    out = tmp_path / "ab.json"
    threads = torch.get_num_threads()
    try:
        args = ["--configs", "default:16x16:0.125", "--steps", "3", "--warmup", "1",
                "--device", "cpu", "--json", str(out)]  # fmt: skip
        assert ab.main(args) == 0
    finally:
        torch.set_num_threads(threads)
    (r,) = json.loads(out.read_text())["results"]
    assert (r["a"], r["b"], r["steps"]) == ("naive", "cl_fp32", 3)
    assert all(t > 0 for t in r["median_s"].values())
    assert 0 < r["speedup_min"] <= r["speedup_b_over_a"] <= r["speedup_max"]
    with pytest.raises(SystemExit):
        ab.main(["--variants", "naive,warp_drive"])
