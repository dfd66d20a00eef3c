"""Training that Blender ends early still reaches its strip.

Opening another file, reverting, quitting Blender or disabling the add-on stops a running
training job: the worker saves a checkpoint at its last step, but the operator that would attach
it to the strip never finishes. So the job carries its target (``target``: the .blend file, scene
and strip, and the model the strip had), ``record`` writes it to the extension's user folder once
the worker has stopped, and ``reattach`` (on every file load) gives the strip that checkpoint when
its .blend is opened again, as a finished run would have, unless the strip has been given another
model since. A record stays until the file is saved with the model attached (``forget_saved``),
so closing the reopened file without saving loses nothing either.
"""

from __future__ import annotations

import json
import os
import time

import bpy

from . import paths, strips

RECORD_NAME = "interrupted.json"
KEEP_S = 90 * 24 * 3600  # a record for a file that is never opened again goes after 90 days


def _record_path() -> str:
    return os.path.join(paths.user_dir(""), RECORD_NAME)


def _same_file(a: str, b: str) -> bool:
    return bool(a and b) and os.path.normcase(os.path.realpath(a)) == os.path.normcase(
        os.path.realpath(b)
    )


def _read() -> list[dict]:
    """The records still worth keeping: their checkpoint exists and they are not too old."""
    try:
        with open(_record_path(), encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    now = time.time()
    return [
        e
        for e in entries
        if isinstance(e, dict)
        and all(isinstance(e.get(k), str) for k in ("blend", "scene", "strip", "checkpoint"))
        and now - float(e.get("time") or 0) < KEEP_S
        and os.path.isfile(e["checkpoint"])
    ]


def _write(entries: list[dict]) -> None:
    path = _record_path()
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass


def target(scene, strip) -> dict:
    """What a training job on ``strip`` attaches to: taken when the job starts."""
    return {
        "blend": bpy.data.filepath,
        "scene": scene.name,
        "strip": strip.name,
        "previous": strips.checkpoint_of(strip),
    }


def record(attach: dict, checkpoint: str, step: int) -> str:
    """Remember that training of ``attach``'s strip stopped with ``checkpoint`` saved at
    ``step``; returns one sentence for the panel."""
    name, blend = attach["strip"], attach.get("blend") or ""
    if not blend:
        return (
            f"Training of '{name}' stopped at step {step} when the file was closed; the file was "
            f"never saved, so its model stays at {checkpoint}: Use Checkpoint File attaches it."
        )
    entries = _read()
    entries.append({**attach, "checkpoint": checkpoint, "step": step, "time": time.time()})
    _write(entries)
    return (
        f"Training of '{name}' stopped at step {step} when {os.path.basename(blend)} was "
        f"closed; its model ({checkpoint}) is attached to the strip when the file is opened "
        "again."
    )


def reattach() -> list[tuple[str, str]]:
    """Attach the checkpoints of training runs that stopped while this file was open to their
    strips; returns (strip name, one sentence) for each."""
    blend = bpy.data.filepath
    entries = _read()
    if not blend or not entries:
        return []
    done: list[tuple[str, str]] = []
    keep = []
    for entry in entries:
        if not _same_file(entry["blend"], blend):
            keep.append(entry)
            continue
        strip = strips.find_strip(bpy.data.scenes.get(entry["scene"]), entry["strip"])
        if strip is None:
            continue  # deleted (and saved so) since: the checkpoint stays where it is
        current = strips.checkpoint_of(strip)
        if _same_file(current, entry["checkpoint"]):
            continue  # saved with it already
        if os.path.normcase(current) != os.path.normcase(entry.get("previous") or ""):
            continue  # given another model since: that choice stands
        strips.set_checkpoint(strip, entry["checkpoint"])
        keep.append(entry)  # until the file is saved with it
        done.append(
            (
                strip.name,
                f"Training of '{strip.name}' stopped at step {entry.get('step', '?')} when this "
                f"file was closed; its model is attached to the strip again. Save the file to "
                "keep it.",
            )
        )
    if len(keep) != len(entries):
        _write(keep)
    return done


def forget_saved() -> None:
    """The file was saved: records whose strip now holds its checkpoint are done."""
    blend = bpy.data.filepath
    entries = _read()
    keep = []
    for entry in entries:
        if _same_file(entry["blend"], blend):
            strip = strips.find_strip(bpy.data.scenes.get(entry["scene"]), entry["strip"])
            if strip is None or _same_file(strips.checkpoint_of(strip), entry["checkpoint"]):
                continue
        keep.append(entry)
    if len(keep) != len(entries):
        _write(keep)
