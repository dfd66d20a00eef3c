"""Add-on preferences: which Python runs the worker, its status, and installing PyTorch for it.

Which interpreter runs the worker, in order:
1. the "Worker Python" preference, when set;
2. the ``FSGAN_PYTHON`` environment variable (handy for studios and for tests);
3. Blender's own Python (``sys.executable``), which then needs PyTorch installed for it.
Extra package folders go on the worker's PYTHONPATH (``worker_paths``), never on Blender's own
``sys.path``: Blender never imports torch. They are
- the extension's ``site-packages`` user folder, when the Install button put packages there for
  this very interpreter (its marker file names the interpreter: a cp311 torch must not shadow
  the torch of a user's own environment);
- Blender's folder for extension wheels, when the worker runs Blender's own Python (a bundled
  build made with ``build.py --with-wheels`` installs torch there).

The status comes from ``<worker python> -m core doctor --json`` (installer.doctor), run in a
thread and cached; the result is stored in the preferences (``status_*``) on the main thread.
"""

from __future__ import annotations

import json
import os
import sys
import time

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

from . import decode, installer, paths, worker_client

ENV_PYTHON = "FSGAN_PYTHON"
WHERE = "Preferences > Add-ons > FrameSequenceGAN"
ONLINE_HINT = (
    "Online access is disabled: allow it in Preferences > System > Network > Allow Online "
    "Access, or install offline from a folder of wheels."
)

_status = installer.StatusCache()
_install: installer.PipInstall | None = None


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
    install_variant: EnumProperty(
        name="PyTorch Build",
        description="Which PyTorch build the Install button downloads",
        items=installer.VARIANTS,
        default="AUTO",
    )
    index_url: StringProperty(
        name="Package Index",
        description="Optional: a package index to install from instead of download.pytorch.org "
        "and pypi.org, e.g. a studio's PyPI mirror or proxy (Artifactory, Nexus, devpi). It "
        "must serve the chosen PyTorch build and the worker's other requirements",
        default="",
    )
    wheel_dir: StringProperty(
        name="Wheel Folder",
        description="A folder of .whl files (PyTorch and its dependencies, made with "
        "`pip download`) to install from without network access",
        default="",
        subtype="DIR_PATH",
    )
    # The latest status (written on the main thread only; read by panels and tests).
    status_ready: BoolProperty(
        name="Worker Ready",
        description="The worker Python imports PyTorch (latest check)",
        default=False,
    )
    status_message: StringProperty(
        name="Worker Status",
        description="The latest check of the worker Python, or what to fix",
        default="",
    )
    status_key: StringProperty(
        name="Status Of",
        description="Which interpreter and package folders the latest check was for",
        default="",
    )
    status_json: StringProperty(
        name="Status Details",
        description="The worker's `python -m core doctor --json` output of the latest check",
        default="",
    )
    status_time: FloatProperty(
        name="Checked At",
        description="When the latest check ran (seconds since the epoch)",
        default=0.0,
    )
    install_message: StringProperty(
        name="Install Result",
        description="How the latest install ended",
        default="",
    )
    install_log: StringProperty(
        name="Install Log",
        description="The log file of the latest install",
        default="",
        subtype="FILE_PATH",
    )

    def draw(self, context):
        layout = self.layout
        python, source = resolve_python(self)

        box = layout.box()
        box.label(text="Worker", icon="CONSOLE")
        box.prop(self, "python_path")
        col = box.column(align=True)
        col.label(text=f"Worker runs: {python} ({source})")
        if _status.running:
            col.label(text="Checking the worker Python...", icon="SORTTIME")
        elif self.status_key != status_key(self):
            ensure_status(self)
            col.label(text="Not checked yet.", icon="QUESTION")
        else:
            _wrapped(col, self.status_message, "CHECKMARK" if self.status_ready else "ERROR")
            torch_path = _status_info(self).get("torch_path")
            if self.status_ready and torch_path:
                col.label(text=f"PyTorch from {torch_path}", icon="BLANK1")
        box.operator("fsgan.check_worker", text="Refresh", icon="FILE_REFRESH")

        box = layout.box()
        box.label(text="Install PyTorch for the worker", icon="IMPORT")
        job = _install
        if job is not None and not job.finished:
            box.progress(factor=job.fraction, type="BAR", text=job.phase)
            if job.line:
                box.label(text=job.line[:90])
            box.operator("fsgan.cancel_install", text="Cancel", icon="CANCEL")
        else:
            row = box.row(align=True)
            row.prop(self, "install_variant")
            box.prop(self, "index_url")
            row = box.row()
            row.enabled = online_access()
            row.operator("fsgan.install_torch", text="Install PyTorch", icon="URL").offline = False
            if not online_access():
                _wrapped(box, ONLINE_HINT, "INFO")
            box.prop(self, "wheel_dir")
            row = box.row()
            row.enabled = bool(self.wheel_dir)
            op = row.operator("fsgan.install_torch", text="Install from Folder", icon="FILE_FOLDER")
            op.offline = True
        if self.install_message:
            _wrapped(box, self.install_message, "INFO")
        if self.install_log:
            box.operator("fsgan.open_install_log", text="Open Install Log", icon="TEXT")
        box.label(text=f"Installs into {site_packages_dir()}")

        layout.prop(self, "keep_job_files")
        count, size = decode.cache_usage()
        row = layout.row()
        row.label(
            text=f"Decoded frames (movie, OpenEXR strips): {size / 2**20:.1f} MB, {count} "
            f"strip{'s' if count != 1 else ''}",
            icon="FILE_MOVIE",
        )
        row.operator("fsgan.clear_decoded_frames", text="Clear", icon="TRASH")


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 90) -> None:
    import textwrap

    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")


