"""Strips the operators refuse, each with its one-sentence reason in the poll and the panel.

Every kind of strip but image and movie, a movie whose file is missing, image strips of 1 and 2
frames, missing frame files (some, all) and a // folder in a .blend that is not saved yet. No
worker runs: these are polls and panels.
"""

import os
import shutil
import sys
import wave

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def reasons():
    """Poll messages of Train and Extend and the Source panel's labels for the active strip."""
    out = {}
    for name, op in (("train", bpy.ops.fsgan.train_on_strip),
                     ("extend", bpy.ops.fsgan.extend_animation)):  # fmt: skip
        out[name] = None if op.poll() else bl.call_op(op)["error"]
    log = bl.draw_panel(bpy.types.FSGAN_PT_source)
    out["panel"] = " ".join(e.get("text", "") for e in log if e["call"] == "label")
    return out


def effect(name, kind, channel, start, end):
    if bpy.app.version >= (5, 0, 0):
        return bl.top_strips().new_effect(name, kind, channel, start, length=end - start)
    return bl.top_strips().new_effect(name, kind, channel, start, frame_end=end)


def main():
    args = bl.parser().parse_args(sys.argv[sys.argv.index("--") + 1 :])
    bl.load_addon(args)
    scene = bpy.context.scene
    se = scene.sequence_editor_create()
    top = bl.top_strips()

    sound_file = os.path.join(args.work, "beep.wav")
    with wave.open(sound_file, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    other = bpy.data.scenes.new("Other")
    made = {
        "sound": lambda: top.new_sound("snd", sound_file, 1, 1),
        "color": lambda: effect("col", "COLOR", 2, 1, 10),
        "text": lambda: effect("txt", "TEXT", 3, 1, 10),
        "scene": lambda: top.new_scene("scn", other, 4, 1),
        "movie": lambda: top.new_movie("mov", os.path.join(args.work, "clip.mp4"), 5, 1),
        "meta": lambda: top.new_meta("met", 6, 1),
    }
    kinds = {}
    for kind, make in made.items():
        try:
            strip = make()
        except RuntimeError as exc:  # bpy 4.2 from PyPI is built without audio
            if kind == "sound" and "Audaspace" in str(exc):
                kinds[kind] = {"unavailable": str(exc)}
                continue
            raise
        se.active_strip = strip
        kinds[kind] = {"type": strip.type, **reasons()}
    bl.result(stage="kinds", kinds=kinds)

    counts = {}
    for n in (1, 2):
        strip = bl.add_image_strip(f"only{n}", args.frames, n, channel=6 + n, frame_start=100)
        se.active_strip = strip
        counts[n] = reasons()
    bl.result(stage="short", counts=counts)

    # Frame files missing: some of them (two runs), then all of them.
    folder = os.path.join(args.work, "holes")
    shutil.copytree(args.frames, folder)
    for i in (3, 4, 5, 9):
        os.remove(os.path.join(folder, f"frame_{i:04d}.png"))
    holes = bl.add_image_strip("holes", folder, 16, channel=10)
    se.active_strip = holes
    some = reasons()
    some["op"] = bl.call_op(bpy.ops.fsgan.train_on_strip, steps=1)
    gone = bl.add_image_strip("gone", os.path.join(args.work, "nowhere"), 6, channel=11)
    se.active_strip = gone
    bl.result(stage="missing", some=some, all=reasons())

    # A // folder in a .blend that was never saved resolves against no file: refused.
    rel = bl.add_image_strip("rel", args.frames, 16, channel=12)
    rel.directory = "//frames/"
    se.active_strip = rel
    unsaved = reasons()
    project = os.path.join(args.work, "project")
    shutil.copytree(args.frames, os.path.join(project, "frames"))
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(project, "scene.blend"))
    se = bpy.context.scene.sequence_editor
    se.active_strip = bl.top_strips()["rel"]
    bl.result(stage="relative", unsaved=unsaved, saved=reasons())


bl.run(main)
