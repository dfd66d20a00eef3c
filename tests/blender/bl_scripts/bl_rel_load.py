"""Back-to-back Extend jobs through the real operator: no processes, file handles, threads or
memory left behind. Prints one RESULT per job with this (Blender) process's RSS and open fds.

Used by tests/blender/test_reliability.py (a few jobs) and bench/load.py (100 jobs).
"""

import os
import sys
import threading
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children():
    out = []
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            out.append((int(pid), fields[0]))  # zombies count too: nobody reaped them
    return out


def snapshot():
    return {
        "rss": rss_bytes(),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "children": children(),
    }


def main():
    p = bl.parser()
    p.add_argument("--jobs", type=int, default=10)
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    bl.load_addon(args)
    scene = bpy.context.scene
    s = scene.fsgan
    s.batch_size = 2
    s.preview_every = 0
    s.output_dir = os.path.join(args.work, "out")
    s.model_dir = os.path.join(args.work, "models")
    source = bl.add_image_strip("walk", args.frames, 16)
    scene.sequence_editor.active_strip = source
    op = bl.call_op(bpy.ops.fsgan.train_on_strip, steps=1, width=32, height=32,
                    model_width=0.125, device="cpu")  # fmt: skip
    assert op["ret"] == ["FINISHED"], op
    bl.result(stage="start", **snapshot())
    t0 = time.monotonic()
    for i in range(args.jobs):
        t = time.monotonic()
        op = bl.call_op(bpy.ops.fsgan.extend_animation, count=1)
        assert op["ret"] == ["FINISHED"], op
        new = scene.sequence_editor.active_strip
        assert new.name != "walk"
        bl.top_strips().remove(new)  # keep the scene as it was: measure leaks, not data
        scene.sequence_editor.active_strip = bl.top_strips()["walk"]
        bl.result(stage="job", i=i, seconds=time.monotonic() - t, **snapshot())
    bl.result(stage="end", seconds=time.monotonic() - t0, jobs=args.jobs,
              files=len(os.listdir(os.path.join(args.work, "out", "walk"))), **snapshot())  # fmt: skip


bl.run(main)
