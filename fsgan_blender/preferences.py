"""Add-on preferences: which Python runs the worker, and where it finds its packages.

This is the home of the worker's environment. Which interpreter runs the worker, in order:
1. the "Worker Python" preference, when set;
2. the ``FSGAN_PYTHON`` environment variable (handy for studios and for tests);
3. Blender's own Python (``sys.executable``), which then needs PyTorch installed for it.
Extra package folders (for example a folder pip installed torch into) go on the worker's
PYTHONPATH, never on Blender's own ``sys.path``: Blender never imports torch.
"""

from __future__ import annotations

import os
import sys

import bpy
from bpy.props import BoolProperty, StringProperty

from . import worker_client

ENV_PYTHON = "FSGAN_PYTHON"


class FSGAN_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python_path: StringProperty(
        name="Worker Python",
        description="Python interpreter that runs training and generation (it needs PyTorch); "
        "empty uses the FSGAN_PYTHON environment variable, else Blender's own Python",
        default="",
        subtype="FILE_PATH",
    )
    keep_job_files: BoolProperty(
        name="Keep Job Files",
        description="Keep each job's folder (job file, worker log, previews) after it ends, "
        "for troubleshooting; the newest few are always kept",
        default=True,
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "python_path")
        python, source = resolve_python(self)
        col = layout.column(align=True)
        col.label(text=f"Worker runs: {python} ({source})")
        try:
            worker_client.check_python(python, source)
        except worker_client.WorkerError as exc:
            col.label(text=str(exc), icon="ERROR")
        layout.prop(self, "keep_job_files")


classes = (FSGAN_AddonPreferences,)


def get(context=None) -> FSGAN_AddonPreferences | None:
    """This add-on's preferences, or None when it runs from the source tree (not installed)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def resolve_python(prefs) -> tuple[str, str]:
    """(interpreter path, where that choice came from)."""
    if prefs is not None and prefs.python_path:
        return bpy.path.abspath(prefs.python_path), "preference"
    env = os.environ.get(ENV_PYTHON)
    if env:
        return env, f"{ENV_PYTHON} environment variable"
    return sys.executable, "Blender's Python"


def worker_paths(prefs) -> tuple[str, ...]:
    """Extra folders for the worker's PYTHONPATH (issue 4 adds the installed site-packages)."""
    return ()


def addon_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))
