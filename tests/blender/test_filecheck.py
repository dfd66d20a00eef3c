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
    # OpenEXR, DPX, Cineon: found from the header alone, without loading.
    for name in ("exr_none", "exr_zip", "exr_zips", "exr_piz", "exr_dwaa", "dpx", "cineon"):
        assert f["header_only"][name].startswith("is cut short"), (name, f["header_only"])
    assert f["header_only"]["hdr"] is None and f["header_only"]["jp2"] is None  # need a load
    assert f["empty"] == "is empty (0 bytes)"
    assert f["renamed"] == "is not a valid DPX file"
    assert f["missing"] == "is missing"
    assert f["png"] is None  # the worker reads PNG itself: not checked here
