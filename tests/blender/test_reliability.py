"""Reliability of the add-on in real Blender: refused strips say why, faults during jobs are one
clear sentence (and stay in the panel), nothing half-written is left, and no worker outlives
its job, its file or its Blender. The case -> behaviour -> test table is docs/RELIABILITY.md.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, SCRIPTS, bpy_params, bpy_version
from .test_errors import assert_clear_error

LOAD_JOBS = int(os.environ.get("FSGAN_LOAD_JOBS", "5"))  # bench/load.py runs 100


def joined(labels: list[str]) -> str:
    return " ".join(labels)


def worker_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def safetensors_step(path) -> int:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert 8 + n + end == os.path.getsize(path), f"{path} is incomplete"
    return int(header["__metadata__"]["step"])


@pytest.fixture(scope="module")
def frames_8k(tmp_path_factory):
    from PIL import Image, ImageDraw

    folder = tmp_path_factory.mktemp("big") / "8K frames"
    folder.mkdir()
    for i in range(3):
        img = Image.new("RGB", (7680, 4320), (20, 30, 90))
        ImageDraw.Draw(img).rectangle([1000 + 900 * i, 1800, 1800 + 900 * i, 2600], fill="gold")
        img.save(folder / f"frame_{i + 1:04d}.png", compress_level=1)
    return folder


@pytest.mark.parametrize("python", bpy_params())
def test_refused_strips_say_why(python, blender, built_zip, frames16, tmp_path):
    run = blender(python, "bl_rel_strips.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path)  # fmt: skip

    kinds = run.stage("kinds")["kinds"]
    assert set(kinds) == {"sound", "color", "text", "scene", "movie", "meta"}
    # A movie strip is usable (tests/blender/test_decoded.py); this one's file does not exist.
    movie = kinds.pop("movie")
    assert movie["type"] == "MOVIE", movie
    for where in ("train", "extend"):
        assert "clip.mp4 of strip 'mov' is missing; relink the strip" in movie[where], movie
    assert "is missing; relink the strip" in movie["panel"], movie  # wrapped: no exact path
    assert "Frames:" not in movie["panel"], movie  # no frame count without the file
    for kind, r in kinds.items():
        if "unavailable" in r:  # only sound strips, only in a bpy built without audio (4.2)
            assert kind == "sound" and "Audaspace" in r["unavailable"], r
            continue
        assert r["type"] == kind.upper(), r
        reason = f"is a {kind} strip; FrameSequenceGAN needs an image-sequence or movie strip"
        assert reason in r["train"] and reason in r["extend"] and reason in r["panel"], r

    short = run.stage("short")["counts"]
    assert "'only1' shows 1 frame; at least 3 are needed" in short["1"]["train"]
    assert "'only2' shows 2 frames; at least 3 are needed" in short["2"]["train"]
    assert "at least 3 are needed" in short["2"]["panel"]
    assert "no trained model yet" in short["1"]["extend"]  # one frame is enough to extend from

    missing = run.stage("missing")
    some = ("4 of the 16 frame files of strip 'holes' are missing: frame_0003.png to "
            "frame_0005.png, frame_0009.png")  # fmt: skip
    assert some in missing["some"]["train"] and some in missing["some"]["panel"]
    assert missing["some"]["op"]["ret"] == ["CANCELLED"] and some in missing["some"]["op"]["error"]
    assert (
        "All 6 frame files of strip 'gone' are missing (frame_0001.png to frame_0006.png)"
        in (missing["all"]["train"])
    )
    assert "relink the strip" in missing["all"]["panel"]

    relative = run.stage("relative")
    assert (
        "relative to the .blend file (//frames/), which is not saved yet"
        in (relative["unsaved"]["train"])
    )
    assert "not saved yet" in relative["unsaved"]["panel"]
    assert relative["saved"]["train"] is None  # saved: // resolves next to the .blend


@pytest.mark.parametrize("python", bpy_params(extra=False))
def test_job_faults_are_clear_and_lose_nothing(
    python, blender, built_zip, frames16, frames_8k, tmp_path
):
    run = blender(python, "bl_rel_faults.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path, "--big-frames", frames_8k)  # fmt: skip

    trained = run.stage("trained")
    assert trained["op"] == {"ret": ["FINISHED"], "error": None}, trained
    assert trained["pwned"] == []  # the folder name ran no command: no shell anywhere
    assert any(label.startswith("Memory estimate: about") for label in trained["panel"])
    assert "FrameSequenceGAN: Memory estimate: about" in run.output
    checkpoint = trained["checkpoint"]

    killed = run.stage("killed")
    assert_clear_error(killed["op"], "was stopped by signal 9",
                       f"The last saved checkpoint {checkpoint} is intact")  # fmt: skip
    assert killed["seconds_to_report"] < 5  # Blender is not left waiting on a dead worker
    assert killed["worker_alive"] is False
    assert killed["complete"] is True and killed["step"] == "2"
    assert killed["unchanged"] is True and killed["strip_checkpoint"] == checkpoint
    assert killed["temp_files"] == []
    panel = joined(killed["panel"])
    assert "Training 'walk' failed:" in panel and "signal 9" in panel
    assert killed["poll"] is True  # a new job can start

    crashed = run.stage("crashed")
    assert_clear_error(crashed["op"], "was stopped by signal 11", "worker.log")
    assert crashed["strip_checkpoint"] == checkpoint

    oom = run.stage("oom")
    message = assert_clear_error(oom["op"], "ran out of memory", "lower Batch Size")
    assert "--batch-size" not in message  # the panel's names, not the command line's
    assert "Batch Size" in joined(oom["panel"])

    full = run.stage("disk_full")
    assert_clear_error(full["train"], "could not be read or written", "File too large")
    assert full["models_after"] == full["models_before"]  # no partial or temp checkpoint
    assert full["strip_checkpoint"] == checkpoint
    assert_clear_error(full["extend"], "could not be read or written", "File too large")
    assert full["out_files"] == []  # no half-written PNG, no temp file, no orphan frame
    assert full["strips_added"] == []

    read_only = run.stage("read_only")
    message = assert_clear_error(
        read_only["op"], "cannot be written", "choose another Output Folder"
    )
    assert "read-only" in message
    assert read_only["fresh"] is None and read_only["fresh_made"] is False
    assert read_only["under_read_only"] is not None  # ro itself, or the file that blocks it
    assert read_only["under_read_only"].startswith(str(tmp_path / "read-only"))
    assert read_only["under_file"] == str(frames16 / "frame_0001.png")
    assert read_only["existing"] is None

    too_big = run.stage("too_big")
    assert_clear_error(too_big["op"], "This job needs about", "GB free: lower Batch Size")
    assert too_big["new_jobs"] == []  # refused before any worker started
    assert "needs about" in joined(too_big["panel"])

    big = run.stage("big")
    assert big["op"] == {"ret": ["FINISHED"], "error": None}, big
    assert "Resolution: 7680 x 4320" in big["source_panel"]
    assert (big["model_config"]["width"], big["model_config"]["height"]) == (32, 32)
    assert big["estimate"]["train_size"] == "32x32"
    assert big["estimate"]["frames_bytes"] == 3 * 3 * 32 * 32  # the training size, not 8K
    # Fit Strip Aspect: 32 x 32's pixels at the strip's 16:9 (core.data.fitted_size), and the
    # estimate before the job (from the strip's size) says so
    fitted = run.stage("big_fitted")
    assert fitted["op"] == {"ret": ["FINISHED"], "error": None}, fitted
    assert (fitted["model_config"]["width"], fitted["model_config"]["height"]) == (40, 24)
    assert fitted["estimate"]["train_size"] == "40x24"
    assert fitted["estimate"]["frames_bytes"] == 3 * 3 * 40 * 24
    # Optical Flow Guidance: off by default, the flow term's weight when asked for
    assert big["train_config"]["flow_weight"] == 0.0, big["train_config"]
    assert fitted["train_config"]["flow_weight"] == 1.0, fitted["train_config"]
    assert any(label.startswith("Memory estimate: about") for label in big["panel"])


@pytest.mark.parametrize("python", bpy_params())
def test_file_reload_and_quit_end_the_worker(python, blender, built_zip, frames16, tmp_path):
    run = blender(python, "bl_rel_lifecycle.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path, "--mode", "reload")  # fmt: skip

    reloaded = run.stage("reloaded")
    assert reloaded["returncode"] == 0 and reloaded["done"]["cancelled"] is True, reloaded
    assert safetensors_step(reloaded["checkpoint"]) >= 1  # saved, valid
    assert reloaded["current"] is False and reloaded["children"] == []
    assert reloaded["strips"] == ["walk"]  # the reloaded file is intact
    # The reloaded file's strip gets the model the stopped run saved, and the panel says so.
    reattached = run.stage("reattached")
    assert reattached["checkpoint_now"] == reloaded["checkpoint"], reattached
    assert reattached["outcome"]["level"] == "INFO", reattached
    assert "attached to the strip again" in reattached["outcome"]["message"], reattached
    assert "Training 'walk' was stopped:" in reattached["panel"], reattached
    assert reattached["records"] == [["walk", "reload.safetensors"]]  # kept until saved
    # Set back to no model and saved: that choice stands at the next load.
    declined = run.stage("declined")
    assert declined["checkpoint_now"] is None and declined["records"] == [], declined
    # Another model saved on the strip after a run stopped: a later load keeps it, and forgets
    # the record.
    other_saved = run.stage("other_saved")
    assert other_saved["records"] == [["walk", "stopped_open.safetensors"]], other_saved
    assert "When scene.blend is next opened" in other_saved["outcome"]["message"], other_saved
    other_kept = run.stage("other_kept")
    assert other_kept["checkpoint_now"].endswith("other.safetensors"), other_kept
    assert other_kept["records"] == []
    quitting = run.stage("quitting")
    assert not worker_alive(quitting["pid"])  # the atexit hook ended it with Blender
    assert safetensors_step(quitting["checkpoint"]) >= 1
    # Blender quit mid-run: opening the file again attaches the saved model; saving ends it.
    reopen = blender(python, "bl_rel_lifecycle.py", "--zip", built_zip, "--frames", frames16,
                     "--work", tmp_path, "--mode", "reopen")  # fmt: skip
    reopened = reopen.stage("reopened")
    assert reopened["checkpoint_now"] == quitting["checkpoint"], reopened
    assert reopened["records"] == [["walk", "quit.safetensors"]]
    assert reopen.stage("reopened_saved")["records"] == []
    untitled = reopen.stage("untitled")
    assert untitled["outcome"]["level"] == "WARNING" and untitled["records"] == [], untitled
    assert "untitled.safetensors" in untitled["outcome"]["message"], untitled
    assert "Use Checkpoint File" in untitled["outcome"]["message"], untitled
    assert "Training 'walk' was stopped:" in untitled["panel"], untitled


def test_killed_blender_leaves_no_worker(blender, frames16, built_zip, tmp_path):
    """Blender itself is SIGKILLed mid-job: the worker sees its stdin close, saves and ends;
    opening the file again attaches what it saved to the strip."""
    bpy_version(sys.executable)
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    env.pop("FSGAN_PYTHON", None)
    cmd = [sys.executable, str(SCRIPTS / "bl_rel_lifecycle.py"), "--", "--zip", str(built_zip),
           "--frames", str(frames16), "--work", str(tmp_path), "--mode", "killed"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp_path)  # fmt: skip
    lines, running = [], None
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("RESULT "):
                running = json.loads(line[len("RESULT ") :])
                break
            assert time.monotonic() < deadline
        assert running is not None, "".join(lines[-50:])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while worker_alive(running["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = worker_alive(running["pid"])
        if alive:
            os.kill(running["pid"], signal.SIGKILL)
    finally:
        proc.kill()
    assert not alive, "the worker outlived the Blender that started it"
    # Nothing half-written: no temp file, and a checkpoint (if the worker got to save one with
    # its stdout gone) is complete.
    assert not list(tmp_path.glob(".tmp-*"))
    assert safetensors_step(running["checkpoint"]) >= 1
    # The same HOME (the blender fixture's): the record the killed Blender wrote is there.
    reopen = blender(sys.executable, "bl_rel_lifecycle.py", "--zip", built_zip, "--frames",
                     frames16, "--work", tmp_path, "--mode", "reopen_killed")  # fmt: skip
    reopened = reopen.stage("reopened")
    assert reopened["checkpoint_now"] == running["checkpoint"], reopened
    assert "did not finish (Blender closed or crashed)" in reopened["outcome"]["message"]
    assert reopened["records"] == [["walk", "killed.safetensors"]]  # until saved


@pytest.mark.parametrize("python", bpy_params(extra=False))
def test_back_to_back_extends_leave_nothing_behind(python, blender, built_zip, frames16, tmp_path):
    run = blender(python, "bl_rel_load.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path, "--jobs", LOAD_JOBS)  # fmt: skip
    jobs = [r for r in run.results if r.get("stage") == "job"]
    end = run.stage("end")
    assert len(jobs) == LOAD_JOBS and end["files"] == LOAD_JOBS
    first = jobs[0]  # after one job: lazily created things (the reader thread's module) exist
    assert end["children"] == [] and all(j["children"] == [] for j in jobs)
    assert end["fds"] == first["fds"], (first["fds"], end["fds"])
    assert end["threads"] == first["threads"]
    assert end["rss"] - first["rss"] < 32 * 2**20, (first["rss"], end["rss"])


def test_worker_is_started_without_a_shell():
    """Every subprocess call of the add-on takes an argument list; none uses a shell."""
    calls = 0
    for path in (ROOT / "fsgan_blender").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name.startswith("subprocess.") or name in {"os.system", "os.popen"}:
                assert name not in {"os.system", "os.popen"}, (path.name, name)
                for kw in node.keywords:
                    assert kw.arg != "shell", (path.name, ast.unparse(node))
                calls += 1
    assert calls >= 2  # the worker (worker_client.py) and the memory estimate (operators.py)
