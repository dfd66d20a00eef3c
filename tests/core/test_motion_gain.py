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
from core.generate import (
    FullSizePredictor,
    Steadiness,
    calibrate_motion_gain,
    calibration_size,
    extend,
    reference_picks,
    scaled,
    ssim,
)
from core.models import ModelConfig, build_models, warp
from core.procedural import make_rgba_sprite

from .conftest import run_cli

SPEED = 1.2  # source pixels per frame the pan moves by; 0.3 pixels at the 64x36 training size


def _cpu():
    return pick_device("cpu", "fp32")


def _pan(n: int, speed: float = SPEED, band: int = 0) -> torch.Tensor:
    """(n, 3, 144, 256) frames in [-1, 1] of a smooth texture panning left by ``speed`` px;
    ``band`` > 0: a dark texture whose rightmost ``band`` columns are white, where the new
    frames come from (continued, the edge's white spreads into the picture)."""
    torch.manual_seed(0)
    base = F.interpolate(torch.rand(1, 3, 36, 64) * 2 - 1, size=(144, 256), mode="bicubic")
    base = base.clamp(-1, 1)
    if band:
        base = base * 0.3 - 0.5
        base[..., -band:] = 1.0
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


def test_a_gain_must_keep_the_continuation_steady():
    """Six frames favour 1.3 for the slow model. Continued, the white edge it pans towards
    spreads, the sooner the faster: at 1.3 the colours drift past the strip's by frame 30 or
    so (at the 128x72 calibration size), so for 31 frames a slower gain is used, the best one
    that stays steady. 10 frames keep 1.3; 1.0, the model as trained, is always kept; gains
    faster than one that drifted are never tried."""
    frames = _pan(10, band=16)
    slow, mcfg = _pan_model(1 / 1.3)
    best, scores = calibrate_motion_gain(slow, mcfg, frames, _cpu())
    assert best == 1.3, scores
    held = {}
    gain, same = calibrate_motion_gain(slow, mcfg, frames, _cpu(), ahead=31, held=held)
    assert same == scores and 1.0 < gain < 1.3, (gain, held)
    assert "drift" in held[1.3] and set(held) == {g for g in scores if gain < g <= 1.3}, held
    small = scaled(frames, calibration_size(144, 256, mcfg))  # where calibration runs
    judge, box = Steadiness(small), Letterbox(128, 72, 64, 36)

    def why(g):
        return judge.why(FullSizePredictor(slow, mcfg, box, _cpu(), gain=g).rollout(small[-2:], 31))

    assert why(gain) is None and "drift" in why(1.3)
    assert all(scores[g] < scores[gain] for g in scores if g < gain)  # the best steady one
    assert calibrate_motion_gain(slow, mcfg, frames, _cpu(), ahead=10)[0] == 1.3
    # the strip's frames to compare with are read only when a gain above 1 is checked
    reads = []

    def reference():
        reads.append(1)
        return frames

    assert (
        calibrate_motion_gain(slow, mcfg, frames, _cpu(), ahead=31, reference=reference)[0] == gain
    )
    exact, _ = _pan_model(1.0)
    assert (
        calibrate_motion_gain(exact, mcfg, frames, _cpu(), ahead=31, reference=reference)[0] == 1.0
    )
    assert reads == [1]
    held = {}
    assert calibrate_motion_gain(slow, mcfg, frames, _cpu(), ahead=100, held=held)[0] == 1.0
    assert set(held) == {1.1, 1.2, 1.3}, held  # 1.4-1.6: faster than 1.3, not tried


def test_steadiness_names_what_goes_wrong():
    ref = _pan(6)
    judge = Steadiness(ref)
    assert judge.why(ref) is None
    assert "drift" in judge.why((ref + 0.4).clamp(-1, 1))
    flat = ref.mean((2, 3), keepdim=True).expand_as(ref)
    assert judge.why(flat) == "it fades to a flat colour"
    torch.manual_seed(2)
    noise = (ref + 0.6 * torch.randn_like(ref)).clamp(-1, 1)
    noise = noise - noise.mean((2, 3), keepdim=True) + ref.mean((2, 3), keepdim=True)
    assert judge.why(noise) == "its detail turns to noise"
    assert judge.why(torch.full_like(ref, float("nan"))) == "it is not finite"
    reasons = []
    assert judge.fails(flat[0], reasons) and reasons == ["it fades to a flat colour"]
    assert not judge.fails(ref[0], reasons) and len(reasons) == 1
    # the frames a check compares with: all of a short strip, else 24 spread over its end
    assert reference_picks(5) == [0, 1, 2, 3, 4]
    picks = reference_picks(200)  # extend reads at most 96
    assert len(picks) == 24 and picks[0] == 0 and picks[-1] == 95


def _sprite_rgba(n: int, under: float) -> torch.Tensor:
    """(n, 4, 48, 64) in [-1, 1]: core.procedural's circling sprite, its transparent pixels'
    hidden colour set to ``under``."""
    frames = torch.from_numpy(make_rgba_sprite(n, 64, 48)).permute(0, 3, 1, 2).float()
    frames = frames / 127.5 - 1.0
    hidden = frames[:, 3:] == -1.0
    return torch.cat([torch.where(hidden, under, frames[:, :3]), frames[:, 3:]], 1)


def test_steadiness_judges_an_rgba_strip_as_it_is_seen():
    """What lies under transparent pixels is not seen: another colour there is no drift; the
    background turning opaque, or the sprite vanishing, is still caught."""
    ref = _sprite_rgba(12, under=-1.0)  # black under the transparency
    judge = Steadiness(ref)
    assert judge.why(ref) is None
    assert judge.why(_sprite_rgba(12, under=1.0)) is None  # white under it: the same picture
    filled = _sprite_rgba(12, under=1.0)
    filled[:, 3] = 1.0  # the transparency fills in: a white background is seen
    assert "drift" in judge.why(filled)
    gone = _sprite_rgba(12, under=1.0)
    gone[:, 3] = -1.0  # fully transparent: nothing left to see, whatever the colours say
    assert judge.why(gone) == "it fades to a flat colour"


