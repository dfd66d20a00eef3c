"""bench/learning_curve.py: the curve of 1-step SSIM against steps, and its chart."""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from bench import learning_curve  # noqa: E402


def test_eval_steps_are_log_spaced():
    assert learning_curve.eval_steps(100) == [0, 10, 15, 20, 30, 50, 70, 100]
    assert learning_curve.eval_steps(5) == [0]


def test_curve_of_a_tiny_paper_model_and_its_chart(tmp_path):
    from core.procedural import make_clip, write_frames

    write_frames(make_clip("scrolling_background", 18, 48, 32), str(tmp_path / "clip"))
    out, chart = tmp_path / "c.json", tmp_path / "c.svg"
    argv = ["--clip", str(tmp_path / "clip"), "--preset", "paper", "--width", "32", "--height",
            "24", "--width-mult", "0.125", "--steps", "12", "--device", "cpu", "--out", str(out),
            "--svg", str(chart)]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert learning_curve.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    doc = json.loads(out.read_text())
    assert [p["step"] for p in doc["points"]] == [0, 10, 12]  # the marks, then the last step
    assert doc["train_config"]["guard"] == "off" and doc["train_config"]["l1_weight"] == 0.0
    for p in doc["points"]:
        assert 0.0 <= p["copy_last_heldout"] <= 1.0 and -1.0 <= p["ssim_heldout"] <= 1.0
        assert -1.0 <= p["ssim_heldout_batch_stats"] <= 1.0  # the paper preset has BatchNorm
    first, last = doc["points"][0], doc["points"][-1]
    assert first["ssim_heldout"] != last["ssim_heldout"]  # it trained between the two
    text = chart.read_text()
    assert text.startswith("<svg") and text.count("<polyline") == 3
    # --plot draws kept results without training
    again = tmp_path / "again.svg"
    assert learning_curve.main(["--plot", f"{out},{out}", "--svg", str(again)]) == 0
    assert again.read_text().count("<polyline") == 6


def test_judging_with_batch_statistics_leaves_the_running_ones_alone():
    from core.models import ModelConfig, build_models

    g, _, _ = build_models(ModelConfig(preset="paper", width=32, height=24, width_mult=0.125))
    bn = next(m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.fill_(0.5)  # far from any batch's statistics
    before = {k: v.clone() for k, v in g.state_dict().items()}
    frames = torch.rand(6, 3, 24, 32) * 2 - 1
    res = learning_curve.one_step(g, frames, 1, range(1, 6), (0, 0, 32, 24))
    after = g.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert bn.momentum == 0.01 and g.training
    assert res["ssim_batch_stats"] != res["ssim"]  # the two normalisations differ
