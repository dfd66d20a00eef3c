"""Faults during jobs, through the real operators: a worker killed or crashing, out of memory,
a full disk, a read-only output folder, a job too big to fit, and 8K frames.

Background mode runs the operators synchronously (as ``blender --background`` does); a thread
plays the part of the outside world (the OOM killer, a crash) while the operator waits.
"""

import glob
import hashlib
import json
import os
import shutil
import signal
import stat
import struct
import sys
import threading
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402

# A folder name that would run commands if the worker were started through a shell.
NASTY = 'it\'s "$(touch PWNED1)"; touch PWNED2 `touch PWNED3` é'
TINY = dict(width=32, height=32, model_width=0.125, device="cpu")


def train(**kw):
    return bl.call_op(bpy.ops.fsgan.train_on_strip, **{"steps": 2, **TINY, **kw})


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def safetensors_ok(path):
    """A complete safetensors file: its header parses and its data ends at the file's end."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    return 8 + n + end == os.path.getsize(path), header.get("__metadata__", {})


def fake_python(path, body):
    """An executable that stands in for the worker's Python (a crash, an OOM report)."""
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path


def limited_python(path, real, max_bytes):
    """The real worker Python with files capped at ``max_bytes``: writes fail like on a full
    disk (EFBIG; Python ignores SIGXFSZ)."""
    with open(path, "w") as f:
        f.write(
            f"#!{real}\nimport os, resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({max_bytes}, {max_bytes}))\n"
            f"os.execv({real!r}, [{real!r}] + sys.argv[1:])\n"
        )
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path


