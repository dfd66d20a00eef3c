"""A real training job: progress in the panel and status bar, then Cancel keeps a checkpoint.

The UI path (a modal operator driven by window events) needs a window, which bpy-as-a-module
has not; this drives the same WorkerJob the modal operator uses and the real Cancel operator.
"""

import json
import os
import struct
import sys
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def main():
    args = bl.parser().parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    wc = addon.worker_client
    scene = bpy.context.scene
    strip = bl.add_image_strip("walk", args.frames, 16)
    scene.sequence_editor.active_strip = strip

    job_dir = os.path.join(args.work, "job")
    checkpoint = os.path.join(args.work, "model.safetensors")
    frames = addon.strips.visible_frame_paths(strip)
    job = wc.WorkerJob(
        wc.make_job(
            "train",
            frames,
            checkpoint,
            train={
                "steps": 5000,
                "width": 64,
                "height": 36,
                "width_mult": 0.125,
                "batch_size": 2,
                "device": "cpu",
                "preview_every": 1,
                "checkpoint_every": 100000,
            },  # fmt: skip
            preview_dir=os.path.join(job_dir, "previews"),
            cancel_file=os.path.join(job_dir, "cancel"),
        ),
        job_dir,
        addon.preferences.resolve_python(addon.preferences.get())[0],
        wc.find_core_parent(addon.preferences.addon_dir()),
        label=strip.name,
    )
    job.start()
    wc.set_current(job)
    deadline = time.monotonic() + 300
    while job.state.step < 2 or not job.state.sample_path:
        job.poll()
        assert not job.finished, job.failure_message()
        assert time.monotonic() < deadline, "no progress from the worker"
        time.sleep(0.2)

    training = bl.draw_panel(bpy.types.FSGAN_PT_training)
    host = type("Host", (), {})()
    host.layout = bl.RecordingLayout()
    addon.panels.draw_status(host, bpy.context)
    busy = bl.call_op(bpy.ops.fsgan.train_on_strip)
    bl.result(
        stage="running",
        calls=sorted({e["call"] for e in training}),
        operators=[e["args"][0].strip("'") for e in training if e["call"] == "operator"],
        progress=[e.get("text") for e in training if e["call"] == "progress"],
        status=[e.get("text") for e in host.layout.log if e["call"] == "progress"],
        busy=busy,
        sample=job.state.sample_path,
        previews=list(addon.panels._previews.keys()),
        preview_dir=os.path.join(job_dir, "previews"),
        labels=[e.get("text", "") for e in training if e["call"] == "label"],
    )

    cancel = bl.call_op(bpy.ops.fsgan.cancel_job)
    job.wait(timeout=300)
    wc.set_current(None)
    bl.result(
        stage="cancelled",
        cancel=cancel,
        done=job.state.done,
        failure=job.failure_message(),
        returncode=job.returncode,
        checkpoint_exists=os.path.isfile(checkpoint),
        metadata=safetensors_header(checkpoint).get("__metadata__", {}),
        leftovers=sorted(f for f in os.listdir(args.work) if f != "job"),
        cancel_poll=bpy.ops.fsgan.cancel_job.poll(),
    )


bl.run(main)
