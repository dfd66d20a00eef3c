"""Smoke test of the quality benchmark (bench/quality.py): two clips, tiny models, two steps.

It checks the machinery and the metrics' sanity, not the models' quality (docs/QUALITY.md).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torchmetrics  # noqa: F401,E402  (a dev dependency: a missing one must fail, not skip)

from bench import quality  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    argv = ["--profile", "smoke", "--clips", "static,scrolling_background", "--steps", "2",
            "--device", "cpu", "--threads", "1", "--out", str(out),
            "--sheets", str(out / "sheets")]  # fmt: skip
    threads = torch.get_num_threads()
    try:  # one thread: tiny models gain nothing from more, and CI machines are shared
        assert quality.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    with open(out / "results.json") as f:
        return json.load(f), out


def test_table_is_produced(run, capsys):
    doc, out = run
    assert set(doc["results"]) == {"static", "scrolling_background"}
    for res in doc["results"].values():
        assert set(res) == set(quality.METHODS)
        for r in res.values():
            assert set(r["rollout"]) == {"1", "5", "10", "20"}
            assert r["stability"]["frames"] == 100
    table = quality.markdown_table(doc["results"], quality.METHODS)
    assert "| **mean** | default |" in table and "| static | copy_last |" in table
    assert (out / "sheets" / "static.png").is_file()


def test_copy_last_is_perfect_on_the_static_clip(run):
    r = run[0]["results"]["static"]["copy_last"]
    assert r["one_step"]["ssim"] == pytest.approx(1.0)
    assert r["one_step"]["psnr"] == quality.PSNR_CAP
    for k in ("1", "5", "10", "20"):
        assert r["rollout"][k]["ssim"] == pytest.approx(1.0)
        assert r["rollout"][k]["psnr"] == quality.PSNR_CAP
    assert r["motion"]["ratio"] is None  # the real clip does not move
    assert r["stability"]["stable"]


def test_linear_extrapolation_beats_copy_last_at_constant_velocity(run):
    res = run[0]["results"]["scrolling_background"]
    lin, copy = res["linear"], res["copy_last"]
    assert lin["one_step"]["psnr"] > copy["one_step"]["psnr"]
    assert lin["one_step"]["ssim"] > copy["one_step"]["ssim"]
    assert lin["rollout"]["1"]["ssim"] > copy["rollout"]["1"]["ssim"]


def test_copy_last_has_no_motion(run):
    res = run[0]["results"]["scrolling_background"]
    assert res["copy_last"]["motion"]["ratio"] == 0.0
    assert 0.5 < res["linear"]["motion"]["ratio"] < 1.5


def test_learned_methods_are_finite(run):
    for res in run[0]["results"].values():
        for m in ("paper", "default"):
            assert res[m]["stability"]["finite"]
            assert res[m]["train"]["steps"] == 2


@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_no_held_out_frame_repeats_a_training_frame(profile):
    """A periodic clip whose period divides the training part would let a model score by
    memorising: every held-out frame must differ from every training frame (the static clip
    excepted: not moving is what it tests)."""
    import numpy as np

    from core.procedural import make_clip

    prof = quality.PROFILES[profile]
    n_train = int(round(prof.frames * quality.TRAIN_FRACTION))
    for name in quality.SUITE:
        if name == "static":
            continue
        for seed in (0, 1, 2):
            a = make_clip(name, prof.frames, prof.width, prof.height, seed=seed)
            train = a[:n_train].reshape(n_train, -1)
            for i in range(n_train, prof.frames):
                same = (train == a[i].reshape(1, -1)).all(1)
                assert not same.any(), (name, seed, i, int(np.flatnonzero(same)[0]))


def test_real_clips_save_rescore_and_crops(tmp_path):
    """--real on a folder of two clips: trains, keeps the models, judges them again with
    --rescore (same numbers: the model, not a new training), with --resample, --no-palette,
    --no-mip and --no-loop, and writes the 100 % crop sheet around the part of the frame that moves.
    The second clip loops: `default` continues its cycle as extend does, `default_noloop` is
    the model."""
    from core.procedural import make_clip, write_frames

    from .core.test_loops import _cycle

    write_frames(make_clip("scrolling_background", 32, 96, 48), str(tmp_path / "clips" / "scroll"))
    write_frames(_cycle(7, 30, 48, 64), str(tmp_path / "clips" / "cycle"))
    common = ["--real", "--clips", str(tmp_path / "clips"), "--seeds", "0", "--steps", "3",
              "--methods", "copy_last,default", "--device", "cpu", "--threads", "1"]  # fmt: skip
    models = tmp_path / "models"
    assert quality.main(common + ["--out", str(tmp_path / "a"), "--save-models", str(models)]) == 0
    assert (models / "scroll_default_s0.safetensors").exists()
    assert quality.main(common + ["--out", str(tmp_path / "b"), "--rescore", str(models),
                                  "--resample", "--no-palette", "--no-loop", "--no-mip", "--sheets",
                                  str(tmp_path / "s")]) == 0  # fmt: skip
    a = json.loads((tmp_path / "a" / "real_results.json").read_text())["results"]["scroll"]
    b = json.loads((tmp_path / "b" / "real_results.json").read_text())["results"]["scroll"]
    assert b["default"]["0"]["ssim_mean"] == pytest.approx(a["default"]["0"]["ssim_mean"], abs=1e-6)
    assert "default_resample" in b and b["default"]["0"]["train"]["steps"] == 3
    assert "default_nopalette" in b  # the ablation row of keeping pixel art on its palette
    assert "default_nomip" in b and "loop" not in b["default_nomip"]["0"]
    assert (tmp_path / "s" / "scroll_crops.png").exists()
    assert "default_noloop" not in b  # the scroll has no loop: no row for it
    cyc = json.loads((tmp_path / "b" / "real_results.json").read_text())["results"]["cycle"]
    assert cyc["default"]["0"]["loop"] == 7 and cyc["default"]["0"]["ssim_mean"] > 0.999, cyc
    assert cyc["default"]["0"]["stability"]["stable"] is True
    assert "loop" not in cyc["default_noloop"]["0"]
    assert cyc["default_noloop"]["0"]["ssim_mean"] < 0.99  # 3 steps of training: not the cycle
    # --merge: one report from both runs; the later file adds its methods to the clip
    merged = tmp_path / "m"
    assert quality.main(["--real", "--out", str(merged), "--merge",
                         f"{tmp_path / 'a' / 'real_results.json'},"
                         f"{tmp_path / 'b' / 'real_results.json'}"]) == 0  # fmt: skip
    m = json.loads((merged / "real_results.json").read_text())
    assert set(m["results"]["scroll"]) == {"copy_last", "default", "default_resample",
                                           "default_nopalette", "default_nomip"}  # fmt: skip
    assert m["scorecard"]["default"]["scroll"]["beats_copy_last"] == (
        a["default"]["0"]["ssim_mean"] > a["copy_last"]["-"]["ssim_mean"]
    )


def test_crop_box_finds_the_moving_detail():
    real = torch.full((3, 3, 120, 200), -1.0)
    last = real[0].clone()
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(3, 30, 30, generator=g) * 2 - 1
    for k in range(3):  # a textured square moving right in the lower right
        real[k, :, 80:110, 140 + 5 * k : 170 + 5 * k] = tex
    top, left, side = quality.crop_box(real, last, 48)
    assert side == 48
    assert top < 110 and top + side > 80 and left < 180 and left + side > 140, (top, left)
    assert not (top < 40 and left < 100)  # not the empty upper left


def test_stability_allows_a_clips_own_colour_changes_and_catches_drift_and_fading():
    """The 100-frame bounds of bench/real_clips.py: a continuation whose mean colour stays
    within the range the real frames span passes even far from the clip's mean colour (a
    scrolling clip changes colour itself); one that leaves that range by more than
    DRIFT_BOUND, or fades to grey, fails."""
    from bench import real_clips as rc

    gen = torch.Generator().manual_seed(0)
    tex = torch.rand(3, 24, 48, generator=gen) - 0.5  # texture in [-0.5, 0.5]
    ramp = torch.linspace(-0.4, 0.4, 40)  # the clip brightens by 0.4 in [0, 1] units
    clip = torch.stack([tex.roll(i, -1) + ramp[i] for i in range(40)]).clamp(-1.0, 1.0)
    roll = torch.stack([clip[30 + i % 10] for i in range(100)])  # stays at the bright end
    ok = rc.stability(roll, clip)
    assert ok["stable"], ok
    assert ok["color_drift_max"] > rc.DRIFT_BOUND  # far from the clip's mean colour, yet real
    assert ok["color_outside_range_max"] == pytest.approx(0.0, abs=1e-6)
    drifted = rc.stability((roll + 0.3).clamp(-1.0, 1.0), clip)  # 0.15 past the brightest
    assert not drifted["stable"] and drifted["color_outside_range_max"] > rc.DRIFT_BOUND
    faded = rc.stability(roll * 0.1 + ramp[35], clip)
    assert not faded["stable"] and faded["std_ratio_min"] < rc.STD_FLOOR


def test_stability_judges_rgba_as_it_is_seen():
    """A sprite on a transparent background: the colour under the transparent pixels changing
    is neither drift nor motion; the sprite fading out is still a fade."""
    from bench import real_clips as rc
    from core.procedural import make_rgba_sprite

    frames = torch.from_numpy(make_rgba_sprite(100, 64, 48)).permute(0, 3, 1, 2).float()
    frames = frames / 127.5 - 1.0  # circling; black under the transparency
    clip = frames[:40]
    # the sprite circling on; under it a colour that flickers between black and white
    flicker = torch.tensor([1.0 if i % 2 else -1.0 for i in range(100)]).view(100, 1, 1, 1)
    roll = frames.clone()
    roll[:, :3] = torch.where(frames[:, 3:] == -1.0, flicker, frames[:, :3])
    ok = rc.stability(roll, clip)
    assert ok["stable"], ok
    # within the range the clip's own colours span (circling at a period of 29.7 frames, the
    # later frames land between the first 40's by rounding only)
    assert ok["color_outside_range_max"] < 1e-3, ok
    faded = roll.clone()
    faded[:, 3] = -1.0 + 0.05 * (faded[:, 3] + 1.0)  # alpha down to 2.5 %
    out = rc.stability(faded, clip)
    assert not out["stable"] and out["std_ratio_min"] < rc.STD_FLOOR, out
