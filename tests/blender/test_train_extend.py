"""Install the built extension in real Blender, train on a strip, extend it, undo, save, reopen."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from .conftest import bpy_params


def png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def overlaps(a: dict, b: dict) -> bool:
    return a["channel"] == b["channel"] and a["start"] < b["end"] and b["start"] < a["end"]


@pytest.mark.parametrize("python", bpy_params())
def test_install_train_extend_undo_reopen(python, blender, built_zip, frames16, tmp_path):
    from core.procedural import write_frames

    from ..core.test_loops import _cycle

    work = tmp_path / "work"
    work.mkdir()
    write_frames(np.ascontiguousarray(_cycle(7, 21, 32, 48)[..., :3]), str(tmp_path / "cycle"))
    run = blender(python, "bl_train_extend.py", "--zip", built_zip, "--frames", frames16,
                  "--work", work, "--looped", tmp_path / "cycle")  # fmt: skip

    # Deprecated RNA properties (Blender 5.2+) read by the add-on's code are errors in these
    # runs (conftest checks the list is empty); the probe shows the check bites where it should.
    probe = run.stage("deprecation_probe")
    assert probe["watching"] is True, probe
    newer = tuple(int(x) for x in run.version.split(".")[:2]) >= (5, 2)
    assert probe["deprecated"] is newer, (run.version, probe)
    if newer:
        assert "frame_final_start" in probe["raised"] and len(probe["recorded"]) == 1, probe
    else:
        assert probe["raised"] is None and probe["recorded"] == [], probe
    assert run.stage("addon_deprecations")["warnings"] == []

    # Train: the operator finished and the strip remembers an existing checkpoint.
    train = run.stage("train")
    assert train["op"] == {"ret": ["FINISHED"], "error": None}, train
    checkpoint = train["source"]["checkpoint"]
    assert checkpoint and checkpoint.endswith(".safetensors")
    assert os.path.isfile(checkpoint), checkpoint
    # Stored in the extension's user folder (the default), inside the temporary HOME.
    assert os.path.join("extensions", ".user", "user_default", "fsgan_blender", "models") in (
        checkpoint
    )
    # The panel says what the model is, from the checkpoint's header.
    assert "default preset, 64 x 36, 4 steps" in train["labels"], train["labels"]
    assert "FrameSequenceGAN: train step" in run.output

    running = " ".join(run.stage("estimate_from_worker")["labels"])
    assert "Memory estimate: about 3.00 GB of 12.0 GB" in running, running

    use = run.stage("use_checkpoint")
    expected = (
        "other.safetensors is a safetensors file but not a FrameSequenceGAN checkpoint.",
        "notes.safetensors is not a FrameSequenceGAN checkpoint (not a safetensors file).",
    )
    for refused, message in zip(use["refused"], expected, strict=True):
        assert refused["ret"] == ["CANCELLED"] and message in refused["error"], use
    assert use["kept"] is True and use["again"] == {"ret": ["FINISHED"], "error": None}, (
        use
    )  # background mode prints progress

    # Extend: 8 new PNGs at the source's size, in a new strip right after the source, on a
    # channel where it overlaps nothing (channels 1 and 2 are blocked by colour strips).
    extend = run.stage("extend")
    assert extend["op"] == {"ret": ["FINISHED"], "error": None}, extend
    assert extend["torch_imported"] is False
    by_name = {s["name"]: s for s in extend["strips"]}
    source = by_name["walk"]
    new = [s for s in extend["strips"] if s["name"] not in ("walk", "block1", "block2")]
    assert len(new) == 1, extend["strips"]
    new = new[0]
    assert new["type"] == "IMAGE"
    assert len(new["files"]) == 8
    assert new["start"] == source["end"] == 17
    assert new["end"] == 25
    assert new["channel"] == 3
    assert not any(overlaps(new, other) for other in extend["strips"] if other is not new)
    assert new["colorspace"] == "Non-Color"  # the source's colour space
    assert new["blend"] == source["blend"] == ["ALPHA_OVER", 0.75]  # and its look
    assert new["modifiers"] == source["modifiers"] == [["Grade", "CURVES", True]]
    assert extend["active"] == new["name"]
    assert extend["frame_end"] == 24  # the scene (it ended at 16) now ends with the new strip
    assert extend["preview"] == [5, 24]  # and so does the preview range that ended with it
    assert new["checkpoint"] == checkpoint  # the new strip can be extended again
    out_dir = os.path.realpath(new["directory"])
    assert out_dir == os.path.realpath(work / "generated" / "walk")
    for name in new["files"]:
        assert png_size(os.path.join(out_dir, name)) == (64, 36)
    assert not [f for f in os.listdir(out_dir) if not f.endswith(".png")]  # no temp files left

    # Ctrl-Z removes the new strip and only it.
    assert sorted(run.stage("undo")["strips"]) == ["block1", "block2", "walk"]
    assert run.stage("undo")["frame_end"] == 16

    # Save + reopen: the checkpoint reference survives and Extend works again; numbering
    # continues, so the frames of the first (undone) run are not overwritten.
    reopen = run.stage("reopen")
    assert reopen["source"]["checkpoint"] == checkpoint
    assert reopen["op"] == {"ret": ["FINISHED"], "error": None}, reopen
    assert reopen["frame_end"] == 16  # Lengthen Scene off
    again = [s for s in reopen["strips"] if s["name"] not in ("walk", "block1", "block2")]
    assert len(again) == 1 and len(again[0]["files"]) == 3
    assert again[0]["files"][0].endswith("0009.png")
    assert reopen["torch_imported"] is False

    r = run.stage("resume_shared")
    assert r["too_big"]["ret"] == ["CANCELLED"] and "needs about" in r["too_big"]["error"], r
    assert r["left_over"] is False  # the refused run's copy of the model is gone
    assert r["op"] == {"ret": ["FINISHED"], "error": None}, r
    assert r["source_model_unchanged"] is True and r["source"]["checkpoint"] == checkpoint
    resumed = r["generated"]["checkpoint"]
    assert resumed != checkpoint and os.path.isfile(resumed)
    assert os.path.dirname(resumed) == os.path.dirname(checkpoint)  # the same model folder
    assert "default preset, 64 x 36, 6 steps" in r["labels"], r["labels"]  # 4 + 2 more

    # Extend inside a meta strip: the new strip goes into the meta, which grows to play it
    # (the render differs from the meta muted); where growing would overlap the next strip on
    # the meta's channel (Blender would move the meta), the meta stays and a warning says so.
    meta = run.stage("meta")
    grows, blocked = meta["grows"], meta["blocked"]
    assert grows["op"]["ret"] == ["FINISHED"] and grows["in_meta"], grows
    assert grows["new"][1:] == [316, 319] and grows["meta"] == [300, 319, 10], grows
    assert grows["shown_vs_muted"] > 10, grows
    assert blocked["op"]["ret"] == ["FINISHED"] and blocked["in_meta"], blocked
    assert blocked["meta"] == [400, 416, 10], blocked  # not moved, not grown
    assert (
        "'blocked_plate_gan' is inside meta strip 'blocked', which ends at frame 415: the "
        "frames after it do not play until the meta is extended to frame 418 (not done here: "
        "'blocked_next' is in the way on channel 10)."
    ) in run.output

    # A strip that repeats a 7-frame cycle: Continue Loops (on by default) repeats it, pixel
    # for pixel, and says so; off, the model generates (its frames are not the cycle's).
    from PIL import Image

    def pixels(path):
        return np.asarray(Image.open(path).convert("RGB"))

    loop = run.stage("loop")
    assert loop["looped"] == {"ret": ["FINISHED"], "error": None}, loop
    assert len(loop["looped_files"]) == 9
    for i, path in enumerate(loop["looped_files"]):
        assert np.array_equal(
            pixels(path), pixels(tmp_path / "cycle" / f"frame_{15 + i % 7:04d}.png")
        ), i
    assert "repeat a 7-frame cycle, so the new ones continue it" in run.output
    assert loop["model"] == {"ret": ["FINISHED"], "error": None}, loop
    assert len(loop["model_files"]) == 2
    assert not np.array_equal(
        pixels(loop["model_files"][0]), pixels(tmp_path / "cycle" / "frame_0015.png")
    )
    # the model generates there, its motion calibrated on the strip's last frames and said so;
    # with Calibrate Motion off the operator's gain is used and nothing is said
    assert loop["given"] == {"ret": ["FINISHED"], "error": None}, loop
    assert len(loop["given_files"]) == 1
    added = {  # each report is printed twice: the add-on's log line and Blender's "Info:"
        line[line.index("Added strip") :]
        for line in run.output.splitlines()
        if "frames at frame 621," in line
    }
    calibrated = [line for line in added if ": 2 frames at" in line]
    given = [line for line in added if ": 1 frames at" in line]
    assert len(calibrated) == 1 and len(given) == 1, added
    assert "calibrated on the strip's last frames" in calibrated[0], calibrated
    assert "Motion gain" not in given[0], given
