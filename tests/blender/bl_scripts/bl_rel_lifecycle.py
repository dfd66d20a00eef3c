"""A job running while Blender reloads its file, quits, or is killed: the worker always ends.

Stages (``--mode``):
- ``reload``: open a .blend while training runs (the load_pre handler stops the worker, which
  saves a valid checkpoint), then start another job and end the process normally (Blender
  quitting: the atexit hook stops that worker too).
- ``killed``: start a job, report the worker's pid, then wait to be SIGKILLed by the test; the
  worker notices its stdin closing (``--parent-watch``) and ends by itself.
"""

import os
import sys
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def children():
    """Live (not zombie) child processes of this process."""
    out = []
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            out.append(int(pid))
    return out


def start_job(addon, strip, work, name):
    wc = addon.worker_client
    job_dir = os.path.join(work, f"job-{name}")
    job = wc.WorkerJob(
        wc.make_job(
            "train",
            addon.strips.visible_frame_paths(strip),
            os.path.join(work, f"{name}.safetensors"),
            train={
                "steps": 100000,
                "width": 32,
                "height": 32,
                "width_mult": 0.125,
                "batch_size": 2,
                "device": "cpu",
            },  # fmt: skip
            cancel_file=os.path.join(job_dir, "cancel"),
        ),
        job_dir,
        addon.preferences.resolve_python(addon.preferences.get())[0],
        addon.worker_client.find_core_parent(addon.preferences.addon_dir()),
        label=strip.name,
    )
    job.start()
    wc.set_current(job)
    deadline = time.monotonic() + 300
    while job.state.step < 1:
        job.poll()
        assert not job.finished, job.failure_message()
        assert time.monotonic() < deadline, "no progress from the worker"
        time.sleep(0.1)
    return job


def main():
    p = bl.parser()
    p.add_argument("--mode", choices=("reload", "killed"), required=True)
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    scene = bpy.context.scene
    strip = bl.add_image_strip("walk", args.frames, 16)
    scene.sequence_editor.active_strip = strip

    if args.mode == "killed":
        job = start_job(addon, strip, args.work, "killed")
        bl.result(stage="running", pid=job.proc.pid, checkpoint=job.job["checkpoint"])
        time.sleep(600)  # the test kills this process long before
        return

    blend = os.path.join(args.work, "scene.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    job = start_job(addon, strip, args.work, "reload")
    t0 = time.monotonic()
    bpy.ops.wm.open_mainfile(filepath=blend)
    seconds = time.monotonic() - t0
    job.poll()
    job.close()
    bl.result(
        stage="reloaded",
        seconds=seconds,
        returncode=job.returncode,
        done=job.state.done,
        checkpoint=job.job["checkpoint"],
        current=addon.worker_client.current() is not None,
        children=children(),
        strips=[s.name for s in bl.top_strips()],
    )

    strip = bl.top_strips()["walk"]
    job = start_job(addon, strip, args.work, "quit")
    bl.result(stage="quitting", pid=job.proc.pid, checkpoint=job.job["checkpoint"])


if sys.argv[sys.argv.index("--mode") + 1] == "killed":
    bl.run(main)
try:
    main()
except BaseException:
    import traceback

    traceback.print_exc()
    bl.finish(1)
# No bl.finish(): end as Blender quits, through the interpreter's normal exit, which runs the
# add-on's atexit hook (worker_client.stop_all).
sys.stdout.flush()
