"""Cheap integrity checks of frame files that Blender decodes for the worker.

Blender renders an image file it cannot read (empty, cut short, not an image) as "missing
media", without an error, so a damaged frame in an OpenEXR or DPX sequence would silently train
the model on a placeholder (and some Blender versions hang or crash on a cut-short OpenEXR).

A file's header is read, not its pixels. What the header proves broken is refused outright: an
empty file; an OpenEXR file whose chunk table points past its end (loading one crashed Blender
5.0.1, so it is never loaded to confirm). What only looks wrong (a DPX size field larger than
the file, no end marker, a name whose format the content does not match, since Blender goes by
the content) is confirmed by a load, and so are formats whose end the header does not tell
(Radiance HDR, JPEG 2000 .jp2, anything not listed). Results are remembered per file version.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable

from .filememo import FileMemo

# Scanlines per chunk for each OpenEXR compression (the header's "compression" byte).
_EXR_LINES = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
_EXR_TILED, _EXR_DEEP, _EXR_MULTIPART = 0x200, 0x800, 0x1000
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_J2K = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")  # JP2 box, raw codestream

# The first bytes of each format, by file extension.
_MAGIC = {
    ".exr": (_EXR_MAGIC,),
    ".dpx": (b"SDPX", b"XPDS"),
    ".cin": (b"\x80\x2a\x5f\xd7", b"\xd7\x5f\x2a\x80"),
    ".hdr": (b"#?",),
    ".pic": (b"#?",),
    ".jp2": _J2K,
    ".j2c": _J2K,
    ".j2k": _J2K,
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8",),
    ".jpeg": (b"\xff\xd8",),
}

# Formats whose header shows a whole file as whole: no load unless something looks wrong.
# (PNG and JPEG strips are mostly read by the worker; when Blender decodes them, a full load
# of each would double the work, so they get the cheap end-of-file checks only.)
_WHOLE_FROM_HEADER = {".exr", ".dpx", ".cin", ".j2c", ".j2k", ".png", ".jpg", ".jpeg"}
# Formats the worker reads itself: never loaded here.
_NOT_LOADED = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".tga"}

_HEADER_MAX = 16 << 20  # an OpenEXR header larger than this is not parsed (not refused)
_memo = FileMemo(limit=100_000)


def damage(path: str, loads: Callable[[str], bool] | None = None) -> str | None:
    """Why Blender will not be able to read ``path`` ("is empty (0 bytes)", "is cut short",
    "cannot be read by Blender"), or None when it looks whole. ``loads(path)``: a full load by
    Blender, used to confirm what only looks wrong and for formats the header can't vouch
    for; without it those pass (header checks only). The header is read once per file
    version, and a load done at most once, whichever way the file is asked about."""
    try:
        facts = _memo.get(path, path, lambda st: {"header": _header(path, st.st_size)})
    except OSError:
        return "is missing"
    definite, suspect = facts["header"]
    if definite:
        return definite
    ext = os.path.splitext(path)[1].lower()
    if loads is None or (ext in _NOT_LOADED and not suspect):
        return None
    if suspect or ext not in _WHOLE_FROM_HEADER:
        if "loads" not in facts:
            facts["loads"] = loads(path)
        if not facts["loads"]:
            return suspect or "cannot be read by Blender"
    return None


def _header(path: str, size: int) -> tuple[str | None, str | None]:
    """(a reason the file is certainly broken, a reason it may be), from its size and header."""
    if size == 0:
        return "is empty (0 bytes)", None
    try:
        return _check(path, os.path.splitext(path)[1].lower(), size)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})", None


def _check(path: str, ext: str, size: int) -> tuple[str | None, str | None]:
    """(a reason the file is certainly broken, a reason it may be): header reads only."""
    magics = _MAGIC.get(ext)
    if magics is None:
        return None, None
    with open(path, "rb") as f:
        head = f.read(32)
        if not any(head.startswith(m) for m in magics):
            # Blender reads by content: a .exr that is really a PNG still loads.
            return None, f"is not a valid {ext[1:].upper()} file"
        try:
            if ext == ".exr":
                return _exr_problem(f, size), None
            if head.startswith(_J2K[1]) or ext in (".png", ".jpg", ".jpeg"):
                # A codestream ends with its EOC marker, a JPEG with EOI, a PNG with IEND
                # (padding after it is allowed).
                marker = b"IEND\xae\x42\x60\x82" if ext == ".png" else b"\xff\xd9"
                f.seek(max(0, size - 256))
                if marker not in f.read(256):
                    return None, "is cut short"
            if ext in (".dpx", ".cin"):
                # Both headers hold the total file size: DPX at byte 16, Cineon at byte 20
                # (0xFFFFFFFF: undefined). The data offset is at byte 4 in both.
                order = ">" if head[:1] in (b"S", b"\x80") else "<"
                (offset,) = struct.unpack(order + "I", head[4:8])
                (declared,) = struct.unpack(
                    order + "I", head[16:20] if ext == ".dpx" else head[20:24]
                )
                if size < offset:
                    return f"is cut short ({size} bytes, its pixels start at byte {offset})", None
                if 0 < declared < 0xFFFFFFFF and size < declared:
                    return None, f"is cut short ({size} of {declared} bytes)"
        except (struct.error, ValueError, IndexError):
            return None, "has a damaged header"
    return None, None


def _exr_header(f, size: int) -> tuple[int, dict[bytes, bytes]] | str | None:
    """(where the header ends, its attributes) of an OpenEXR file, read in growing pieces; a
    reason when it is cut short or broken; None when it is too large to look at."""
    data = b""
    while True:
        pos, attrs = 0, {}
        try:
            while data[pos] != 0:
                name_end = data.index(b"\0", pos)
                type_end = data.index(b"\0", name_end + 1)
                (length,) = struct.unpack("<i", data[type_end + 1 : type_end + 5])
                if length < 0:
                    return "has a damaged header"
                if type_end + 5 + length > len(data):
                    raise IndexError  # the value is not read yet
                attrs[data[pos:name_end]] = data[type_end + 5 : type_end + 5 + length]
                pos = type_end + 5 + length
            return 8 + pos + 1, attrs
        except (IndexError, ValueError, struct.error):
            pass  # more to read
        if 8 + len(data) >= size:
            return "is cut short"
        if len(data) >= _HEADER_MAX:
            return None
        more = f.read(max(4096, len(data)))
        if not more:
            return "is cut short"
        data += more


def _exr_problem(f, size: int) -> str | None:
    """A single-part scanline OpenEXR file: every chunk the offset table points to lies
    inside the file. Tiled, deep and multi-part files are checked for their header only."""
    f.seek(4)
    (flags,) = struct.unpack("<I", f.read(4))
    header = _exr_header(f, size)
    if not isinstance(header, tuple):
        return header
    table_at, attrs = header
    if flags & (_EXR_TILED | _EXR_DEEP | _EXR_MULTIPART):
        return None
    window, compression = attrs.get(b"dataWindow"), attrs.get(b"compression")
    if window is None or len(window) != 16 or compression is None or len(compression) != 1:
        return None  # not what we know how to read: Blender decides
    lines = _EXR_LINES.get(compression[0])
    _, y0, _, y1 = struct.unpack("<4i", window)
    if lines is None or y1 < y0:
        return None
    chunks = math.ceil((y1 - y0 + 1) / lines)
    if table_at + 8 * chunks > size:
        return "is cut short"
    f.seek(table_at)
    offsets = struct.unpack(f"<{chunks}Q", f.read(8 * chunks))
    last = max(offsets)
    if min(offsets) < table_at + 8 * chunks or last + 8 > size:
        return "is cut short"
    f.seek(last)
    (_, data_size) = struct.unpack("<ii", f.read(8))
    if data_size < 0 or last + 8 + data_size > size:
        return "is cut short"
    return None
