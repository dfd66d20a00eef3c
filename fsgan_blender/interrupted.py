"""Training that ends without its operator still reaches its strip.

A training job's checkpoint is attached to its strip when the operator that started it finishes.
Opening another file, reverting, quitting, disabling the add-on, or Blender crashing or being
killed ends the job without that: the worker saves its last step (on a crash too: it sees its
stdin close), but nothing attaches it. So every training job is recorded in the extension's user
folder while it runs (``begin``: the .blend file, scene and strip, the model the strip had, the
checkpoint, this Blender's process id and a token of this session); the operator drops the
record when it finishes (``end``). A record that outlives its job (Blender stopped it:
``stopped``; or its Blender is gone) is acted on when its .blend is opened (``reattach``, on every
file load): the strip gets the saved checkpoint, as a finished run would have given it, unless the
strip has been given another model since. The record stays until the file is next saved
(``forget_saved``): closing the reopened file without saving loses nothing, and a strip set back
to its old model and saved keeps it.

Nothing here may raise into Blender (handlers, unregister, atexit): failures are logged, and at
worst a record is lost, never a checkpoint.
"""

from __future__ import annotations

import json
import os
import secrets
import time

import bpy

from . import checkpoints, paths, procs, strips, worker_client

RECORD_NAME = "interrupted.json"
KEEP_S = 90 * 24 * 3600  # a record for a file that is never opened again goes after 90 days
# This Blender session: a process id alone can come back (a reboot, pid namespaces, reuse).
_TOKEN = secrets.token_hex(8)
_record_path_cached = ""


def _log(text: str) -> None:
    print(f"FrameSequenceGAN: {text}", flush=True)


def _record_path() -> str:
    # Remembered: at exit Blender may no longer tell the extension's folder.
    global _record_path_cached
    if not _record_path_cached:
        _record_path_cached = os.path.join(paths.user_dir(""), RECORD_NAME)
    return _record_path_cached


def _same_file(a: str, b: str) -> bool:
    return bool(a and b) and os.path.normcase(os.path.realpath(a)) == os.path.normcase(
        os.path.realpath(b)
    )


def _running(entry: dict) -> bool:
    """The entry's job may still be running: in this session, it is the current job; else its
    Blender is alive and has not let it go."""
    if not entry.get("pid"):
        return False  # let go (stopped)
    if entry.get("token") == _TOKEN:
        job = worker_client.current()
        return job is not None and job.record_id == entry["id"]
    return procs.alive(entry["pid"])


def _read() -> list[dict]:
    """The records still worth keeping; the file is rewritten without the others."""
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
        if not isinstance(e.get("time"), (int, float)) or not isinstance(e.get("pid"), int):
            continue
        if now - e["time"] > KEEP_S:
            continue
        if not _running(e) and (not e["blend"] or not os.path.isfile(e["checkpoint"])):
            continue  # ended with nothing saved, or in a file that can't be found again
        keep.append(e)
    if len(keep) != len(entries):
        _write(keep)
    return keep


def _write(entries: list[dict]) -> None:
    path = _record_path()
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
        for attempt in range(5):
            try:
                os.replace(tmp, path)
                return
            except PermissionError:  # Windows: another Blender is reading it this moment
                if attempt == 4:
                    raise
                time.sleep(0.05)
    except OSError as exc:
        _log(f"the record of running training jobs could not be written ({exc})")
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
    job.record_id = job.job_dir
    try:
        entries = _read()
        entries.append(
            {
                **attach,
                "id": job.job_dir,
                "checkpoint": job.job["checkpoint"],
                "pid": os.getpid(),
                "token": _TOKEN,
                "time": time.time(),
            }
        )
        _write(entries)
    except Exception as exc:  # noqa: BLE001 - the job runs on; only this safety net is lost
        _log(f"the training job could not be recorded ({exc!r})")


def _update(record_id: str | None, change) -> None:
    if not record_id:
        return
    try:
        entries = _read()
        out = []
        for e in entries:
            if e["id"] == record_id:
                e = change(e)
            if e is not None:
                out.append(e)
        if out != entries:
            _write(out)
    except Exception as exc:  # noqa: BLE001 - never into Blender's handlers or unregister
        _log(f"the record of training job {record_id} could not be updated ({exc!r})")