def _status_info(prefs) -> dict:
    try:
        info = json.loads(prefs.status_json or "{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


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


def site_packages_dir() -> str:
    """The extension's user folder that Install fills (kept across extension upgrades)."""
    return paths.user_dir("site-packages")


def wheels_site_packages() -> str | None:
    """Where Blender installs an extension's bundled wheels (for Blender's own Python)."""
    try:
        root = bpy.utils.user_resource("EXTENSIONS")
    except (ValueError, TypeError):
        return None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return os.path.join(root, ".local", "lib", version, "site-packages")


def worker_paths(prefs) -> tuple[str, ...]:
    """Extra folders for the worker's PYTHONPATH (see the module docstring)."""
    python, _source = resolve_python(prefs)
    found = []
    target = site_packages_dir()
    marker = installer.read_marker(target)
    if marker and installer.same_file(str(marker.get("python", "")), python):
        found.append(target)
    wheels = wheels_site_packages()
    if wheels and os.path.isdir(wheels) and installer.same_file(python, sys.executable):
        found.append(wheels)
    return tuple(found)


def addon_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def online_access() -> bool:
    return bool(getattr(bpy.app, "online_access", True))


# -- status ---------------------------------------------------------------------------------


def status_key(prefs) -> str:
    python, _source = resolve_python(prefs)
    return json.dumps([python, list(worker_paths(prefs))])


def _doctor_call(prefs):
    """A function that runs the doctor for the current choice (safe to call in a thread)."""
    python, source = resolve_python(prefs)
    extra = worker_paths(prefs)
    try:
        core_parent = worker_client.find_core_parent(addon_dir())
    except worker_client.WorkerError as exc:
        message = str(exc)
        return lambda: {"ready": False, "message": message, "info": {}, "checked": time.time()}
    return lambda: installer.doctor(python, source, core_parent, extra)


def apply_status(prefs, key: str, result: dict) -> None:
    """Store a doctor result in the preferences (main thread)."""
    prefs.status_ready = bool(result.get("ready"))
    prefs.status_message = str(result.get("message", ""))
    prefs.status_json = json.dumps(result.get("info") or {})
    prefs.status_time = float(result.get("checked") or time.time())
    prefs.status_key = key


def check_now(prefs) -> dict:
    """Run the doctor and wait for it (background mode, after an install)."""
    key = status_key(prefs)
    result = _doctor_call(prefs)()
    apply_status(prefs, key, result)
    return result


def ensure_status(prefs) -> None:
    """Start a check in a thread if none runs; a timer stores the result. Never blocks."""
    if bpy.app.background:
        return  # no timers run while a background script blocks: use check_now()
    key = status_key(prefs)
    if _status.start(key, _doctor_call(prefs)) and not bpy.app.timers.is_registered(_poll_status):
        bpy.app.timers.register(_poll_status, first_interval=0.3)


def _poll_status():
    result = _status.take()
    if result is None:
        return 0.3 if _status.running else None
    prefs = get()
    if prefs is not None:
        apply_status(prefs, _status.key or "", result)
    _redraw()
    return None


def worker_problem(context) -> str | None:
    """A short reason the worker is not ready (for the sidebar), or None when ready/unknown."""
    prefs = get(context)
    if prefs is None:
        return None
    if prefs.status_key != status_key(prefs):
        ensure_status(prefs)
        return None
    return None if prefs.status_ready else prefs.status_message


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type in {"PREFERENCES", "SEQUENCE_EDITOR"}:
                area.tag_redraw()


# -- operators ------------------------------------------------------------------------------


class FSGAN_OT_check_worker(bpy.types.Operator):
    bl_idname = "fsgan.check_worker"
    bl_label = "Check Worker Python"
    bl_description = "Run the worker's doctor in its Python: is PyTorch there, which device"

    def execute(self, context):
        prefs = get(context)
        if prefs is None:
            self.report({"ERROR"}, "The add-on's preferences are not available.")
            return {"CANCELLED"}
        if not bpy.app.background:
            ensure_status(prefs)
            self.report({"INFO"}, "Checking the worker Python...")
            return {"FINISHED"}
        result = check_now(prefs)
        if not result["ready"]:
            self.report({"ERROR"}, result["message"])
            return {"CANCELLED"}
        self.report({"INFO"}, result["message"])
        return {"FINISHED"}


class FSGAN_OT_install_torch(bpy.types.Operator):
    bl_idname = "fsgan.install_torch"
    bl_label = "Install PyTorch"
    bl_description = (
        "Install PyTorch and the worker's other requirements with pip, for the worker Python, "
        "into this extension's user folder"
    )

    offline: BoolProperty(
        name="Offline",
        description="Install from the chosen wheel folder only, without network access",
        default=False,
    )
    blocking: BoolProperty(
        name="Wait",
        description="In background mode (no event loop, so no timers), wait for pip to end; "
        "off, pip runs in the background and _poll_install must be called as a timer would",
        default=True,
        options={"HIDDEN", "SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        if _install is not None and not _install.finished:
            cls.poll_message_set("An install is already running.")
            return False
        return True

    def execute(self, context):
        global _install
        prefs = get(context)
        if prefs is None:
            self.report({"ERROR"}, "The add-on's preferences are not available.")
            return {"CANCELLED"}
        try:
            job = self._prepare(prefs)
        except worker_client.WorkerError as exc:
            prefs.install_message = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _install = job
        prefs.install_log = job.log_path
        prefs.install_message = ""
        job.start()
        if bpy.app.background and self.blocking:
            job.wait(on_progress=lambda j: print(f"FSGAN install: {j.phase} ({j.fraction:.0%})"))
            return self._end(prefs, job, report=self.report)
        if not bpy.app.timers.is_registered(_poll_install):
            bpy.app.timers.register(_poll_install, first_interval=0.5)
        self.report({"INFO"}, f"Installing PyTorch in the background (log: {job.log_path}).")
        return {"FINISHED"}

    def _prepare(self, prefs) -> installer.PipInstall:
        python, source = resolve_python(prefs)
        python = worker_client.check_python(python, source)
        wheel_dir = ""
        if self.offline:
            wheel_dir = paths.abspath(prefs.wheel_dir)
            if not wheel_dir or not os.path.isdir(wheel_dir):
                raise worker_client.WorkerError(
                    f"The wheel folder '{prefs.wheel_dir}' does not exist; choose a folder of "
                    ".whl files made with `pip download` in " + WHERE + "."
                )
            if not any(n.endswith(".whl") for n in os.listdir(wheel_dir)):
                raise worker_client.WorkerError(
                    f"The folder '{wheel_dir}' holds no .whl files; fill it with "
                    f"`pip download {' '.join(installer.requirements(sys.version_info[:2]))}` "
                    "first."
                )
        elif not online_access():
            raise worker_client.WorkerError(ONLINE_HINT)
        variant = prefs.install_variant
        if variant == "AUTO":
            variant = installer.default_variant(driver=installer.nvidia_driver_major())
        if sys.platform == "darwin" and variant in ("cuda", "cuda12", "rocm"):
            name = "ROCm" if variant == "rocm" else "CUDA"
            raise worker_client.WorkerError(
                f"PyTorch has no {name} build for macOS; choose Automatic or CPU."
            )
        index_url = None
        if prefs.index_url.strip() and not wheel_dir:
            index_url = installer.check_index_url(prefs.index_url)
        target = site_packages_dir()
        log_path = os.path.join(paths.user_dir("logs"), time.strftime("install-%Y%m%d-%H%M%S.log"))
        runner = sys.executable
        foreign = None if installer.same_file(runner, python) else python

        def command():
            pip = installer.pip_prefix(runner if foreign else python)
            # numpy's pin differs on Python 3.13 (Blender 5.1+): ask the worker's Python.
            requirements = installer.requirements(installer.python_version(python))
            marker["requirements"] = list(requirements)
            return installer.install_command(
                pip,
                target,
                variant=variant,
                wheel_dir=wheel_dir or None,
                worker_python=foreign,
                index_url=index_url,
                requirements=requirements,
            )

        marker = {
            "python": python,
            "variant": "offline" if wheel_dir else variant,
            "wheel_dir": wheel_dir or None,
            "index_url": index_url,
            "requirements": [],  # set by command(), from the worker Python's version
            "installed": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        return installer.PipInstall(command, target, log_path, marker)

    @staticmethod
    def _end(prefs, job: installer.PipInstall, report=None) -> set[str]:
        if job.error:
            prefs.install_message = job.error
            if report is not None:
                report({"ERROR"}, job.error)
            return {"CANCELLED"}
        if bpy.app.background:
            result = check_now(prefs)
        else:
            ensure_status(prefs)
            result = {"ready": True, "message": "checking the worker..."}
        if result["ready"]:
            prefs.install_message = f"Installed. {result['message']}"
        else:
            prefs.install_message = (
                f"pip finished, but the worker is not ready: {result['message']}"
            )
        if report is not None:
            report({"INFO"} if result["ready"] else {"ERROR"}, prefs.install_message)
        return {"FINISHED"} if result["ready"] else {"CANCELLED"}


def _poll_install():
    job = _install
    _redraw()
    if job is None:
        return None
    if not job.finished:
        return 0.5
    prefs = get()
    if prefs is not None:
        FSGAN_OT_install_torch._end(prefs, job)
    _redraw()
    return None


def cancel_install(wait_s: float = 10.0) -> None:
    """Stop a running pip and wait (briefly) until it has ended; also run at Blender's exit."""
    job = _install
    if job is not None and not job.finished:
        job.cancel()
        job.wait(timeout=wait_s)


def shutdown() -> None:
    """The add-on is being disabled: stop a running pip and the timers, so no pip outlives the
    add-on (pip moves files into place only at its very end, so the packages folder keeps what
    it had)."""
    cancel_install()
    for func in (_poll_install, _poll_status):
        while bpy.app.timers.is_registered(func):
            bpy.app.timers.unregister(func)


class FSGAN_OT_cancel_install(bpy.types.Operator):
    bl_idname = "fsgan.cancel_install"
    bl_label = "Cancel Install"
    bl_description = "Stop pip; the packages folder is left as it was before"

    @classmethod
    def poll(cls, context):
        return _install is not None and not _install.finished

    def execute(self, context):
        _install.cancel()
        return {"FINISHED"}


class FSGAN_OT_open_install_log(bpy.types.Operator):
    bl_idname = "fsgan.open_install_log"
    bl_label = "Open Install Log"
    bl_description = "Open the log of the latest install (pip's full output)"

    def execute(self, context):
        prefs = get(context)
        path = prefs.install_log if prefs else ""
        if not path or not os.path.isfile(path):
            self.report({"ERROR"}, "There is no install log yet.")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=path)
        return {"FINISHED"}


classes = (
    FSGAN_AddonPreferences,
    FSGAN_OT_check_worker,
    FSGAN_OT_install_torch,
    FSGAN_OT_cancel_install,
    FSGAN_OT_open_install_log,
)
