"""Draw every panel (against a recording layout) and call the operators' polls in each state."""

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402

PANELS = (
    "FSGAN_PT_main",
    "FSGAN_PT_source",
    "FSGAN_PT_training",
    "FSGAN_PT_training_advanced",
    "FSGAN_PT_extend",
)


def draw_all():
    out = {}
    for name in PANELS:
        log = bl.draw_panel(getattr(bpy.types, name))
        out[name] = {
            "labels": [e.get("text", "") for e in log if e["call"] == "label"],
            "props": [e["prop"] for e in log if e["call"] == "prop"],
            "operators": [e["args"][0].strip("'") for e in log if e["call"] == "operator"],
        }
    return out


def polls():
    """Poll messages, read without running anything: every state here fails both polls."""
    out = {}
    for name, op in (
        ("train", bpy.ops.fsgan.train_on_strip),
        ("extend", bpy.ops.fsgan.extend_animation),
    ):
        assert not op.poll(), f"{name} would run"
        out[name] = bl.call_op(op)["error"]
    return out


def main():
    args = bl.parser().parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    scene = bpy.context.scene

    bl.result(stage="no_editor", panels=draw_all(), polls=polls())

    color = bl.add_color_strip("flat", 2, 1, 20)
    scene.sequence_editor.active_strip = color
    bl.result(stage="color", panels=draw_all(), polls=polls())

    short = bl.add_image_strip("short", args.frames, 2, channel=3)
    scene.sequence_editor.active_strip = short
    bl.result(stage="short", panels=draw_all(), polls=polls())

    good = bl.add_image_strip("good", args.frames, 16, channel=4)
    scene.sequence_editor.active_strip = good
    assert bpy.ops.fsgan.train_on_strip.poll()
    assert not bpy.ops.fsgan.extend_animation.poll()
    extend_error = bl.call_op(bpy.ops.fsgan.extend_animation)["error"]
    bl.result(stage="usable", panels=draw_all(), polls={"extend": extend_error})

    # Strip > FrameSequenceGAN and the right-click menu: the submenu, and in it every
    # operator by an id Blender knows, invoked the UI way.
    hosts = {}
    for name in ("SEQUENCER_MT_strip", "SEQUENCER_MT_context_menu"):
        log = []
        for func in getattr(bpy.types, name).draw._draw_funcs:
            if func.__name__ == "draw_entry":
                host = type("Host", (), {})()
                host.layout = bl.RecordingLayout(log)
                func(host, bpy.context)
        hosts[name] = [e["args"] for e in log if e["call"] == "menu"]
    menu_log = bl.draw_panel(bpy.types.FSGAN_MT_strip)
    ids = [e["args"][0].strip("'") for e in menu_log if e["call"] == "operator"]
    bl.result(
        stage="menus",
        hosts=hosts,
        operators=ids,
        known=[hasattr(getattr(bpy.ops, i.split(".")[0]), i.split(".")[1]) for i in ids],
        polls={i: getattr(bpy.ops.fsgan, i.split(".")[1]).poll() for i in ids},
        context=[e["value"] for e in menu_log if e.get("name") == "operator_context"],
    )

    good["fsgan_checkpoint"] = os.path.join(args.work, "missing.safetensors")
    extend = bl.call_op(bpy.ops.fsgan.extend_animation, count=2)
    bl.result(stage="missing_checkpoint", panels=draw_all(), extend=extend)

    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    # prefs.layout only exists while Blender draws them: a host that reads the rest from prefs.
    host = type("Host", (), {"__getattr__": lambda _self, name: getattr(prefs, name)})()
    host.layout = bl.RecordingLayout()
    type(prefs).draw(host, bpy.context)
    log = host.layout.log
    bl.result(stage="prefs", labels=[e.get("text", "") for e in log if e["call"] == "label"])


bl.run(main)
