"""Panels and polls in real Blender: each state says what the user can do, or why not."""

from __future__ import annotations

import pytest

from .conftest import bpy_params


def text(panel: dict) -> str:
    return " ".join(panel["labels"])


@pytest.mark.parametrize("python", bpy_params())
def test_panels_and_poll_messages(python, blender, built_zip, frames16, tmp_path):
    run = blender(python, "bl_panels.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path)  # fmt: skip

    menus = run.stage("menus")
    assert menus["hosts"] == {
        "SEQUENCER_MT_strip": [["'FSGAN_MT_strip'"]],
        "SEQUENCER_MT_context_menu": [["'FSGAN_MT_strip'"]],
    }, menus
    assert menus["operators"] == ["fsgan.train_on_strip", "fsgan.extend_animation",
                                  "fsgan.set_checkpoint", "fsgan.cancel_job"], menus  # fmt: skip
    assert all(menus["known"]) and menus["context"] == ["'INVOKE_DEFAULT'"], menus
    # A usable strip without a model: Train and Use Checkpoint File work, the rest wait.
    assert menus["polls"] == {"fsgan.train_on_strip": True, "fsgan.extend_animation": False,
                              "fsgan.set_checkpoint": True, "fsgan.cancel_job": False}  # fmt: skip

    none = run.stage("no_editor")
    assert "No active strip" in text(none["panels"]["FSGAN_PT_source"])
    assert "No active strip" in none["polls"]["train"]
    assert "No active strip" in none["polls"]["extend"]
    training = none["panels"]["FSGAN_PT_training"]
    assert {"preset", "width", "height", "steps", "minutes", "device"} <= set(training["props"])
    assert "fsgan.train_on_strip" in training["operators"]
    assert {
        "count", "start", "continue_loops", "calibrate_motion", "motion_gain", "fit_scene_range",
        "output_dir",
    } <= set(none["panels"]["FSGAN_PT_extend"]["props"])  # fmt: skip
    assert "fsgan.extend_animation" in none["panels"]["FSGAN_PT_extend"]["operators"]
    assert {"model_width", "batch_size"} <= set(
        none["panels"]["FSGAN_PT_training_advanced"]["props"]
    )

    color = run.stage("color")
    assert "color strip" in text(color["panels"]["FSGAN_PT_source"])
    assert "needs an image-sequence or movie strip" in color["polls"]["train"]

    short = run.stage("short")
    source = text(short["panels"]["FSGAN_PT_source"])
    assert "Frames: 2 visible of 2" in source
    assert "at least 3" in source
    assert "at least 3" in short["polls"]["train"]

    usable = run.stage("usable")
    source = usable["panels"]["FSGAN_PT_source"]
    assert "Frames: 16 visible of 16" in source["labels"]
    assert "Resolution: 64 x 36" in source["labels"]
    assert "Decoded by Blender first, then cached" not in source["labels"]  # PNGs: read as they are
    assert not [label for label in source["labels"] if "needs" in label or "least" in label]
    assert "Model: none yet" in usable["panels"]["FSGAN_PT_training"]["labels"]
    assert "no trained model yet" in usable["polls"]["extend"]

    missing = run.stage("missing_checkpoint")
    assert "Model: missing.safetensors" in missing["panels"]["FSGAN_PT_training"]["labels"]
    assert missing["extend"]["ret"] == ["CANCELLED"]
    assert "does not exist" in missing["extend"]["error"]
    assert "Traceback" not in missing["extend"]["error"]

    prefs = run.stage("prefs")
    assert any(label.startswith("Worker runs: ") for label in prefs["labels"])
