"""The motion gain: calibrated on the strip's own last frames (core/generate.py
``calibrate_motion_gain``), used by ``extend``, settable from the CLI and the worker."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.checkpoint import Checkpoint, save_checkpoint
from core.data import Letterbox, tensor_to_image
from core.device import pick_device
from core.generate import FullSizePredictor, calibrate_motion_gain, extend, ssim
from core.models import ModelConfig, build_models, warp

from .conftest import run_cli

SPEED = 1.2  # source pixels per frame the pan moves by; 0.3 pixels at the 64x36 training size


def _cpu():
    return pick_device("cpu", "fp32")


def _pan(n: int, speed: float = SPEED) -> torch.Tensor:
    """(n, 3, 144, 256) frames in [-1, 1] of a smooth texture panning left by ``speed`` px."""
    torch.manual_seed(0)
    base = F.interpolate(torch.rand(1, 3, 36, 64) * 2 - 1, size=(144, 256), mode="bicubic")
    base = base.clamp(-1, 1)
    shift = torch.zeros(1, 2, 144, 256)
    shift[:, 0] = speed  # frame t(x) = base(x + speed t)
    return torch.cat([warp(base, shift * t, "bicubic") for t in range(n)])


def _pan_model(fraction: float) -> tuple[torch.nn.Module, ModelConfig]:
    """A warp model that moves the last frame ``fraction`` x as far as the pan does."""
    mcfg = ModelConfig(width=64, height=36, width_mult=0.125, context=2)
    g, _, _ = build_models(mcfg)
    with torch.no_grad():
        g.head.bias.zero_()
        g.head.bias[2] = fraction * SPEED * 64 / 256  # x flow of the last frame, training px
        g.head.bias[5] = 20.0  # blend weight ~1 on the last frame; residual 0
    return g.eval(), mcfg


def test_ssim_matches_the_reference_implementation():
    from torchmetrics.functional.image import structural_similarity_index_measure as ref

    torch.manual_seed(1)
    a = F.interpolate(torch.rand(3, 3, 24, 32), size=(72, 96), mode="bicubic").clamp(0, 1)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    assert torch.allclose(ssim(a, a), torch.ones(3), atol=1e-5)
    ours = ssim(a, b)
    theirs = torch.stack([ref(a[i : i + 1], b[i : i + 1], data_range=1.0) for i in range(3)])
    assert float(ours.mean()) < 0.95
    assert torch.allclose(ours, theirs, atol=0.01), (ours, theirs)


def test_calibration_finds_the_gain_of_a_model_that_moves_too_little():
    """A model that pans at 1/1.3 of the strip's speed gets 1.3; one that pans at its speed
    keeps 1.0. The frames are 256x144, calibrated at 128x72 (4x the training size)."""
    frames = _pan(10)
    slow, mcfg = _pan_model(1 / 1.3)
    gain, scores = calibrate_motion_gain(slow, mcfg, frames, _cpu())
    assert gain == 1.3, scores
    assert scores[1.3] > scores[1.0] + 0.01, scores
    exact, _ = _pan_model(1.0)
    gain, scores = calibrate_motion_gain(exact, mcfg, frames, _cpu())
    assert gain == 1.0, scores
    # too few frames for a context and 3 continued ones: the model's own motion
    assert calibrate_motion_gain(slow, mcfg, frames[:4], _cpu()) == (1.0, {})
    # a sprite under the SSIM window's 11 pixels: nothing to measure on, not an error
    tiny = F.interpolate(frames, size=(8, 10), mode="area")
    assert calibrate_motion_gain(slow, mcfg, tiny, _cpu()) == (1.0, {})
    residual = ModelConfig(width=64, height=36, width_mult=0.125, head="residual")
    assert calibrate_motion_gain(build_models(residual)[0], residual, frames, _cpu()) == (1.0, {})


def test_the_gain_multiplies_the_flows():
    frames = _pan(4)
    slow, mcfg = _pan_model(0.5)
    box = Letterbox(256, 144, 64, 36)
    doubled = FullSizePredictor(slow, mcfg, box, _cpu(), gain=2.0).rollout(frames[:2], 2)
    exact, _ = _pan_model(1.0)
    ref = FullSizePredictor(exact, mcfg, box, _cpu()).rollout(frames[:2], 2)
    assert torch.allclose(doubled, ref, atol=1e-4)


def _write(frames: torch.Tensor, folder) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        path = folder / f"frame_{i:04d}.png"
        tensor_to_image(f).save(path)
        paths.append(str(path))
    return paths


def _save(g, mcfg, path) -> str:
    weights = {"g": {k: v.clone() for k, v in g.state_dict().items()}}
    save_checkpoint(str(path), Checkpoint(mcfg.to_dict(), {}, 1, weights))
    return str(path)


def _read(path) -> torch.Tensor:
    a = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
    return a.permute(2, 0, 1).float() / 127.5 - 1.0


def test_extend_calibrates_the_gain_and_continues_the_motion(tmp_path):
    """``extend`` calibrates on the frames up to the start: the slow model's frames then follow
    the pan better than its own motion does; a given gain is used as it is, a bad one refused."""
    real = _pan(14)
    paths = _write(real[:10], tmp_path / "strip")
    slow, mcfg = _pan_model(1 / 1.3)
    ckpt = _save(slow, mcfg, tmp_path / "slow.safetensors")
    said = []

    def on_gain(gain, calibrated):
        said.append((gain, calibrated))

    auto = extend(ckpt, paths, 4, str(tmp_path / "auto"), device="cpu", on_gain=on_gain)
    assert said == [(1.3, True)]
    own = extend(
        ckpt, paths, 4, str(tmp_path / "own"), device="cpu", motion_gain=1.0, on_gain=on_gain
    )
    inner = (slice(None), slice(8, -8), slice(8, -40))  # away from the borders

    def err(files):
        return sum(
            float((_read(f) - real[10 + i])[inner].abs().mean()) for i, f in enumerate(files)
        )

    # 0.50x in fp32 (an AVX2 CPU), under 0.5x with bf16 autocast (an AMX Xeon)
    assert err(auto) < 0.6 * err(own), (err(auto), err(own))
    assert said[1:] == [(1.0, False)]  # given, not calibrated
    # from the strip's 4th frame there are too few before it: the model's motion, and said so
    extend(ckpt, paths[:4], 1, str(tmp_path / "short"), device="cpu", on_gain=on_gain)
    assert said[2:] == [(1.0, False)]
    with pytest.raises(ValueError, match="between 0.1 and 4"):
        extend(ckpt, paths, 1, str(tmp_path / "bad"), device="cpu", motion_gain=0.0)


def test_cli_and_worker_report_the_gain(tmp_path):
    paths = _write(_pan(10), tmp_path / "strip")
    slow, mcfg = _pan_model(1 / 1.3)
    ckpt = _save(slow, mcfg, tmp_path / "slow.safetensors")
    r = run_cli("extend", "--checkpoint", ckpt, "--from", paths[-1], "--count", "1",
                "--out", tmp_path / "cli", "--device", "cpu")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "motion gain 1.3 (calibrated on the frames up to frame_0009.png)" in r.stdout
    r = run_cli("extend", "--checkpoint", ckpt, "--from", paths[-1], "--count", "1",
                "--out", tmp_path / "cli2", "--device", "cpu", "--motion-gain", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "motion gain" not in r.stdout
    r = run_cli("extend", "--checkpoint", ckpt, "--from", paths[3], "--count", "1",
                "--out", tmp_path / "cli3", "--device", "cpu")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "motion gain 1 (too few frames up to frame_0003.png to calibrate it)" in r.stdout
    for setting, expect in ((None, 1.3), (1.5, 1.5)):
        job = tmp_path / f"job_{setting}.json"
        out = tmp_path / f"worker_{setting}"
        extend_cfg = {"count": 1, "out_dir": str(out), "device": "cpu", "motion_gain": setting}
        job.write_text(json.dumps({"kind": "extend", "frames": paths, "checkpoint": ckpt,
                                   "extend": extend_cfg}))  # fmt: skip
        r = run_cli("worker", "--job", job)
        assert r.returncode == 0, r.stdout + r.stderr
        done = [json.loads(line) for line in r.stdout.splitlines() if '"done"' in line][-1]
        assert done["motion_gain"] == expect, done
        assert done["motion_gain_calibrated"] is (setting is None), done
    job.write_text(json.dumps({"kind": "extend", "frames": paths, "checkpoint": ckpt,
                               "extend": {"out_dir": str(out) + "x", "motion_gain": "fast"}}))  # fmt: skip
    r = run_cli("worker", "--job", job)
    assert r.returncode != 0
    assert "motion_gain must be a number or null" in r.stdout
