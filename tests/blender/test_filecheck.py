"""Damaged frame files (which Blender would render as "missing media" without an error) are found
from their headers, in every format Blender writes that the worker does not read."""

from __future__ import annotations

import pytest

from .conftest import bpy_params


@pytest.mark.parametrize("python", bpy_params())
def test_damaged_frame_files_are_found(python, blender, built_zip, frames16, tmp_path):
    run = blender(python, "bl_filecheck.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path)  # fmt: skip
    f = run.stage("formats")
    for name, cases in f["formats"].items():
        # A whole file passes (and Blender loads it) ...
        assert cases["whole"] is None and cases["whole_loads"], (name, cases)
        # ... a file cut in half or by its last byte is refused, with a reason (some a byte
        # short would still load, partly).
        for cut in ("half", "last_byte"):
            why = cases[cut]
            assert why in ("is cut short", "cannot be read by Blender") or why.startswith(
                "is cut short ("
            ), (name, cut, cases)
    # OpenEXR: found from the header and chunk table alone (never loaded: a cut-short EXR
    # crashed Blender 5.0.1). The others only look doubtful from the header: a load decides.
    for name in ("exr_none", "exr_zip", "exr_zips", "exr_piz", "exr_dwaa"):
        assert f["header_only"][name] == "is cut short", (name, f["header_only"])
    for name in ("dpx", "cineon", "hdr", "jp2", "j2c"):
        assert f["header_only"][name] is None, (name, f["header_only"])
    assert f["empty"] == "is empty (0 bytes)"
    assert f["not_dpx"] == "is not a valid DPX file"
    assert f["png_half_loads"] is False and f["png_half"] == "is cut short"
    # Valid files that look odd from their header (a 70 KB OpenEXR header, an undefined or too
    # large DPX size field, padding after a codestream, a format its name does not say): Blender
    # loads them, and none is refused.
    for name, (why, loads) in f["valid"].items():
        assert loads is True and why is None, (name, why, loads)
    assert f["missing"] == "is missing"
    assert f["png"] is None
