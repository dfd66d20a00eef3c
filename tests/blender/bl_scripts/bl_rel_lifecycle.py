"""A job running while Blender reloads its file, quits, or is killed: the worker always ends.

Stages (``--mode``):
- ``reload``: open a .blend while training runs (the load_pre handler stops the worker, which
  saves a valid checkpoint, and the reopened file's strip gets that checkpoint), then start
  another job and end the process normally (Blender quitting: the atexit hook stops that worker
  too, and records its checkpoint for the strip).
- ``reopen``: open the file that ``reload`` saved under another name while its last job ran:
  the strip gets the checkpoint of the job that Blender's quit stopped; saving ends the record.
  Then a job in a file never saved, stopped by a load: the panel says where its model is.
- ``killed``: start a job in a saved file, report the worker's pid, then wait to be SIGKILLed
  by the test; the worker notices its stdin closing (``--parent-watch``), saves and ends.
- ``reopen_killed``: open that file again: the strip gets what the killed run saved (the
  record its Blender wrote when the job started).
"""

import json
import os
import shutil
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


def records(addon):
    path = os.path.join(addon.paths.user_dir(""), addon.interrupted.RECORD_NAME)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [(e["strip"], os.path.basename(e["checkpoint"])) for e in json.load(f)]


def state(addon, **facts):
    strip = bl.top_strips().get("walk")
    outcome = addon.operators.last_outcome()
    panel = bl.draw_panel(addon.panels.FSGAN_PT_training)
    bl.result(
        checkpoint_now=bl.describe(strip)["checkpoint"] if strip else None,
        outcome=outcome,
        panel=[e.get("text") for e in panel if e.get("call") == "label"],
        records=records(addon),
        **facts,
    )


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
    addon.interrupted.begin(job, addon.interrupted.target(bpy.context.scene, strip))  # as Train
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
    p.add_argument("--mode", choices=("reload", "killed", "reopen", "reopen_killed"),
                   required=True)  # fmt: skip
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    blend = os.path.join(args.work, "scene.blend")
    renamed = os.path.join(args.work, "renamed.blend")
    if args.mode == "reopen":
        bpy.ops.wm.open_mainfile(filepath=renamed)
        state(addon, stage="reopened")
        bpy.ops.wm.save_mainfile()
        state(addon, stage="reopened_saved")
        # A file never saved: nothing to attach to later; the panel names the checkpoint.
        bpy.ops.wm.read_homefile(use_empty=True)
        strip = bl.add_image_strip("walk", args.frames, 16)
        start_job(addon, strip, args.work, "untitled")
        bpy.ops.wm.open_mainfile(filepath=renamed)
        state(addon, stage="untitled")
        return
    if args.mode == "reopen_killed":
        bpy.ops.wm.open_mainfile(filepath=os.path.join(args.work, "killed.blend"))
        state(addon, stage="reopened")
        return
    scene = bpy.context.scene
    strip = bl.add_image_strip("walk", args.frames, 16)
    scene.sequence_editor.active_strip = strip

    if args.mode == "killed":
        bpy.ops.wm.save_as_mainfile(filepath=os.path.join(args.work, "killed.blend"))
        job = start_job(addon, strip, args.work, "killed")
        bl.result(stage="running", pid=job.proc.pid, checkpoint=job.job["checkpoint"])
        time.sleep(600)  # the test kills this process long before
        return

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
    state(addon, stage="reattached")
    # Declined: the strip set back to no model and the file saved: the next load leaves it so.
    del bl.top_strips()["walk"][addon.paths.CHECKPOINT_KEY]
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=blend)
    state(addon, stage="declined")
    # Another model chosen (and saved) after a run stopped with the file open (as disabling the
    # add-on does): the next load keeps that model and drops the record.
    strip = bl.top_strips()["walk"]
    job = start_job(addon, strip, args.work, "stopped_open")
    addon.operators.stop_jobs()
    other = os.path.join(args.work, "other.safetensors")
    shutil.copyfile(job.job["checkpoint"], other)
    addon.strips.set_checkpoint(strip, other)
    bpy.ops.wm.save_mainfile()
    state(addon, stage="other_saved")
    bpy.ops.wm.open_mainfile(filepath=blend)
    state(addon, stage="other_kept")

    strip = bl.top_strips()["walk"]
    job = start_job(addon, strip, args.work, "quit")
    bpy.ops.wm.save_as_mainfile(filepath=renamed)  # Save As mid-run: the strip's new home
    bl.result(stage="quitting", pid=job.proc.pid, checkpoint=job.job["checkpoint"])


if sys.argv[sys.argv.index("--mode") + 1] != "reload":
    bl.run(main)
try:
    main()
except BaseException:
    import traceback

    traceback.print_exc()
    bl.finish(1)
# No bl.finish(): end as Blender quits, through the interpreter's normal exit, which runs the
# add-on's atexit hook (operators.stop_jobs).
sys.stdout.flush()