def test_the_gain_multiplies_the_flows():
    frames = _pan(4)
    slow, mcfg = _pan_model(0.5)
    box = Letterbox(256, 144, 64, 36)
    doubled = FullSizePredictor(slow, mcfg, box, _cpu(), gain=2.0).rollout(frames[:2], 2)
    exact, _ = _pan_model(1.0)
    ref = FullSizePredictor(exact, mcfg, box, _cpu()).rollout(frames[:2], 2)
    assert torch.allclose(doubled, ref, atol=1e-4)
    last = FullSizePredictor(exact, mcfg, box, _cpu()).rollout(frames[:2], 2, keep=False)
    assert last.shape == (1, *ref.shape[1:]) and torch.allclose(last[0], ref[-1], atol=1e-6)


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


def test_extend_keeps_the_gain_steady_for_the_frames_asked_for(tmp_path):
    """The strip whose white edge spreads when panned on: 4 new frames take the best gain,
    31 a slower one whose continuation stays within the strip's colours."""
    paths = _write(_pan(10, band=16), tmp_path / "strip")
    slow, mcfg = _pan_model(1 / 1.3)
    ckpt = _save(slow, mcfg, tmp_path / "slow.safetensors")
    said = []
    extend(ckpt, paths, 4, str(tmp_path / "short"), device="cpu",
           on_gain=lambda g, c: said.append(g))  # fmt: skip
    long = extend(ckpt, paths, 31, str(tmp_path / "long"), device="cpu",
                  on_gain=lambda g, c: said.append(g))  # fmt: skip
    assert said[0] == 1.3 and 1.0 < said[1] < 1.3, said
    frames = torch.stack([_read(p) for p in long])
    reference = torch.stack([_read(p) for p in paths])
    assert Steadiness(reference).why(frames) is None


def test_a_cancel_stops_the_calibration_at_once(tmp_path, monkeypatch):
    """Cancel is asked before each gain and after each frame of a steadiness check (a check
    runs up to 100 frames: seconds on a CPU): the calibration ends within a frame of it, and
    ``extend`` writes nothing and makes no folder."""
    frames = _pan(10, band=16)
    slow, mcfg = _pan_model(1 / 1.3)
    steps = []
    real_step = FullSizePredictor.step

    def counted(self, ctx):
        steps.append(self.gain)
        return real_step(self, ctx)

    monkeypatch.setattr(FullSizePredictor, "step", counted)
    # uncancelled: 7 gains x 6 frames, then the steadiness checks of 1.3 and the slower ones
    full = calibrate_motion_gain(slow, mcfg, frames, _cpu(), ahead=31)
    uncancelled = len(steps)
    assert uncancelled > 7 * 6 + 31, uncancelled
    steps.clear()
    at_once = calibrate_motion_gain(slow, mcfg, frames, _cpu(), ahead=31, should_stop=lambda: True)
    assert at_once == (1.0, {}) and steps == []

    def stop_in_check():  # cancelled 3 frames into the first steadiness check
        return len(steps) >= 7 * 6 + 3

    gain, scores = calibrate_motion_gain(
        slow, mcfg, frames, _cpu(), ahead=31, should_stop=stop_in_check
    )
    assert set(scores) == set(full[1]) and gain == 1.0  # judged, but not kept: cancelled
    assert len(steps) == 7 * 6 + 3, steps
    assert steps[-1] == 1.3  # the best gain's check, stopped after its 3rd frame
    paths = _write(frames, tmp_path / "strip")
    ckpt = _save(slow, mcfg, tmp_path / "slow.safetensors")
    steps.clear()
    out = tmp_path / "new" / "frames"
    assert extend(ckpt, paths, 31, str(out), device="cpu", should_stop=lambda: True) == []
    assert steps == [] and not out.exists()


def test_a_cancel_stops_reading_the_strip(tmp_path, monkeypatch):
    """Before generating, extend reads up to 96 frames to look for a loop and the frames to
    calibrate on, at the source's size (seconds for a 1080p strip): Cancel is asked before
    each file, and extend then writes nothing and makes no folder."""
    import core.data

    paths = _write(_pan(10, band=16), tmp_path / "strip")
    slow, mcfg = _pan_model(1 / 1.3)
    ckpt = _save(slow, mcfg, tmp_path / "slow.safetensors")
    reads, steps = [], []
    real_read, real_step = core.data.read_frame, FullSizePredictor.step
    monkeypatch.setattr(core.data, "read_frame", lambda *a: reads.append(1) or real_read(*a))
    monkeypatch.setattr(FullSizePredictor, "step", lambda s, c: steps.append(1) or real_step(s, c))
    out = tmp_path / "new"
    # uncancelled: the 10 frames for the loop, then the frames to calibrate on, and so on
    assert len(extend(ckpt, paths, 2, str(out / "all"), device="cpu")) == 2
    assert len(reads) > 10 + 4 and steps, (len(reads), len(steps))
    for after in (3, 12):  # cancelled within the loop's history, then within the calibration's
        reads.clear(), steps.clear()
        got = extend(ckpt, paths, 2, str(out / str(after)), device="cpu",
                     should_stop=lambda n=after: len(reads) >= n)  # fmt: skip
        assert got == [] and len(reads) == after and steps == []
        assert not (out / str(after)).exists()


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
