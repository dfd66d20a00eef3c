"""Helpers for the scripts that the Blender tests run inside real bpy (in a subprocess).

Each script prints ``RESULT <json>`` lines that the pytest side parses and asserts on, and ends
with ``finish()``: importing bpy can hang at interpreter exit, so the process exits hard.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings

import bpy
import numpy as np

MODULE = "bl_ext.user_default.fsgan_blender"
# "error" (the tests set it): a DeprecationWarning from the add-on's own code is recorded, raised
# as an error where it happens, and listed in a last RESULT line that the tests check.
DEPRECATIONS = "FSGAN_ADDON_DEPRECATIONS"
_deprecations: list[str] = []


def _watch_deprecations() -> None:
    """Blender 5.2+ warns when Python reads or writes a deprecated RNA property (a
    DeprecationWarning from C, attributed to the calling line, so to the add-on's module and
    file). Python ignores those outside ``__main__``: show them for the add-on's modules, and
    turn them into errors."""
    if os.environ.get(DEPRECATIONS) != "error":
        return
    warnings.filterwarnings(
        "always", category=DeprecationWarning, module=r"(.+\.)?fsgan_blender(\..+)?$"
    )
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DeprecationWarning) and _in_addon(filename):
            _deprecations.append(f"{filename}:{lineno}: {message}")
            raise category(f"{message} ({filename}:{lineno})")
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


def _in_addon(filename: str) -> bool:
    return f"{os.sep}fsgan_blender{os.sep}" in os.path.abspath(filename)


_watch_deprecations()


def deprecation_probe(module, strip) -> dict:
    """Read ``strip.frame_final_start`` as code of ``module`` (one of the add-on's) would: where
    this Blender deprecates it, the watcher must raise. The probe's record is then dropped."""
    prop = strip.bl_rna.properties["frame_final_start"]
    deprecated = bool(getattr(prop, "is_deprecated", False))
    code = compile("strip.frame_final_start", module.__file__, "eval")
    before = len(_deprecations)
    try:
        eval(code, dict(vars(module), strip=strip))  # noqa: S307 - a fixed expression
        raised = None
    except Exception as exc:  # bpy may wrap the raised warning in its own error (its cause)
        raised = " <- ".join(f"{type(e).__name__}: {e}" for e in (exc, exc.__cause__) if e)
    recorded = _deprecations[before:]
    del _deprecations[before:]
    return {"deprecated": deprecated, "raised": raised, "recorded": recorded,
            "watching": os.environ.get(DEPRECATIONS) == "error"}  # fmt: skip


def handles(strip) -> list[int]:
    """[first frame shown, frame after the last one] (``left_handle``/``right_handle`` from
    Blender 5.2 on, ``frame_final_start/end`` before)."""
    if "left_handle" in strip.bl_rna.properties:
        return [strip.left_handle, strip.right_handle]
    return [strip.frame_final_start, strip.frame_final_end]


def result(**facts) -> None:
    print("RESULT " + json.dumps(facts, default=str), flush=True)


def finish(code: int = 0) -> None:
    if os.environ.get(DEPRECATIONS) == "error":
        result(stage="addon_deprecations", warnings=_deprecations)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(main) -> None:
    """Run ``main()``; a Python error anywhere fails the test with its traceback."""
    try:
        main()
    except BaseException:
        traceback.print_exc()
        finish(1)
    finish(0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--zip", default=None, help="install this extension zip")
    p.add_argument("--source", default=None, help="register fsgan_blender from this source tree")
    p.add_argument("--frames", default=None, help="folder of frame_0001.png ...")
    p.add_argument("--work", default=None, help="a scratch folder")
    return p


def install(zip_path: str):
    """Install and enable the extension zip the way a user does; return the add-on module."""
    ret = bpy.ops.extensions.package_install_files(
        filepath=os.path.abspath(zip_path), repo="user_default", enable_on_install=True
    )
    assert ret == {"FINISHED"}, ret
    assert MODULE in bpy.context.preferences.addons, "the extension is not enabled"
    return sys.modules[MODULE]


def register_source(root: str):
    sys.path.insert(0, root)
    import fsgan_blender

    fsgan_blender.register()
    return fsgan_blender


def load_addon(args):
    if args.zip:
        return install(args.zip)
    return register_source(args.source)


def strips_of(container):
    return container.strips if hasattr(container, "strips") else container.sequences


def top_strips(scene=None):
    scene = scene or bpy.context.scene
    return strips_of(scene.sequence_editor_create())


def add_image_strip(name, folder, count, channel=1, frame_start=1, prefix="frame_"):
    first = os.path.join(folder, f"{prefix}0001.png")
    strip = top_strips().new_image(name, first, channel, frame_start)
    for i in range(2, count + 1):
        strip.elements.append(f"{prefix}{i:04d}.png")
    return strip


def add_color_strip(name, channel, start, end):
    """A colour strip covering frames [start, end) (5.0 takes a length, 4.x a frame_end)."""
    if bpy.app.version >= (5, 0, 0):
        return top_strips().new_effect(name, "COLOR", channel, start, length=end - start)
    return top_strips().new_effect(name, "COLOR", channel, start, frame_end=end)


def describe(strip) -> dict:
    return {
        "name": strip.name,
        "type": strip.type,
        "channel": strip.channel,
        "start": handles(strip)[0],
        "end": handles(strip)[1],
        "directory": bpy.path.abspath(strip.directory) if strip.type == "IMAGE" else None,
        "files": [e.filename for e in strip.elements] if strip.type == "IMAGE" else None,
        "checkpoint": os.path.normpath(bpy.path.abspath(strip["fsgan_checkpoint"]))
        if strip.get("fsgan_checkpoint")
        else None,
        "checkpoint_stored": strip.get("fsgan_checkpoint"),
        "colorspace": strip.colorspace_settings.name if strip.type == "IMAGE" else None,
        "blend": [strip.blend_type, round(strip.blend_alpha, 4)],
        "modifiers": [[m.name, m.type, m.mute] for m in strip.modifiers],
    }


def add_modifier(strips_module, strip, name, kind):
    """``strip.modifiers.new`` with a sequencer scene set, as Blender 5.0 needs (the add-on's
    ``strips.use_sequencer_scene``)."""
    with strips_module.use_sequencer_scene(strip.id_data):
        return strip.modifiers.new(name=name, type=kind)


def call_op(op, *args, **kwargs) -> dict:
    """Run an operator; an ERROR report (RuntimeError in bpy) becomes a dict, not a crash."""
    try:
        return {"ret": sorted(op(*args, **kwargs)), "error": None}
    except RuntimeError as exc:
        return {"ret": ["CANCELLED"], "error": str(exc)}


class RecordingLayout:
    """Stands in for ``UILayout`` in panel draw(): records every call, returns sub-layouts.

    This is the only fake in the tests: panels need a real region to draw into otherwise.
    """

    def __init__(self, log=None):
        self.__dict__["log"] = log if log is not None else []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            entry = {"call": name, "args": [repr(a) for a in args]}
            entry.update({k: v if isinstance(v, (str, int, float, bool)) else repr(v)
                          for k, v in kwargs.items()})  # fmt: skip
            if name == "prop" and len(args) >= 2:
                entry["prop"] = args[1]
                assert hasattr(args[0], args[1]), f"no property {args[1]!r} on {args[0]!r}"
            self.log.append(entry)
            return RecordingLayout(self.log)

        return call

    def __setattr__(self, name, value):
        self.log.append({"call": "set", "name": name, "value": repr(value)})


def draw_panel(panel_cls, context=None) -> list[dict]:
    layout = RecordingLayout()

    class Host:
        pass

    host = Host()
    host.layout = layout
    panel_cls.draw(host, context or bpy.context)
    return layout.log


def render(scene, frame: int, path: str) -> np.ndarray:
    """What ``scene``'s timeline shows at ``frame`` (sRGB, Standard view, no dither)."""
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 64, 36, 100
    r.dither_intensity = 0.0
    r.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"
    scene.frame_start = scene.frame_end = frame
    r.filepath = path + "_####"
    bpy.ops.render.render(animation=True, scene=scene.name)
    img = bpy.data.images.load(f"{path}_{frame:04d}.png", check_existing=False)
    a = np.empty(len(img.pixels), np.float32)
    img.pixels.foreach_get(a)
    bpy.data.images.remove(img)
    return a
