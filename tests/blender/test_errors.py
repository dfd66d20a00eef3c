"""Bad input in real Blender: each case is one clear ERROR report and CANCELLED."""

from __future__ import annotations

import sys
import venv

import pytest

from .conftest import bpy_params


@pytest.fixture(scope="module")
def python_without_torch(tmp_path_factory):
    """A fresh venv (no packages): a worker Python where `import torch` fails."""
    folder = tmp_path_factory.mktemp("notorch")
    venv.create(folder, with_pip=False, symlinks=sys.platform != "win32")
    return folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def assert_clear_error(result: dict, *fragments: str) -> str:
    assert result["ret"] == ["CANCELLED"], result
    message = result["error"]
    assert message and message.startswith("Error: "), result
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("python", bpy_params(extra=False))
def test_bad_input_reports(python, blender, built_zip, frames16, tmp_path, python_without_torch):
    run = blender(python, "bl_errors.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path, "--no-torch-python", python_without_torch)  # fmt: skip

    assert_clear_error(
        run.stage("bad_python")["op"],
        "no such python' does not exist",
        "FSGAN_PYTHON environment variable",
    )
    assert_clear_error(run.stage("no_torch")["op"], "PyTorch is not installed", "Preferences")

    frames = run.stage("frames")
    # Refused by the operator's poll, which names the missing files (frame 1 is there).
    missing = frames["missing"]
    assert missing["ret"] == ["CANCELLED"] and "Traceback" not in missing["error"]
    assert (
        "4 of the 5 frame files of strip 'gone' are missing: frame_0002.png to "
        in (missing["error"])
    )
    # The worker's own bad-input error (an `error` event) is passed on as it is.
    message = assert_clear_error(frames["garbage"])
    assert "frame_0001.png" in message or "image" in message.lower(), message
    assert frames["checkpoint_set"] == []  # failed jobs leave strips untouched

    no_channel = run.stage("no_channel")
    assert_clear_error(
        no_channel["op"],
        "No channel from 128 to 128 is free for frames 205-207",
        "Make room above the strip 'top', or extend fewer frames.",
    )
    assert no_channel["files"] == []  # refused before the worker: nothing generated
