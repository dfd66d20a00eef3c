"""Training that ends without its operator still reaches its strip.

A training job's checkpoint is attached to its strip when the operator that started it finishes.
Opening another file, reverting, quitting, disabling the add-on, or Blender crashing or being
killed ends the job without that: the worker saves its last step (on a crash too: it sees its
stdin close), but nothing attaches it. So every training job is recorded in the extension's user
folder while it runs (``begin``: the .blend file, scene and strip, the model the strip had, the
checkpoint, this Blender's process id); the operator drops the record when it finishes (``end``).
A record that outlives its job (Blender stopped it: ``stopped``; or the process is gone) is
acted on when its .blend is opened (``reattach``, on every file load): the strip gets the saved
checkpoint, as a finished run would have given it, unless the strip has been given another model
since. It stays until the file is saved with the model attached (``forget_saved``), so closing the
reopened file without saving loses nothing either.
"""

from __future__ import annotations

import json
import os
import sys
import time

import bpy

from . import checkpoints, paths, strips

RECORD_NAME = "interrupted.json"
KEEP_S = 90 * 24 * 3600  # a record for a file that is never opened again goes after 90 days


def _record_path() -> str:
    return os.path.join(paths.user_dir(""), RECORD_NAME)


def _same_file(a: str, b: str) -> bool:
    return bool(a and b) and os.path.normcase(os.path.realpath(a)) == os.path.normcase(
        os.path.realpath(b)
    )


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (never signals it: on Windows os.kill would end it)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _running(entry: dict) -> bool:
    """The entry's job may still be running: its Blender is alive and has not let it go."""
    return bool(entry.get("pid")) and _alive(int(entry["pid"]))


def _read() -> list[dict]:
    """The records still worth keeping."""
    try:
        with open(_record_path(), encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    now = time.time()
    keep = []
    for e in entries:
        if not isinstance(e, dict) or not all(
            isinstance(e.get(k), str) for k in ("id", "blend", "scene", "strip", "checkpoint")
        ):
            continue
        if now - float(e.get("time") or 0) > KEEP_S:
            continue
        if not _running(e) and (not e["blend"] or not os.path.isfile(e["checkpoint"])):
            continue  # ended with nothing saved, or in a file that can't be found again
        keep.append(e)
    return keep


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
    """What a training job on ``strip`` belongs to: taken before the job starts."""
    return {
        "blend": bpy.data.filepath,
        "scene": scene.name,
        "strip": strip.name,
        "previous": strips.checkpoint_of(strip),
    }


def begin(job, attach: dict) -> None:
    """Record the started training ``job`` (a ``WorkerJob``) for the strip in ``attach``."""
    entries = _read()
    entries.append(
        {
            **attach,
            "id": job.job_dir,
            "checkpoint": job.job["checkpoint"],
            "pid": os.getpid(),
            "time": time.time(),
        }
    )
    _write(entries)
    job.record_id = job.job_dir


def _update(record_id: str | None, change) -> None:
    if not record_id:
        return
    entries = _read()
    out = []
    for e in entries:
        if e["id"] == record_id:
            e = change(e)
        if e is not None:
            out.append(e)
    _write(out)


def end(record_id: str | None) -> None:
    """The operator finished the job and attached (or reported) what it saved."""
    _update(record_id, lambda e: None)


def moved(record_id: str | None, blend: str) -> None:
    """Save As while the job runs: the strip now lives in ``blend``."""
    _update(record_id, lambda e: {**e, "blend": blend})


def stopped(record_id: str | None, name: str, checkpoint: str | None, step: int) -> str:
    """Blender stopped the job; ``checkpoint`` is what it saved (None: nothing). Returns one
    sentence for the panel."""
    entry = next((e for e in _read() if e["id"] == record_id), None)
    blend = entry["blend"] if entry else ""
    if not checkpoint or not blend:
        end(record_id)
        if not checkpoint:
            return f"Training of '{name}' stopped before it saved a step."
        return (
            f"Training of '{name}' stopped at step {step} when the file was closed; the file was "
            f"never saved, so its model stays at {checkpoint}: Use Checkpoint File attaches it."
        )
    _update(record_id, lambda e: {**e, "pid": 0, "step": step})
    return (
        f"Training of '{name}' stopped at step {step} when {os.path.basename(blend)} was "
        f"closed; its model ({checkpoint}) is attached to the strip when the file is opened "
        "again."
    )


def reattach() -> list[tuple[str, str]]:
    """Give this file's strips the checkpoints of their training runs that ended without their
    operator; returns (strip name, one sentence) for each."""
    blend = bpy.data.filepath
    entries = _read()
    if not blend or not entries:
        return []
    done: list[tuple[str, str]] = []
    keep = []
    for entry in entries:
        if not _same_file(entry["blend"], blend) or _running(entry):
            keep.append(entry)  # another file's, or still training in this or another Blender
            continue
        strip = strips.find_strip(bpy.data.scenes.get(entry["scene"]), entry["strip"])
        if strip is None:
            continue  # deleted (and saved so) since: the checkpoint stays where it is
        current = strips.checkpoint_of(strip)
        if _same_file(current, entry["checkpoint"]):
            continue  # saved with it already
        if os.path.normcase(current) != os.path.normcase(entry.get("previous") or ""):
            continue  # given another model since: that choice stands
        about, problem = checkpoints.summary(entry["checkpoint"])
        if problem:
            continue
        strips.set_checkpoint(strip, entry["checkpoint"])
        keep.append(entry)  # until the file is saved with it
        how = "was stopped" if "step" in entry else "did not finish (Blender closed or crashed)"
        done.append(
            (
                strip.name,
                f"Training of '{strip.name}' {how}; its last saved model ({about}) is attached "
                "to the strip again. Save the file to keep it.",
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
        if _same_file(entry["blend"], blend) and not _running(entry):
            strip = strips.find_strip(bpy.data.scenes.get(entry["scene"]), entry["strip"])
            if strip is None or _same_file(strips.checkpoint_of(strip), entry["checkpoint"]):
                continue
        keep.append(entry)
    if len(keep) != len(entries):
        _write(keep)
