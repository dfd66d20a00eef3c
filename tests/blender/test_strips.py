"""Frame paths from real strips (trims, offsets, playhead, // paths) and safe output paths."""

from __future__ import annotations

import os

import pytest

from .conftest import bpy_params


def frames(a: int, b: int) -> list[str]:
    return [f"frame_{i:04d}.png" for i in range(a, b + 1)]


@pytest.mark.parametrize("python", bpy_params())
def test_strip_frames_and_paths(python, blender, built_zip, frames16, tmp_path):
    run = blender(python, "bl_strips.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path)  # fmt: skip

    trimmed = run.stage("trimmed")
    # 16 frames from frame 10, trimmed by 2 at the start and 3 at the end: frames 3-13 show.
    assert trimmed["final"] == [12, 23]
    assert trimmed["visible"] == frames(3, 13)
    assert trimmed["end_context"] == frames(6, 13)  # the last 8, ending at the last visible
    assert trimmed["playhead_context"] == frames(3, 6)  # frame 15 shows frame_0006
    assert "playhead (frame 5) is not over the strip 'trimmed'" in trimmed["outside"]
    assert trimmed["problem"] is None
    assert trimmed["resolution"] == [64, 36]

    hold = run.stage("hold_offsets")
    # Hold Offsets 2 and 1 leave elements 3-15 as content; the handle trims one more.
    assert hold["problem"] is None, hold
    assert hold["shown_by_blender"] == frames(4, 15), hold
    assert hold["visible"] == hold["shown_by_blender"]
    assert hold["end_context"] == frames(8, 15)
    assert hold["resolution"] == [64, 36]
    assert hold["reversed_shown"] == frames(3, 14)[::-1], hold
    assert hold["reversed_elements"] == hold["reversed_shown"]

    held = run.stage("held")
    assert held["final"] == [16, 35], held
    assert held["after"] == frames(3, 10)  # frame 33 holds frame_0010: the last 8 up to it
    assert held["before"] == frames(1, 1)  # frame 17 holds frame_0001
    assert held["inside"] == frames(1, 3)  # frame 22 shows frame_0003

    remembered = run.stage("remembered")
    seen = remembered["seen"]
    assert seen["start"] == frames(1, 6)
    assert seen["trimmed"] == frames(3, 6)
    assert seen["appended"] == frames(3, 7)
    assert seen["last_renamed"] == [[*frames(3, 6), "frame_0016.exr"], True]  # now decoded
    assert seen["directory"] == [remembered["directory"]]
    after = ["frame_0003.png", "frame_0010.png", "frame_0005.png", "frame_0006.png",
             "frame_0016.exr"]  # fmt: skip
    assert seen["middle_fresh"] == after  # what a job reads
    assert seen["middle_cached"] != after  # the panels' list is a few seconds behind ...
    assert seen["middle_after_ttl"] == after  # ... and then catches up

    for key, (length, problem) in run.stage("subframe")["lengths"].items():
        assert length == 11 and problem is None, (key, length, problem)

    moved = run.stage("moved")
    assert moved["visible"] == frames(15, 16)
    assert "shows 2 frames; at least 3 are needed" in moved["problem"]
    assert moved["extend_problem"] is None

    look = run.stage("look")
    # The generated strip takes the source's blend mode, opacity and modifiers (in order, muted
    # ones muted, curve points, colour balance and the mask strip included) ...
    assert look["new"]["blend"] == look["source"]["blend"] == ["ADD", 0.6], look
    assert (
        look["new"]["modifiers"]
        == look["source"]["modifiers"]
        == [
            ["Curves", "CURVES", False],
            ["Balance", "COLOR_BALANCE", False],
            ["Masked", "BRIGHT_CONTRAST", True],
            ["Hue", "HUE_CORRECT", False],
        ]
    ), look
    points = [v for point in look["curve_points"] for v in point]
    assert points == pytest.approx([0, 0, 0.3, 0.6, 0.7, 0.8, 1, 1])
    assert look["first_point"] == pytest.approx([0.0, 0.1])
    assert look["gain"] == pytest.approx([0.8, 1.2, 1.0]) and look["multiply"] == pytest.approx(1.3)
    assert look["mask"] == ["STRIP", "under"]
    assert look["sequencer_scene_kept"] is True
    # ... so the same frames look the same on the timeline, where a plain strip does not.
    assert max(look["new_vs_source"]) < 0.01, look
    assert min(look["plain_vs_source"]) > 5.0, look

    linked = run.stage("linked")
    assert linked["library"] is True
    assert linked["problem"] == (
        "The strip 'plate' is in scene 'Shot', linked from library.blend: what is trained or "
        "added here would not be saved. Make the scene local first, or open that file."
    )

    relative = run.stage("relative")
    project = relative["project"]
    assert relative["paths"] == [os.path.join(project, "frames", f) for f in frames(1, 4)]
    assert relative["stored"] == "//models/m.safetensors"  # saved relative to the .blend
    assert relative["resolved"] == os.path.join(project, "models", "m.safetensors")

    saved = run.stage("save_as")
    model = os.path.join(project, "models", "m.safetensors")
    assert saved["after_save_as"] == ["//../../models/m.safetensors", model]
    assert saved["after_copy"] == ["//../../models/m.safetensors", model]  # this file's, as was
    assert saved["in_copy"] == model  # and the copy's own path finds it too
    assert saved["failed_save"] is True and saved["after_failed"] == saved["after_copy"]

    channels = run.stage("channels")
    assert channels["after_c1"] == 5  # touching end to start is no overlap
    assert channels["overlapping"] == 7  # 5 and 6 are taken in 105-112
    assert channels["through_both"] == 7
    assert channels["closed"] == [7, 8] and channels["past_closed"] == 9

    names = run.stage("names")
    base = names["base"]
    for name, out in names["outputs"].items():
        assert os.path.commonpath([base, os.path.realpath(out)]) == base, (name, out)
        assert os.path.dirname(out) == base, (name, out)
    assert names["safe"] == ["___x", "a_b", "hidden", "ok_name-1.2"]
    assert names["next_number"] == 17

    prune = run.stage("prune")
    # Only folders of other processes still running survive (the test's; pid 1, init).
    assert prune["left"] == sorted(
        [f"train-20260101-000001-{prune['running']}", "extend-20260101-000009-1-2"]
    ), prune

    seq = run.stage("sequencer_scene")
    assert seq["supported"] is run.version.startswith("5."), seq
    if seq["supported"]:
        assert seq["active_scene"] == "Scene" and seq["before"] is None
        assert seq["used"] == "Edit" and seq["active"] == "shot" and seq["train_poll"] is True


@pytest.mark.parametrize("python", bpy_params())
def test_extend_inside_metas_plays_every_frame(python, blender, built_zip, frames16, tmp_path):
    """A strip added inside a meta (and a meta in a meta): the metas grow to its end without
    moving, and every new frame renders as the same files do as a plain strip (Blender keeps a
    meta's range when strips are added inside, and appended elements would freeze on one)."""
    run = blender(python, "bl_strips.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path)  # fmt: skip
    meta = run.stage("meta")
    single, nested = meta["single"], meta["nested"]
    assert single["hidden"] is None and nested["hidden"] is None, meta
    assert single["new"] == [9, 17] and single["meta"] == [1, 17, 2], single
    assert nested["new"] == [109, 117] and nested["meta"] == [101, 117, 2], nested
    assert nested["outer"] == [101, 117, 3], nested
    for case in (single, nested):
        assert case["moving"] > 1, case  # the frames differ, so a frozen frame would show
        assert case["diffs"] == [0.0, 0.0, 0.0], case
