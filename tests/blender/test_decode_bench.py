"""bench/decode.py at a toy size, in real bpy: its report adds up."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_decode_benchmark_reports_each_stage(tmp_path):
    out = tmp_path / "decode.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "decode.py"), "--frames", "12", "--size",
         "320x180", "--train", "64x36", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["train_frames"] == 12 and r["train_size"] == [128, 72]  # twice the training size
    assert r["context_frames"] == 8 and r["context_size"] == [320, 180]  # the movie's size
    assert r["train_s"] > 0 and r["train_fps"] > 0 and r["context_s"] > 0
    assert r["cached_s"] < r["train_s"]  # the second call reads the cache
    # Continue Loops' history (all 12 frames), in one go and by the UI's task (16 per step here)
    assert r["loops_frames"] == 12 and r["loops_task_chunk"] == 16 and r["loops_task_steps"] == 1
    assert r["loops_one_go_s"] > 0 and r["loops_task_longest_step_s"] > 0
