"""The headless script and the README's demo, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

from core.checkpoint import load_checkpoint

from .conftest import ROOT
from .test_train_extend import png_size

TINY = ["--width", "64", "--height", "36", "--model-width", "0.125", "--batch-size", "2",
        "--device", "cpu"]  # fmt: skip


def run_script(args, tmp_path, timeout=900):
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    env.pop("FSGAN_PYTHON", None)
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tmp_path)  # fmt: skip


def test_headless_extend_script(blender, frames16, tmp_path):
    blend = tmp_path / "shot.blend"
    blender(sys.executable, "bl_make_blend.py", "--frames", frames16, "--blend", blend,
            "--name", "shot 01/../x")  # fmt: skip
    script = ROOT / "scripts" / "headless_extend.py"

    wrong = run_script([script, "--blend", blend, "--strip", "nope", "--count", "2"], tmp_path)
    assert wrong.returncode == 1
    assert (
        "error: Scene 'Scene' has no strip 'nope'; image and movie strips: shot 01/../x."
        in wrong.stderr
    )

    out = tmp_path / "out"
    proc = run_script([script, "--blend", blend, "--strip", "shot 01/../x", "--count", "4",
                       "--steps", "3", *TINY, "--output-dir", out, "--no-loop",
                       "--flow-guidance", "--model-dir", tmp_path / "models"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FrameSequenceGAN: train step 3/3" in proc.stdout
    # --no-loop is accepted by the operator (continue_loops=False; the exit status above); this
    # strip is no loop, so nothing says "cycle" either way
    assert "cycle" not in proc.stdout
    assert "saved " + str(blend) in proc.stdout

    strips = blender(sys.executable, "bl_inspect.py", "--blend", blend).stage("inspect")["strips"]
    source = next(s for s in strips if s["name"] == "shot 01/../x")
    new = [s for s in strips if s is not source]
    assert len(new) == 1 and len(new[0]["files"]) == 4
    assert new[0]["start"] == source["end"] == 21
    assert os.path.realpath(new[0]["directory"]) == os.path.realpath(out / "shot 01___x")
    assert source["checkpoint"] and os.path.isfile(source["checkpoint"])
    assert os.path.dirname(source["checkpoint"]) == str(tmp_path / "models")
    assert source["checkpoint_stored"].startswith("//models/")  # relative to the saved .blend
    # --flow-guidance reached the training (the panel's Optical Flow Guidance)
    assert load_checkpoint(source["checkpoint"]).train_config["flow_weight"] == 1.0


def test_headless_extend_refusals_and_interrupt(blender, frames16, tmp_path):
    """Out-of-range arguments, a .blend that can't be saved, a file that is not a .blend, and
    Ctrl-C: one error line and a non-zero exit every time (never a hang or a silent success);
    an interrupted run saves its checkpoint but extends and saves nothing."""
    import signal
    import time

    blend = tmp_path / "shot.blend"
    blender(sys.executable, "bl_make_blend.py", "--frames", frames16, "--blend", blend,
            "--name", "walk")  # fmt: skip
    script = ROOT / "scripts" / "headless_extend.py"
    before = blend.read_bytes()

    bad = run_script([script, "--blend", blend, "--strip", "walk", "--count", "0"], tmp_path)
    assert bad.returncode == 2 and "--count must be at least 1, not 0" in bad.stderr, bad.stderr
    bad = run_script([script, "--blend", blend, "--strip", "walk", "--width", "0"], tmp_path)
    assert bad.returncode == 2 and "--width must be at least 16" in bad.stderr, bad.stderr

    not_blend = tmp_path / "notes.blend"
    not_blend.write_text("not a blend file")
    r = run_script([script, "--blend", not_blend, "--strip", "walk"], tmp_path, timeout=300)
    assert r.returncode == 1 and "error: The file" in r.stderr and "cannot be opened" in r.stderr
    assert "Traceback" not in r.stderr, r.stderr

    r = run_script([script, "--blend", blend, "--strip", "walk", "--count", "1", "--steps", "1",
                    *TINY, "--output-dir", tmp_path / "out", "--model-dir", tmp_path / "models",
                    "--save-as", tmp_path / "no" / "such" / "x.blend"], tmp_path, timeout=600)  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr  # before: a traceback, then a hang
    assert "error: The file could not be saved to" in r.stderr, r.stderr

    env = dict(os.environ, HOME=str(tmp_path / "home"))
    env.pop("FSGAN_PYTHON", None)
    proc = subprocess.Popen(
        [sys.executable, str(script), "--blend", str(blend), "--strip", "walk", "--count", "2",
         "--steps", "100000", *TINY, "--output-dir", str(tmp_path / "out2"),
         "--model-dir", str(tmp_path / "models2")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        # Ctrl-C as in a terminal: a shell that runs the suite in the background (`cmd &`)
        # leaves SIGINT ignored, which the child would inherit and never see the signal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # wait for training to run
        if "train step" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert "error: Training was interrupted at step" in err and "is saved" in err, err
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").rglob("*.png"))
    assert blend.read_bytes() == before  # not saved
    assert list((tmp_path / "models2").glob("*.safetensors"))  # the checkpoint is kept


def test_blender_demo(tmp_path):
    out = tmp_path / "demo"
    proc = run_script([ROOT / "scripts" / "blender_demo.py", "--out", out, "--frames", "8",
                       "--count", "4", "--steps", "3", "--model-width", "0.125",
                       "--batch-size", "2", "--device", "cpu"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo finished" in proc.stdout
    assert (out / "demo.blend").is_file()
    generated = sorted((out / "generated" / "bouncing_ball").glob("*.png"))
    assert len(generated) == 4
    assert all(png_size(str(p)) == (64, 36) for p in generated)
    assert png_size(str(out / "contact_sheet.png"))[0] > 4 * 64
    assert list((out / "models").glob("*.safetensors"))
    assert list((out / "dist").glob("fsgan_blender-*.zip"))