def _entry(record_id: str | None) -> dict | None:
    """The record of job ``record_id``, or None (none, or the file can't be read)."""
    try:
        return next((e for e in _read() if e["id"] == record_id), None)
    except Exception:  # noqa: BLE001 - handlers, unregister and atexit call this
        return None


def started_from(record_id: str | None) -> str:
    """The model the recorded job's strip had when it started ('' if none or unknown)."""
    return (_entry(record_id) or {}).get("previous") or ""


def end(record_id: str | None) -> None:
    """The operator finished the job and attached (or reported) what it saved."""
    _update(record_id, lambda e: None)


def moved(record_id: str | None, blend: str) -> None:
    """Save As while the job runs: the strip now lives in ``blend``."""
    _update(record_id, lambda e: {**e, "blend": blend})


def stopped(record_id: str | None, name: str, checkpoint: str | None, step: int) -> str:
    """Blender stopped the job; ``checkpoint`` is what it saved (None: nothing). Returns one
    sentence for the panel."""
    entry = _entry(record_id)
    blend = entry["blend"] if entry else ""
    if not checkpoint or not blend:
        end(record_id)
        if not checkpoint:
            return f"Training of '{name}' stopped before it saved a step."
        return (
            f"Training of '{name}' was stopped at step {step}. The file was never saved, so its "
            f"model stays at {checkpoint}: Use Checkpoint File attaches it."
        )
    _update(record_id, lambda e: {**e, "pid": 0, "step": step})
    return (
        f"Training of '{name}' was stopped at step {step}. When {os.path.basename(blend)} is "
        f"next opened, its model ({checkpoint}) is attached to the strip."
    )


def reattach() -> list[tuple[str, str]]:
    """Give this file's strips the checkpoints of their training runs that ended without their
    operator; returns (strip name, one sentence) for each."""
    try:
        return _reattach()
    except Exception as exc:  # noqa: BLE001 - a load_post handler: never into Blender
        _log(f"models of stopped training runs could not be attached ({exc!r})")
        return []


def _reattach() -> list[tuple[str, str]]:
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
            done.append(
                (
                    entry["strip"],
                    f"Training of '{entry['strip']}' ended early, but this file has no strip "
                    f"'{entry['strip']}' in scene '{entry['scene']}' any more; its model is at "
                    f"{entry['checkpoint']} (Use Checkpoint File attaches it).",
                )
            )
            continue
        current, previous = strips.checkpoint_of(strip), entry.get("previous") or ""
        if _same_file(current, entry["checkpoint"]):
            continue  # saved with it already
        if not ((not current and not previous) or _same_file(current, previous)):
            continue  # given another model since: that choice stands
        about, problem = checkpoints.summary(entry["checkpoint"])
        if problem:
            _log(f"not attached to '{strip.name}': {problem}")
            continue
        strips.set_checkpoint(strip, entry["checkpoint"])
        keep.append({**entry, "offered": True})  # until the file is saved (forget_saved)
        how = "was stopped" if "step" in entry else "did not finish (Blender closed or crashed)"
        done.append(
            (
                strip.name,
                f"Training of '{strip.name}' {how}; its last saved model ({about}) is attached "
                "to the strip again. Save the file to keep it.",
            )
        )
    if keep != entries:
        _write(keep)
    return done


def forget_saved() -> None:
    """The file was saved: a record is done once its strip was offered the model (kept or set
    back: the file now says which), holds it, or is gone."""
    try:
        blend = bpy.data.filepath
        entries = _read()
        keep = []
        for entry in entries:
            if _same_file(entry["blend"], blend) and not _running(entry):
                scene = bpy.data.scenes.get(entry["scene"])
                strip = strips.find_strip(scene, entry["strip"])
                if (
                    strip is None
                    or entry.get("offered")
                    or _same_file(strips.checkpoint_of(strip), entry["checkpoint"])
                ):
                    continue
            keep.append(entry)
        if keep != entries:
            _write(keep)
    except Exception as exc:  # noqa: BLE001 - a save_post handler: never into Blender
        _log(f"the record of stopped training runs could not be updated ({exc!r})")
