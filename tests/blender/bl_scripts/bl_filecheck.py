"""filecheck.py against frame files real Blender writes: whole files pass, and files cut short
are refused, with a reason."""

import os
import struct
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
    "j2c": (".j2c", {"file_format": "JPEG2000", "jpeg2k_codec": "J2K"}),
}


def exr_with_big_header(src: str, dst: str, extra: int) -> None:
    """``src`` (a single-part scanline OpenEXR file) with a string attribute of ``extra``
    bytes added to its header, the chunk offsets moved to match: a valid file."""
    data = open(src, "rb").read()
    pos = 8
    while data[pos] != 0:  # name, type, size, value: until the empty name
        type_end = data.index(b"\0", data.index(b"\0", pos) + 1)
        size = struct.unpack("<i", data[type_end + 1 : type_end + 5])[0]
        pos = type_end + 5 + size
    attr = b"note\0string\0" + struct.pack("<i", extra) + b"x" * extra
    added = len(attr)
    table = pos + 1
    height = 36
    chunks = height // 16 + (height % 16 > 0)  # ZIP: 16 scanlines a chunk
    offsets = struct.unpack(f"<{chunks}Q", data[table : table + 8 * chunks])
    moved = struct.pack(f"<{chunks}Q", *(o + added for o in offsets))
    with open(dst, "wb") as f:
        f.write(data[:pos] + attr + b"\0" + moved + data[table + 8 * chunks :])


def patched(src: str, dst: str, at: int, value: bytes = b"", append: bytes = b"") -> str:
    data = bytearray(open(src, "rb").read())
    data[at : at + len(value)] = value
    with open(dst, "wb") as f:
        f.write(bytes(data) + append)
    return dst


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
    w = args.work
    not_dpx = os.path.join(w, "text.dpx")
    with open(not_dpx, "w") as f:
        f.write("not an image at all\n" * 20)
    png_half = os.path.join(w, "png_half.png")
    whole_png = open(os.path.join(args.frames, "frame_0001.png"), "rb").read()
    with open(png_half, "wb") as f:
        f.write(whole_png[: len(whole_png) // 2])
    big = os.path.join(w, "big_header.exr")
    exr_with_big_header(os.path.join(w, "exr_zip.exr"), big, 70_000)
    dpx_size = os.path.getsize(os.path.join(w, "dpx.dpx"))
    # Valid files the header checks alone would doubt; Blender reads them, so they pass.
    valid = {
        "big_exr_header": big,
        "exr_named_dpx": patched(os.path.join(w, "exr_zip.exr"), os.path.join(w, "exr.dpx"), 0),
        "dpx_size_undefined": patched(
            os.path.join(w, "dpx.dpx"), os.path.join(w, "undef.dpx"), 16, b"\xff" * 4
        ),
        "dpx_size_larger": patched(
            os.path.join(w, "dpx.dpx"),
            os.path.join(w, "larger.dpx"),
            16,
            struct.pack(">I", dpx_size + 1000),
        ),
        "j2c_padded": patched(
            os.path.join(w, "j2c.j2c"), os.path.join(w, "padded.j2c"), 0, append=b"\0" * 16
        ),
        "jp2_named_j2k": patched(os.path.join(w, "jp2.jp2"), os.path.join(w, "jp2.j2k"), 0),
    }
    bl.result(
        stage="formats",
        formats=out,
        empty=check(empty),
        not_dpx=check(not_dpx, loads),
        png_half=check(png_half, loads),
        png_half_loads=loads(png_half),
        valid={name: [check(path, loads), loads(path)] for name, path in valid.items()},
        header_only={
            name: check(os.path.join(args.work, f"{name}_half{ext}"))
            for name, (ext, _) in FORMATS.items()
        },
        missing=check(os.path.join(args.work, "nowhere.exr")),
        png=check(os.path.join(args.frames, "frame_0001.png")),
    )


bl.run(main)
