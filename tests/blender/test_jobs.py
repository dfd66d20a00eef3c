"""A running job in real Blender: progress in the panel and the status bar, Cancel, refusals."""

from __future__ import annotations

import os

import pytest

from .conftest import bpy_params


@pytest.mark.parametrize("python", bpy_params(extra=False))
def test_progress_then_cancel_keeps_checkpoint(python, blender, built_zip, frames16, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    run = blender(python, "bl_cancel.py", "--zip", built_zip, "--frames", frames16,
                  "--work", work)  # fmt: skip

    running = run.stage("running")
    assert "fsgan.cancel_job" in running["operators"]
    assert running["progress"] and running["progress"][0].startswith("step ")
    assert running["status"] and "Training walk: step " in running["status"][0]
    # The latest preview rollout is loaded into the panel's preview collection.
    assert running["sample"].endswith(".png")
    assert len(running["previews"]) == 1
    assert os.path.dirname(running["previews"][0]) == running["preview_dir"]
    assert any(label.startswith("Preview rollout") for label in running["labels"])
    # A second job is refused with a clear sentence while one runs.
    assert running["busy"]["ret"] == ["CANCELLED"]
    assert "still running" in running["busy"]["error"]

    cancelled = run.stage("cancelled")
    assert cancelled["cancel"]["ret"] == ["FINISHED"]
    assert cancelled["failure"] is None
    assert cancelled["returncode"] == 0
    assert cancelled["done"]["cancelled"] is True
    assert 2 <= cancelled["done"]["step"] < 5000
    assert cancelled["checkpoint_exists"] is True
    assert cancelled["leftovers"] == ["model.safetensors"]  # no temp or partial files
    assert cancelled["cancel_poll"] is False
