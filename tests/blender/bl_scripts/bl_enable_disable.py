"""Install the extension, then disable and enable it twice; report what is registered."""

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402

CLASSES = (
    "FSGAN_OT_train_on_strip",
    "FSGAN_OT_extend_animation",
    "FSGAN_OT_cancel_job",
    "FSGAN_PT_main",
    "FSGAN_PT_source",
    "FSGAN_PT_training",
    "FSGAN_OT_set_checkpoint",
    "FSGAN_PT_extend",
    "FSGAN_PT_training_advanced",
    "FSGAN_MT_strip",
)
MENUS = ("SEQUENCER_MT_strip", "SEQUENCER_MT_context_menu")


def snapshot():
    header = bpy.types.STATUSBAR_HT_header
    draw_funcs = getattr(header.draw, "_draw_funcs", [])
    return {
        "enabled": bl.MODULE in bpy.context.preferences.addons,
        "scene_prop": hasattr(bpy.types.Scene, "fsgan"),
        "classes": [c for c in CLASSES if hasattr(bpy.types, c)],
        "status_draws": sum(1 for f in draw_funcs if f.__name__ == "draw_status"),
        "menu_entries": {
            m: sum(
                1
                for f in getattr(getattr(bpy.types, m).draw, "_draw_funcs", [])
                if f.__name__ == "draw_entry"
            )
            for m in MENUS
        },
        "load_pre": sum(1 for h in bpy.app.handlers.load_pre if h.__name__ == "_on_load_pre"),
        "prefs": bool(bpy.context.preferences.addons.get(bl.MODULE))
        and hasattr(bpy.context.preferences.addons[bl.MODULE].preferences, "python_path"),
    }


def main():
    args = bl.parser().parse_args(sys.argv[sys.argv.index("--") + 1 :])
    bl.install(args.zip)
    settings = bpy.context.scene.fsgan
    train = bpy.ops.fsgan.train_on_strip.get_rna_type().properties
    bl.result(
        stage="installed",
        **snapshot(),
        settings_steps=settings.steps,
        # the panel's limits and the operator's own defaults (a script's call without them)
        limits={
            "steps": settings.steps,
            "minutes": round(settings.minutes, 4),
            "fit_aspect": settings.fit_aspect,
            "flow_guidance": settings.flow_guidance,
        },
        operator_limits={
            "steps": train["steps"].default,
            "minutes": round(train["minutes"].default, 4),
            "fit_aspect": train["fit_aspect"].default,
            "flow_guidance": train["flow_guidance"].default,
        },
    )
    for i in range(2):
        assert bpy.ops.preferences.addon_disable(module=bl.MODULE) == {"FINISHED"}
        bl.result(stage=f"disabled{i}", **snapshot())
        assert bpy.ops.preferences.addon_enable(module=bl.MODULE) == {"FINISHED"}
        bl.result(stage=f"enabled{i}", **snapshot(), settings_steps=bpy.context.scene.fsgan.steps)


bl.run(main)
