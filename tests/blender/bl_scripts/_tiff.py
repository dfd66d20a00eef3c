"""A float RGB TIFF writer (numpy and struct only): Pillow cannot write, nor read, such files;
Blender reads them. Used by tests/core/test_data.py and bl_decoded.py."""

from __future__ import annotations

import struct

import numpy as np


def write_float_tiff(path: str, a: np.ndarray) -> None:
    """``a`` (H, W, C) with C >= 3 -> an uncompressed little-endian TIFF of 32-bit IEEE float
    samples (SampleFormat 3), one strip, as compositors write them."""
    h, w, c = a.shape
    data = np.ascontiguousarray(a, "<f4").tobytes()
    n = 11  # directory entries
    ifd_at = 8 + len(data)
    bits_at = ifd_at + 2 + 12 * n + 4  # the per-sample values follow the directory
    formats_at = bits_at + 2 * c
    entries = [
        (256, 4, 1, w),  # ImageWidth
        (257, 4, 1, h),  # ImageLength
        (258, 3, c, bits_at),  # BitsPerSample: 32 each
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, 8),  # the strip's offset
        (277, 3, 1, c),  # SamplesPerPixel
        (278, 4, 1, h),  # RowsPerStrip
        (279, 4, 1, len(data)),  # StripByteCounts
        (284, 3, 1, 1),  # chunky
        (339, 3, c, formats_at),  # SampleFormat: 3 (IEEE float) each
    ]
    directory = struct.pack("<H", n) + b"".join(struct.pack("<HHII", *e) for e in entries)
    tail = struct.pack(f"<{c}H", *[32] * c) + struct.pack(f"<{c}H", *[3] * c)
    with open(path, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", ifd_at) + data + directory + b"\0\0\0\0" + tail)
