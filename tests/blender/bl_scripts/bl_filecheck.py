"""filecheck.py against frame files real Blender writes: whole files pass, and files cut short
are refused, with a reason."""

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402

# (extension, image_settings) of formats Blender writes and the worker does not read.
FORMATS = {
    "exr_none": (".exr", {"file_format": "OPEN_EXR", "exr_codec": "NONE"}),
    "exr_zip": (".exr", {"file_format": "OPEN_EXR", "exr_codec": "ZIP"}),
    "exr_zips": (".exr", {"file_format": "OPEN_EXR", "exr_codec": "ZIPS"}),
    "exr_piz": (".exr", {"file_format": "OPEN_EXR", "exr_codec": "PIZ"}),
    "exr_dwaa": (".exr", {"file_format": "OPEN_EXR", "exr_codec": "DWAA", "color_depth": "16"}),
    "dpx": (".dpx", {"file_format": "DPX"}),
    "cineon": (".cin", {"file_format": "CINEON"}),
    "hdr": (".hdr", {"file_format": "HDR"}),
    "jp2": (".jp2", {"file_format": "JPEG2000", "jpeg2k_codec": "JP2"}),
}


def write(scene, path: str, settings: dict) -> None:
    image = bpy.data.images.new("gradient", 64, 36, float_buffer=True)
    image.pixels.foreach_set([((i // 4) % 64) / 64.0 for i in range(64 * 36 * 4)])
    for key, value in settings.items():
        setattr(scene.render.image_settings, key, value)
    image.save_render(path, scene=scene)
    bpy.data.images.remove(image)


def loads(path: str) -> bool:
    """What Blender says: the ground truth the header checks are held to."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        return tuple(image.size) != (0, 0)
    finally:
        bpy.data.images.remove(image)


def main():
    args = bl.parser().parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    check = addon.filecheck.damage
    scene = bpy.context.scene
    if hasattr(scene.render.image_settings, "media_type"):  # 5.0
        scene.render.image_settings.media_type = "IMAGE"
    out = {}
    for name, (ext, settings) in FORMATS.items():
        path = os.path.join(args.work, name + ext)
        write(scene, path, settings)
        whole = open(path, "rb").read()
        cases = {"whole": check(path, loads), "whole_loads": loads(path)}
        for cut in ("half", "last_byte"):
            damaged = os.path.join(args.work, f"{name}_{cut}{ext}")
            with open(damaged, "wb") as f:
                f.write(whole[: len(whole) // 2] if cut == "half" else whole[:-1])
            cases[cut] = check(damaged, loads)
            # Blender 5.0.1 crashes loading some cut EXR files: load only what passed the check.
            cases[cut + "_loads"] = loads(damaged) if cases[cut] is None else None
        out[name] = cases
    empty = os.path.join(args.work, "empty.exr")
    open(empty, "wb").close()
    renamed = os.path.join(args.work, "renamed.dpx")
    with open(renamed, "wb") as f:
        f.write(open(os.path.join(args.work, "exr_zip.exr"), "rb").read())
    bl.result(
        stage="formats",
        formats=out,
        empty=check(empty),
        renamed=check(renamed),
        header_only={
            name: check(os.path.join(args.work, f"{name}_half{ext}"))
            for name, (ext, _) in FORMATS.items()
        },
        missing=check(os.path.join(args.work, "nowhere.exr")),
        png=check(os.path.join(args.frames, "frame_0001.png")),
    )


bl.run(main)