def panel_labels(name):
    return [e.get("text", "") for e in bl.draw_panel(getattr(bpy.types, name))
            if e["call"] == "label"]  # fmt: skip


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def main():
    p = bl.parser()
    p.add_argument("--big-frames", required=True)
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    wc = addon.worker_client
    real_python = addon.preferences.resolve_python(addon.preferences.get())[0]
    scene = bpy.context.scene
    s = scene.fsgan
    s.batch_size = 2
    s.preview_every = 0
    s.model_dir = os.path.join(args.work, "models")
    s.output_dir = os.path.join(args.work, "out")
    se = scene.sequence_editor_create()

    nasty = os.path.join(args.work, NASTY)
    shutil.copytree(args.frames, nasty)
    strip = bl.add_image_strip("walk", nasty, 16)
    se.active_strip = strip
    first = train()
    checkpoint = addon.strips.checkpoint_of(strip)
    bl.result(
        stage="trained",
        op=first,
        checkpoint=checkpoint,
        pwned=sorted(
            glob.glob(os.path.join(args.work, "**", "PWNED*"), recursive=True)
            + glob.glob(os.path.join(os.getcwd(), "PWNED*"))
        ),  # fmt: skip
        panel=panel_labels("FSGAN_PT_training"),
    )
    before = sha(checkpoint)

    # -- the worker is killed (SIGKILL, as the OOM killer does) while it continues training ---
    killed = {}

    def killer():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = wc.current()
            if job is not None and job.proc is not None and job.state.step >= 1:
                killed["pid"] = job.proc.pid
                killed["t"] = time.monotonic()
                os.kill(job.proc.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    s.resume = True
    thread = threading.Thread(target=killer)
    thread.start()
    op = train(steps=100000)
    returned = time.monotonic()
    thread.join()
    s.resume = False
    ok, meta = safetensors_ok(checkpoint)
    bl.result(
        stage="killed",
        op=op,
        seconds_to_report=returned - killed.get("t", returned),
        worker_alive=alive(killed.get("pid", 0)),
        unchanged=sha(checkpoint) == before,
        complete=ok,
        step=meta.get("step"),
        strip_checkpoint=addon.strips.checkpoint_of(strip),
        temp_files=glob.glob(os.path.join(s.model_dir, ".tmp*")),
        panel=panel_labels("FSGAN_PT_training"),
        poll=bpy.ops.fsgan.train_on_strip.poll(),
    )

    # -- the worker crashes (a segfault in a native library) ----------------------------------
    crash = fake_python(
        os.path.join(args.work, "crashing-python"),
        'case "$*" in *estimate*) exit 1;; esac\n'
        'echo \'{"event": "started", "kind": "train", "device": "cpu", "pid": 1}\'\n'
        "kill -SEGV $$\n",
    )
    os.environ["FSGAN_PYTHON"] = crash
    bl.result(stage="crashed", op=train(), strip_checkpoint=addon.strips.checkpoint_of(strip))

    # -- out of GPU memory (what the worker reports after its retry at half batch failed) -----
    oom = fake_python(
        os.path.join(args.work, "oom-python"),
        'case "$*" in *estimate*) exit 1;; esac\n'
        'echo \'{"event": "error", "code": "out_of_memory", "hint": "batch_size", '
        '"message": "The device ran out of memory: lower the batch size (--batch-size)."}\'\n'
        "exit 3\n",
    )
    os.environ["FSGAN_PYTHON"] = oom
    bl.result(stage="oom", op=train(), panel=panel_labels("FSGAN_PT_training"))

    # -- a full disk: the checkpoint (train) and the frames (extend) cannot be written --------
    os.environ["FSGAN_PYTHON"] = limited_python(
        os.path.join(args.work, "full-disk-python"), real_python, 64 * 1024
    )
    models_before = sorted(os.listdir(s.model_dir))
    full_train = train()
    models_after = sorted(os.listdir(s.model_dir))
    # 32 bytes: no PNG is that small (its signature and header alone are 33), however well a
    # generated frame compresses (a warp of a flat test frame compresses below 512 bytes)
    os.environ["FSGAN_PYTHON"] = limited_python(
        os.path.join(args.work, "full-disk-python2"), real_python, 32
    )
    names_before = [x.name for x in bl.top_strips()]
    full_extend = bl.call_op(bpy.ops.fsgan.extend_animation, count=3)
    out_dir = os.path.join(s.output_dir, "walk")
    bl.result(
        stage="disk_full",
        train=full_train,
        models_before=models_before,
        models_after=models_after,
        strip_checkpoint=addon.strips.checkpoint_of(strip),
        extend=full_extend,
        out_files=sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else [],
        strips_added=[x.name for x in bl.top_strips() if x.name not in names_before],
    )
    os.environ["FSGAN_PYTHON"] = real_python

    # -- a read-only output folder (root ignores permission bits: a file blocks the path) -----
    ro = os.path.join(args.work, "read-only")
    os.makedirs(ro)
    os.chmod(ro, 0o555)
    if os.access(ro, os.W_OK):
        os.chmod(ro, 0o755)
        with open(os.path.join(ro, "walk"), "w") as f:
            f.write("a file where the strip's output folder would go")
    s.output_dir = ro
    read_only = bl.call_op(bpy.ops.fsgan.extend_animation, count=2)
    # The check makes no folder (a job cancelled while its context decodes leaves none behind):
    # a folder yet to be made is judged by its nearest existing one.
    fresh = os.path.join(args.work, "fresh", "nested")
    unwritable = {
        "fresh": addon.paths.unwritable_part(fresh),
        "fresh_made": os.path.exists(os.path.join(args.work, "fresh")),
        "under_read_only": addon.paths.unwritable_part(os.path.join(ro, "walk", "deeper")),
        "under_file": addon.paths.unwritable_part(os.path.join(args.frames, "frame_0001.png", "x")),
        "existing": addon.paths.unwritable_part(args.work),
    }
    os.chmod(ro, 0o755)
    bl.result(stage="read_only", op=read_only, files=sorted(os.listdir(ro)), **unwritable)

    # -- a job that cannot fit is refused before any worker starts ----------------------------
    jobs = addon.paths.user_dir("jobs")
    jobs_before = sorted(os.listdir(jobs))
    huge = train(width=4096, height=4096, preset="paper", model_width=1.0)
    bl.result(
        stage="too_big",
        op=huge,
        new_jobs=sorted(set(os.listdir(jobs)) - set(jobs_before)),
        panel=panel_labels("FSGAN_PT_training"),
    )

    # -- 8K frames: training runs at the configured resolution --------------------------------
    big = bl.add_image_strip("big", args.big_frames, 3, channel=5)
    se.active_strip = big
    source_panel = panel_labels("FSGAN_PT_source")
    op = train(steps=1)
    big_ckpt = addon.strips.checkpoint_of(big)
    _, meta = safetensors_ok(big_ckpt) if big_ckpt else (None, {})
    bl.result(
        stage="big",
        op=op,
        source_panel=source_panel,
        model_config=json.loads(meta.get("model_config", "{}")),
        train_config=json.loads(meta.get("train_config", "{}")),
        estimate=addon.operators.last_estimate(),
        panel=panel_labels("FSGAN_PT_training"),
    )
    # Fit Strip Aspect: the configured resolution's pixels at the strip's aspect; Optical Flow
    # Guidance reaches the worker as the flow term's weight
    op = train(steps=1, fit_aspect=True, flow_guidance=True)
    _, meta = safetensors_ok(addon.strips.checkpoint_of(big))
    bl.result(
        stage="big_fitted",
        op=op,
        model_config=json.loads(meta.get("model_config", "{}")),
        train_config=json.loads(meta.get("train_config", "{}")),
        estimate=addon.operators.last_estimate(),
    )


bl.run(main)
