"""Where the add-on writes: the extension's user folder, or folders the user chose.

Strip names come from .blend files and may hold anything (``../../x``, slashes, colons), so every
name that becomes part of a path goes through ``safe_name`` and ``safe_join``.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import bpy

from . import procs

_UNSAFE = re.compile(r"[^\w\-. ]+")  # \w keeps non-ASCII letters; separators and ':' go
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)\.png$", re.IGNORECASE)

CHECKPOINT_KEY = "fsgan_checkpoint"  # custom property on the strip: saved with the .blend


class PathError(ValueError):
    """A path the add-on refuses to write to; the message is one sentence for the user."""


def safe_name(name: str, fallback: str = "strip") -> str:
    """A file-name-safe version of ``name``: no separators, no leading dots, not empty."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    cleaned = cleaned.replace("..", "_")
    return cleaned[:100] or fallback


def safe_join(base: str, name: str) -> str:
    """``base/safe_name(name)``, guaranteed to stay inside ``base``."""
    base = os.path.realpath(base)
    path = os.path.realpath(os.path.join(base, safe_name(name)))
    if os.path.commonpath([base, path]) != base or path == base:
        raise PathError(f"The name '{name}' would write outside the folder {base}.")
    return path


def user_dir(sub: str) -> str:
    """A writable folder of this extension (kept across upgrades), created if needed."""
    package = __package__ or "fsgan_blender"
    try:
        return bpy.utils.extension_path_user(package, path=sub, create=True)
    except (ValueError, KeyError):
        # Run from the source tree (tests of strips.py, scripts) rather than as an extension.
        path = bpy.utils.user_resource("DATAFILES", path=os.path.join("fsgan_blender", sub))
        os.makedirs(path, exist_ok=True)
        return path


def abspath(path: str) -> str:
    """A Blender path (maybe ``//relative``) as a normalised absolute path."""
    return os.path.normpath(bpy.path.abspath(path)) if path else ""


def output_dir(settings, strip_name: str) -> str:
    """Folder for a strip's generated frames: <chosen folder or default>/<strip name>/."""
    if settings.output_dir:
        if settings.output_dir.startswith("//") and not bpy.data.filepath:
            raise PathError(
                "The output folder is relative to the .blend file, which is not saved yet; "
                "save the file or choose an absolute folder."
            )
        base = abspath(settings.output_dir)
    elif bpy.data.filepath:
        base = abspath("//fsgan")
    else:
        base = user_dir("frames")
    return safe_join(base, strip_name)


def new_checkpoint_path(settings, strip_name: str) -> str:
    if settings.model_dir:
        if settings.model_dir.startswith("//") and not bpy.data.filepath:
            raise PathError(
                "The model folder is relative to the .blend file, which is not saved yet; "
                "save the file or choose an absolute folder."
            )
        base = abspath(settings.model_dir)
    else:
        base = user_dir("models")
    os.makedirs(base, exist_ok=True)
    # The process id too: two Blenders (a farm, two headless shots) starting a strip of the
    # same name in the same second would otherwise both train into one file, which is only
    # written when the first step is saved.
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    path = os.path.join(base, f"{safe_name(strip_name)}_{stamp}.safetensors")
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(base, f"{safe_name(strip_name)}_{stamp}_{n}.safetensors")
    return path


def copy_file(source: str, dest: str) -> None:
    """Copy ``source`` to ``dest`` whole or not at all (a temp file, then ``os.replace``);
    ValueError with a sentence when it fails (a full disk, no permission)."""
    tmp = os.path.join(os.path.dirname(dest), f".tmp-{os.getpid()}-{os.path.basename(dest)}")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise ValueError(
            f"The checkpoint {source} could not be copied to {dest} ({exc.strerror or exc})."
        ) from None


def unwritable_part(folder: str) -> str | None:
    """None when ``folder`` is a writable folder or could be made as one (its nearest existing
    ancestor is a writable folder); else the path that stands in the way (a file, or a folder
    that cannot be written). Nothing is created: a job that is cancelled or refused later
    leaves no empty folder behind (the worker makes the folder when it writes)."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return path
        path = parent
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        return path
    return None


def next_free_number(folder: str, prefix: str) -> int:
    """1 + the highest ``<prefix><number>.png`` in ``folder``: new runs never overwrite."""
    highest = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 1
    for name in names:
        m = _NUMBERED.match(name)
        if m and m.group("prefix") == prefix:
            highest = max(highest, int(m.group("number")))
    return highest + 1


def job_dir(kind: str) -> str:
    """A fresh folder for one job's files (job.json, log, previews, cancel file)."""
    base = user_dir("jobs")
    prune_jobs(base, keep=8)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, f"{kind}-{stamp}-{os.getpid()}")
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(base, f"{kind}-{stamp}-{os.getpid()}-{n}")
    os.makedirs(path)
    return path


_JOB_PID = re.compile(r"^[a-z]+-\d{8}-\d{6}-(?P<pid>\d+)(?:-\d+)?$")


def prune_jobs(base: str, keep: int) -> None:
    """Delete all but the newest ``keep`` job folders (their logs help debugging), never one
    of another Blender that is still running (its job may be too: a farm, headless shots)."""
    try:
        entries = [os.path.join(base, e) for e in os.listdir(base)]
    except OSError:
        return
    folders = sorted((e for e in entries if os.path.isdir(e)), key=os.path.getmtime)
    for old in folders[:-keep] if keep else folders:
        m = _JOB_PID.match(os.path.basename(old))
        if m and procs.alive(int(m.group("pid"))):  # False for this process's own
            continue
        shutil.rmtree(old, ignore_errors=True)
