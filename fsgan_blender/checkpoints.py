"""What the Training panel says about a strip's model, read from its checkpoint's header.

A checkpoint is one safetensors file whose JSON header holds the configs and the step
(core/checkpoint.py writes it). Blender never imports torch, so the header is read here with the
standard library: its length, then the JSON, no tensor data. The format's name and version are
repeated from core/checkpoint.py because the add-on must not import core (a test checks that the
two agree). Panels draw often: a result is remembered until the file changes.
"""

from __future__ import annotations

import json
import os

from .filememo import FileMemo

FORMAT = "fsgan-checkpoint"  # core.checkpoint.FORMAT
FORMAT_VERSION = 1  # core.checkpoint.FORMAT_VERSION

_HEADER_MAX = 100_000_000
_memo = FileMemo(limit=64)


def summary(path: str) -> tuple[str | None, str | None]:
    """(one line about the model, None), or (None, why the file is no usable checkpoint)."""
    try:
        return _memo.get(path, path, lambda _st: _summary(path))
    except OSError:
        return None, f"The file {path} is missing."


def _summary(path: str) -> tuple[str | None, str | None]:
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= _HEADER_MAX:
                raise ValueError
            header = json.loads(f.read(n))
        meta = header.get("__metadata__") or {}
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return None, f"{name} is not a FrameSequenceGAN checkpoint (not a safetensors file)."
    if meta.get("format") != FORMAT:
        return None, f"{name} is a safetensors file but not a FrameSequenceGAN checkpoint."
    if meta.get("format_version") != str(FORMAT_VERSION):
        return None, (
            f"{name} has checkpoint format version {meta.get('format_version')}; this add-on "
            f"reads version {FORMAT_VERSION}."
        )
    try:
        step = int(meta["step"])
        model = json.loads(meta["model_config"])
        preset, width, height = model["preset"], int(model["width"]), int(model["height"])
        rgba = int(model.get("channels", 3)) == 4
    except (KeyError, ValueError, TypeError):
        return None, f"{name} has damaged metadata."
    alpha = ", RGBA" if rgba else ""
    return f"{preset} preset, {width} x {height}{alpha}, {step:,} steps", None
