"""Jobs that are cancelled, killed or pointed at hostile files (issue: reliability)."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from core.checkpoint import load_checkpoint
from core.protocol import parse_event

from .conftest import ROOT


def _job(tmp_path, clip_dir, steps, **extra):
    job = {
        "version": 1,
        "kind": "train",
        "frames": sorted(str(p) for p in clip_dir.iterdir()),
        "checkpoint": str(tmp_path / "model.safetensors"),
        "train": {
            "preset": "paper",
            "steps": steps,
            "width": 32,
            "height": 32,
            "width_mult": 0.125,
            "batch_size": 2,
            "device": "cpu",
            "checkpoint_every": 1,
            "preview_every": 0,
        },
        **extra,
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def _start(job_path):
    return subprocess.Popen(
        [sys.executable, "-m", "core", "worker", "--job", str(job_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _wait_for(proc, event, n=1):
    seen = []
    for line in proc.stdout:
        ev = parse_event(line)
        if ev:
            seen.append(ev)
            if sum(e["event"] == event for e in seen) >= n:
                return seen
    raise AssertionError(f"worker ended before {n} {event} events: {seen} {proc.stderr.read()}")


def _no_temp_files(folder):
    return [f for f in os.listdir(folder) if f.startswith(".tmp")] == []


@pytest.mark.parametrize("how", ["sigterm", "cancel_file"])
def test_cancel_keeps_a_valid_checkpoint(tmp_path, clip_dir, how):
    cancel = tmp_path / "job.cancel"
    proc = _start(_job(tmp_path, clip_dir, 10_000, cancel_file=str(cancel)))
    try:
        _wait_for(proc, "checkpoint", 2)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            cancel.write_text("")
        rest = [parse_event(line) for line in proc.stdout]
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    done = [e for e in rest if e and e["event"] == "done"][-1]
    assert done["cancelled"] is True
    ck = load_checkpoint(str(tmp_path / "model.safetensors"))
    assert ck.step == done["step"] >= 2
    assert _no_temp_files(tmp_path)


def test_killed_worker_leaves_the_previous_checkpoint_intact(tmp_path, clip_dir):
    proc = _start(_job(tmp_path, clip_dir, 10_000))
    try:
        seen = _wait_for(proc, "checkpoint", 3)
        proc.kill()  # SIGKILL: no handler runs
        proc.wait(timeout=30)
    finally:
        proc.kill()
    ck = load_checkpoint(str(tmp_path / "model.safetensors"))
    assert ck.step >= [e for e in seen if e["event"] == "checkpoint"][-1]["step"]
    assert proc.returncode == -signal.SIGKILL


def test_job_file_is_validated(tmp_path):
    cases = {
        "not json": "{",
        "wrong kind": json.dumps({"kind": "rm -rf", "frames": ["a"], "checkpoint": "c"}),
        "frames not a list": json.dumps({"kind": "train", "frames": "a.png", "checkpoint": "c"}),
        "unknown key": json.dumps({"kind": "train", "frames": ["a"], "checkpoint": "c", "x": 1}),
        "future version": json.dumps(
            {"version": 9, "kind": "train", "frames": ["a"], "checkpoint": "c"}
        ),
        "bad orientation": json.dumps(
            {"kind": "train", "frames": ["a"], "checkpoint": "c", "orientation": "sideways"}
        ),
        "unknown setting": json.dumps(
            {
                "kind": "train",
                "frames": ["a"] * 3,
                "checkpoint": str(tmp_path / "c"),
                "train": {"shell": "x"},
            }
        ),
    }
    for name, text in cases.items():
        path = tmp_path / "job.json"
        path.write_text(text)
        r = subprocess.run(
            [sys.executable, "-m", "core", "worker", "--job", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2, name
        ev = parse_event(r.stdout.strip().splitlines()[-1])
        assert ev["event"] == "error" and ev["code"] == "bad_input", name
        assert "Traceback" not in r.stderr, name


def test_checkpoint_for_another_resolution_is_a_clear_error(tmp_path, clip_dir):
    """Resuming a 32x32 checkpoint on frames at another training size keeps the checkpoint's
    resolution; asking for another preset or channel count is refused clearly."""
    from .conftest import TINY_ARGS, run_cli

    ckpt = tmp_path / "m.safetensors"
    train = ["train", "--frames", clip_dir, "--out", ckpt]
    first = run_cli(*train, "--steps", 1, "--preset", "paper", *TINY_ARGS)
    assert first.returncode == 0, first.stderr
    r = run_cli(*train, "--steps", 2, "--resume", "--preset", "default", "--device", "cpu")
    assert r.returncode == 2 and "other model settings" in r.stderr, r.stderr


def test_worker_ends_when_its_parent_goes_away(tmp_path, clip_dir):
    """--parent-watch: closing stdin (what the OS does when Blender dies) stops training with a
    saved checkpoint instead of leaving an orphan process."""
    job = _job(tmp_path, clip_dir, 10_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "worker", "--job", str(job), "--parent-watch"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        _wait_for(proc, "checkpoint", 1)
        proc.stdin.close()
        rest = [parse_event(line) for line in proc.stdout]
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert [e for e in rest if e and e["event"] == "done"][-1]["cancelled"] is True
    assert load_checkpoint(str(tmp_path / "model.safetensors")).step >= 1


def test_extend_job_honours_cancel(tmp_path, clip_dir):
    from .conftest import TINY_ARGS, run_cli

    ckpt = tmp_path / "m.safetensors"
    r = run_cli("train", "--frames", clip_dir, "--out", ckpt, "--steps", 1, *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    cancel = tmp_path / "cancel"
    cancel.write_text("")  # cancelled before it starts: no frame is written, done says so
    job = {
        "kind": "extend",
        "frames": [str(clip_dir / "frame_0016.png")],
        "checkpoint": str(ckpt),
        "extend": {"count": 5, "out_dir": str(tmp_path / "out"), "device": "cpu"},
        "cancel_file": str(cancel),
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    r = run_cli("worker", "--job", tmp_path / "job.json")
    done = parse_event(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and done["cancelled"] is True and done["frames"] == []
    assert not (tmp_path / "out").exists()  # not even an empty folder


def test_missing_torch_is_an_error_event(tmp_path):
    """A worker Python without PyTorch answers with an error event, not a traceback."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(
        "raise ImportError('No module named torch', name='torch')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    r = subprocess.run(
        [sys.executable, "-m", "core", "worker", "--job", "x.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    ev = parse_event(r.stdout.strip())
    assert r.returncode == 2 and ev["code"] == "missing_dependency" and "torch" in ev["message"]
    assert "Traceback" not in r.stderr


def test_parent_watch_worker_exits_cleanly_while_stdin_is_open(tmp_path, clip_dir):
    """A job that finishes while its parent still holds stdin open exits 0 (the watcher thread
    must not abort the interpreter at exit)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core",
            "worker",
            "--job",
            str(_job(tmp_path, clip_dir, 1)),
            "--parent-watch",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        out = proc.stdout.read()  # stdin stays open until the worker has exited
        code = proc.wait(timeout=120)
    finally:
        proc.stdin.close()
        proc.kill()
    assert code == 0, proc.stderr.read()
    assert b'"event": "done"' in out


def test_cli_train_interrupted_exits_130_with_its_checkpoint(tmp_path, clip_dir):
    """`core train` stopped by SIGINT (Ctrl-C) or SIGTERM saves its checkpoint but does not
    report success: `train && extend` and schedulers see 130. `--out` naming a folder is
    refused before training."""
    out = tmp_path / "m.safetensors"
    cmd = [sys.executable, "-m", "core", "train", "--frames", str(clip_dir), "--out", str(out),
           "--steps", "100000", "--width", "32", "--height", "32", "--width-mult", "0.125",
           "--batch-size", "2", "--device", "cpu", "--checkpoint-every", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "cancelled at step" in stdout
    assert load_checkpoint(str(out)).step >= 1

    folder = tmp_path / "a folder"
    folder.mkdir()
    r = subprocess.run([*cmd[:7], str(folder), *cmd[8:]], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=env)  # fmt: skip
    assert r.returncode == 2 and "is a folder; give a file name" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_written_files_are_readable_by_others_and_never_overwritten(tmp_path, clip_dir):
    """Checkpoints and frames get 0666 less the umask (a temp file's 0600 would hide them from
    a render farm account); `core extend` refuses to overwrite existing frames."""
    from core.checkpoint import atomic_write_bytes
    from core.generate import extend

    path = tmp_path / "x.bin"
    atomic_write_bytes(str(path), b"data")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask

    frames = sorted(str(p) for p in clip_dir.iterdir())
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame_0002.png").write_bytes(b"the artist's own frame")
    with pytest.raises(ValueError, match="frame_0002.png exists; choose another output folder"):
        extend(str(tmp_path / "no model needed.safetensors"), frames[-2:], 3, str(out))
    assert (out / "frame_0002.png").read_bytes() == b"the artist's own frame"


def test_demo_runs_again_into_its_own_folder(tmp_path):
    """The built-in default job, run twice into one folder (as the README's command is):
    its own generated frames are replaced, while `core extend` never overwrites others'."""
    from core.demo import run_demo

    for _ in range(2):
        r = run_demo(str(tmp_path), steps=1, device="cpu", log=lambda *_: None)
    assert sorted(os.listdir(r["generated"]))[:2] == ["frame_0001.png", "frame_0002.png"]
    assert len(os.listdir(r["generated"])) == 16
