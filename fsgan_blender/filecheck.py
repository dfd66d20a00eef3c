"""Cheap integrity checks of frame files that Blender decodes for the worker.

Blender renders an image file it cannot read (empty, truncated, not an image) as "missing
media", without an error, so a damaged frame in an OpenEXR or DPX sequence would silently train
the model on a placeholder. These checks read a file's header (and, for OpenEXR, its chunk
table) only: no pixel data, a few hundred bytes per file, remembered per file version.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable

# Scanlines per chunk for each OpenEXR compression (the header's "compression" byte).
_EXR_LINES = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
_EXR_TILED, _EXR_DEEP, _EXR_MULTIPART = 0x200, 0x800, 0x1000

# The first bytes of each format, by file extension. Extensions not listed are not checked.
_MAGIC = {
    ".exr": (b"\x76\x2f\x31\x01",),
    ".dpx": (b"SDPX", b"XPDS"),
    ".cin": (b"\x80\x2a\x5f\xd7", b"\xd7\x5f\x2a\x80"),
    ".hdr": (b"#?",),
    ".pic": (b"#?",),
    ".jp2": (b"\x00\x00\x00\x0cjP  \r\n\x87\n",),
    ".j2c": (b"\xff\x4f\xff\x51",),
    ".j2k": (b"\xff\x4f\xff\x51",),
}

# Formats whose header tells where the data ends, so a file cut short is found without loading.
_WHOLE_FROM_HEADER = {".exr", ".dpx", ".cin", ".j2c", ".j2k"}

_memo: dict[tuple[str, bool], tuple[tuple[int, int], str | None]] = {}
_MEMO_MAX = 100_000


def damage(path: str, loads: Callable[[str], bool] | None = None) -> str | None:
    """Why Blender will not be able to read ``path`` ("is empty", "is cut short", "is not a
    valid DPX file"), or None when it looks whole. A format whose end can't be found from its
    header (Radiance HDR, JPEG 2000 .jp2, formats not listed here) is checked with
    ``loads(path)`` when given: a full load, done once per file version."""
    try:
        st = os.stat(path)
    except OSError:
        return "is missing"
    version = (st.st_size, st.st_mtime_ns)
    key = (path, loads is not None)
    hit = _memo.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    result = _check(path, st.st_size)
    ext = os.path.splitext(path)[1].lower()
    if result is None and loads is not None and ext not in _WHOLE_FROM_HEADER and not loads(path):
        result = "cannot be read by Blender"
    if len(_memo) >= _MEMO_MAX:
        _memo.clear()
    _memo[key] = (version, result)
    return result


def _check(path: str, size: int) -> str | None:
    if size == 0:
        return "is empty (0 bytes)"
    ext = os.path.splitext(path)[1].lower()
    magics = _MAGIC.get(ext)
    if magics is None:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if not any(head.startswith(m) for m in magics):
                return f"is not a valid {ext[1:].upper()} file"
            if ext == ".exr":
                return _exr_problem(f, size)
            if ext in (".j2c", ".j2k"):
                # A JPEG 2000 codestream ends with its EOC marker. (In a .jp2 file other boxes
                # may follow the codestream: that format is checked by loading.)
                f.seek(size - 2)
                if f.read(2) != b"\xff\xd9":
                    return "is cut short"
            if ext in (".dpx", ".cin"):
                # Both headers hold the total file size: DPX at byte 16, Cineon at byte 20.
                order = ">" if head[:1] in (b"S", b"\x80") else "<"
                (declared,) = struct.unpack(
                    order + "I", head[16:20] if ext == ".dpx" else head[20:24]
                )
                if 0 < declared and size < declared:
                    return f"is cut short ({size} of {declared} bytes)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except (struct.error, ValueError, IndexError):
        return "has a damaged header"
    return None


def _exr_problem(f, size: int) -> str | None:
    """A single-part scanline OpenEXR file: every chunk the offset table points to lies
    inside the file. Tiled, deep and multi-part files are checked for their header only."""
    f.seek(4)
    (flags,) = struct.unpack("<I", f.read(4))
    header = f.read(65536)
    pos, window, compression = 0, None, None
    while True:
        if pos >= len(header):
            return "has a damaged header"
        if header[pos] == 0:
            break
        name_end = header.index(b"\0", pos)
        type_end = header.index(b"\0", name_end + 1)
        (length,) = struct.unpack("<i", header[type_end + 1 : type_end + 5])
        if length < 0 or type_end + 5 + length > len(header):
            return "has a damaged header"
        value = header[type_end + 5 : type_end + 5 + length]
        name = header[pos:name_end]
        if name == b"dataWindow" and length == 16:
            window = struct.unpack("<4i", value)
        elif name == b"compression" and length == 1:
            compression = value[0]
        pos = type_end + 5 + length
    if flags & (_EXR_TILED | _EXR_DEEP | _EXR_MULTIPART):
        return None
    if window is None or compression not in _EXR_LINES:
        return None if window is not None else "has a damaged header"
    height = window[3] - window[1] + 1
    chunks = math.ceil(height / _EXR_LINES[compression])
    table_at = 8 + pos + 1
    if height <= 0 or table_at + 8 * chunks > size:
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
