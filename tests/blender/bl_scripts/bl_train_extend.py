"""Install the extension zip, train on a 16-frame strip, extend it, undo, save, reopen, extend.

Run by tests/blender/test_train_extend.py inside real bpy.
"""

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def main():
    p = bl.parser()
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--looped", help="folder of frame_0001.png ... that repeat a 7-frame cycle")
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:])
    addon = bl.load_addon(args)
    scene = bpy.context.scene
    scene.fsgan.batch_size = 2
    scene.fsgan.preview_every = 2
    scene.fsgan.output_dir = os.path.join(args.work, "generated")
    scene.frame_end = 16  # the scene ends with the source strip
    scene.use_preview_range = True  # and so does the preview range
    scene.frame_preview_start, scene.frame_preview_end = 5, 16

    source = bl.add_image_strip("walk", args.frames, 16, channel=1, frame_start=1)
    source.colorspace_settings.name = "Non-Color"
    source.blend_alpha = 0.75  # the generated strip takes the look: opacity and modifiers
    bl.add_modifier(addon.strips, source, "Grade", "CURVES").mute = True
    # Obstacles: channel 1 is taken right after the strip, channel 2 a little later.
    bl.add_color_strip("block1", 1, 17, 40)
    bl.add_color_strip("block2", 2, 20, 22)
    scene.sequence_editor.active_strip = source

    train = bl.call_op(
        bpy.ops.fsgan.train_on_strip,
        steps=args.steps,
        width=64,
        height=36,
        model_width=0.125,
        device="cpu",
    )
    source = bl.top_strips()["walk"]
    panel = bl.draw_panel(bpy.types.FSGAN_PT_training)
    labels = [e.get("text", "") for e in panel if e["call"] == "label"]
    bl.result(stage="train", op=train, source=bl.describe(source), labels=labels)

    # In the UI the panel shows the estimate the worker reports in its `started` event (no
    # second torch import in Blender's process tree, no GPU memory taken beside the worker's).
    ops, wc = addon.operators, addon.worker_client
    ops._estimate = None
    job = wc.WorkerJob({"kind": "train"}, args.work, "python", args.work, label="walk")
    memory = {"total_bytes": 3 * 2**30, "available_bytes": 12 * 2**30, "device": "cuda"}
    job.apply({"event": "started", "device": "cuda:0", "memory": memory})
    wc.set_current(job)
    running = [e.get("text", "") for e in bl.draw_panel(bpy.types.FSGAN_PT_training)]
    wc.set_current(None)
    bl.result(stage="estimate_from_worker", labels=running)

    # Use Checkpoint File...: a file that is no checkpoint is refused; the strip keeps its model.
    trained = source["fsgan_checkpoint"]
    other = os.path.join(args.work, "other.safetensors")
    header = b'{"__metadata__": {"format": "someone-else"}}'
    with open(other, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
    text = os.path.join(args.work, "notes.safetensors")
    with open(text, "w") as f:
        f.write("not a checkpoint")
    refused = [bl.call_op(bpy.ops.fsgan.set_checkpoint, filepath=p) for p in (other, text)]
    kept = source["fsgan_checkpoint"] == trained
    again = bl.call_op(bpy.ops.fsgan.set_checkpoint, filepath=bpy.path.abspath(trained))
    bl.result(stage="use_checkpoint", refused=refused, kept=kept, again=again)

    bpy.ops.ed.undo_push(message="before extend")
    extend = bl.call_op(bpy.ops.fsgan.extend_animation, "EXEC_DEFAULT", True, count=8)
    bl.result(
        stage="extend",
        op=extend,
        strips=[bl.describe(s) for s in bl.top_strips()],
        active=scene.sequence_editor.active_strip.name,
        torch_imported="torch" in sys.modules,
        frame_end=scene.frame_end,
        preview=[scene.frame_preview_start, scene.frame_preview_end],
    )

    bpy.ops.ed.undo()
    scene = bpy.context.scene
    bl.result(stage="undo", strips=[s.name for s in bl.top_strips()], frame_end=scene.frame_end)

    blend = os.path.join(args.work, "saved.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    bpy.ops.wm.open_mainfile(filepath=blend)
    scene = bpy.context.scene
    source = bl.top_strips()["walk"]
    reopened = bl.describe(source)
    scene.sequence_editor.active_strip = source
    scene.fsgan.fit_scene_range = False  # the scene's range is left alone
    scene.fsgan.device = "cuda"  # no GPU here: the operator's device (as scripts pass it) wins
    again = bl.call_op(bpy.ops.fsgan.extend_animation, count=3, device="cpu")
    scene.fsgan.device = "auto"
    bl.result(
        stage="reopen",
        frame_end=scene.frame_end,
        source=reopened,
        op=again,
        strips=[bl.describe(s) for s in bl.top_strips()],
        torch_imported="torch" in sys.modules,
    )

    # Continue Training on the generated strip, which shares its source's model: it trains a
    # copy, and the source's model stays as it was.
    model = bpy.path.abspath(source["fsgan_checkpoint"])
    before = open(model, "rb").read()
    generated = scene.sequence_editor.active_strip
    scene.fsgan.resume = True
    # Refused before it starts (far too big a batch for this machine): no copy is left over.
    models = sorted(os.listdir(os.path.dirname(model)))
    scene.fsgan.batch_size = 10_000_000
    too_big = bl.call_op(
        bpy.ops.fsgan.train_on_strip, steps=6, width=64, height=36, model_width=0.125,
        device="cpu",
    )  # fmt: skip
    scene.fsgan.batch_size = 2
    left_over = sorted(os.listdir(os.path.dirname(model))) != models
    resumed = bl.call_op(  # steps: the total to reach (the model has 4)
        bpy.ops.fsgan.train_on_strip, steps=6, width=64, height=36, model_width=0.125,
        device="cpu",
    )  # fmt: skip
    scene.fsgan.resume = False
    bl.result(
        stage="resume_shared",
        too_big=too_big,
        left_over=left_over,
        op=resumed,
        source_model_unchanged=open(model, "rb").read() == before,
        source=bl.describe(source),
        generated=bl.describe(generated),
        labels=[
            e.get("text", "")
            for e in bl.draw_panel(bpy.types.FSGAN_PT_training)
            if e["call"] == "label"
        ],
    )

    meta_stage(addon, scene, model, args)
    loop_stage(addon, scene, model, args)
    # The deprecation watcher works: an old name read from the add-on's code raises where this
    # Blender deprecates it (5.2+).
    bl.result(
        stage="deprecation_probe", **bl.deprecation_probe(addon.strips, bl.top_strips()["walk"])
    )


def loop_stage(addon, scene, model, args):
    """Extend a strip that repeats a cycle: with Continue Loops (the default) the new strip
    repeats it; with it off, the model generates."""

    def extend_from(strip, **kw):
        for s in addon.strips.all_strips(scene.sequence_editor):
            s.select = False
        strip.select = True
        scene.sequence_editor.active_strip = strip
        op = bl.call_op(bpy.ops.fsgan.extend_animation, device="cpu", **kw)
        new = scene.sequence_editor.active_strip
        folder = bpy.path.abspath(new.directory)
        return op, [os.path.join(folder, e.filename) for e in new.elements]

    cycle = bl.add_image_strip("cycle", args.looped, 21, channel=20, frame_start=600)
    addon.strips.set_checkpoint(cycle, model)
    looped, looped_files = extend_from(cycle, count=9)
    scene.fsgan.continue_loops = False
    model_op, model_files = extend_from(cycle, count=2)
    # a Motion Gain set on the operator alone: the model's motion as trained, not calibrated
    given_op, given_files = extend_from(cycle, count=1, motion_gain=1.0)
    scene.fsgan.continue_loops = True
    bl.result(stage="loop", looped=looped, looped_files=looped_files, model=model_op,
              model_files=model_files, given=given_op, given_files=given_files)  # fmt: skip


def make_meta(addon, name, frames, channel, start, count=16):
    """A meta strip holding one image strip of ``count`` frames, showing exactly them."""
    top = bl.top_strips()
    inner = bl.add_image_strip(f"{name}_plate", frames, count, channel=1, frame_start=start)
    meta = top.new_meta(name, channel, start)
    inner.move_to_meta(meta)
    addon.strips.put(meta, "right_handle", start + count)
    return meta, bl.strips_of(meta)[f"{name}_plate"]


def meta_stage(addon, scene, model, args):
    """Extend a strip inside a meta: the meta grows to show the new frames; where growing would
    overlap the next strip, it stays and a warning says so."""
    out = {}
    for name, start, blocked in (("grows", 300, False), ("blocked", 400, True)):
        meta, plate = make_meta(addon, name, args.frames, 10, start)
        if blocked:
            bl.add_color_strip(f"{name}_next", 10, start + 16, start + 40)
        addon.strips.set_checkpoint(plate, model)
        for s in addon.strips.all_strips(scene.sequence_editor):
            s.select = False
        scene.sequence_editor.active_strip = plate
        op = bl.call_op(bpy.ops.fsgan.extend_animation, count=3, device="cpu")
        new = scene.sequence_editor.active_strip
        shown = bl.render(scene, start + 17, os.path.join(args.work, f"{name}_new"))
        meta.mute = True
        muted = bl.render(scene, start + 17, os.path.join(args.work, f"{name}_muted"))
        meta.mute = False
        out[name] = {
            "op": op,
            "new": [new.name, *bl.handles(new)],
            "in_meta": new.name in [s.name for s in bl.strips_of(meta)],
            "meta": [*bl.handles(meta), meta.channel],
            "shown_vs_muted": round(float(abs(shown - muted).mean() * 255), 3),
        }
    bl.result(stage="meta", **out)


bl.run(main)
