"""Bad input reaches the user as one clear ERROR report (a RuntimeError in bpy), never a crash."""

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def train(**kw):
    return bl.call_op(bpy.ops.fsgan.train_on_strip, steps=2, width=32, height=32,
                      model_width=0.125, device="cpu", **kw)  # fmt: skip


def main():
    p = bl.parser()
    p.add_argument("--no-torch-python", required=True)
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    bl.load_addon(args)
    scene = bpy.context.scene
    scene.fsgan.batch_size = 2
    se = scene.sequence_editor_create()

    good = bl.add_image_strip("good", args.frames, 16)
    se.active_strip = good
    os.environ["FSGAN_PYTHON"] = os.path.join(args.work, "no such python")
    bl.result(stage="bad_python", op=train())
    os.environ["FSGAN_PYTHON"] = args.no_torch_python
    bl.result(stage="no_torch", op=train())
    os.environ.pop("FSGAN_PYTHON")
    if os.environ.get("FSGAN_TEST_WORKER_PYTHON"):
        os.environ["FSGAN_PYTHON"] = os.environ["FSGAN_TEST_WORKER_PYTHON"]

    missing_dir = os.path.join(args.work, "gone")
    os.makedirs(missing_dir)
    with open(os.path.join(missing_dir, "frame_0001.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")  # truncated: not an image
    gone = bl.add_image_strip("gone", missing_dir, 5, channel=2)
    se.active_strip = gone
    missing = train()

    garbage = os.path.join(args.work, "garbage")
    os.makedirs(garbage)
    for i in range(1, 4):
        with open(os.path.join(garbage, f"frame_{i:04d}.png"), "wb") as f:
            f.write(b"this is not a PNG file")
    bad = bl.add_image_strip("bad", garbage, 3, channel=3)
    se.active_strip = bad
    bl.result(
        stage="frames",
        missing=missing,
        garbage=train(),
        checkpoint_set=[s.name for s in bl.top_strips() if s.get("fsgan_checkpoint")],
    )

    # Extend with no free channel for the new strip (the source on the top channel): refused
    # before any worker starts, so nothing is generated for nothing.
    top = bl.add_image_strip("top", args.frames, 10, channel=128, frame_start=200)
    model = os.path.join(args.work, "model.safetensors")
    with open(model, "wb") as f:
        f.write(b"not read: refused before the worker")
    top["fsgan_checkpoint"] = model
    se.active_strip = top
    scene.fsgan.output_dir = os.path.join(args.work, "out")
    scene.frame_current = 204
    op = bl.call_op(bpy.ops.fsgan.extend_animation, count=3, start="PLAYHEAD")
    out = os.path.join(args.work, "out", "top")
    bl.result(
        stage="no_channel", op=op, files=sorted(os.listdir(out)) if os.path.isdir(out) else []
    )


bl.run(main)
