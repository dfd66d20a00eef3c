"""The worker's environment in real Blender: doctor status, bad interpreters, offline install.

Stages (each a RESULT line):
- ``status``: the doctor of the default worker Python, as stored in the preferences;
- ``bad_python`` / ``not_python`` / ``no_torch``: custom interpreters that cannot work;
- ``online_refused``: the online install while Blender's online access is off;
- ``offline``: with ``--wheels``, the offline install for the worker Python ``--bare-python``
  (a venv without any packages), then its status and a real training job from that folder;
- ``mirror``: with ``--index-url``, the *online* install (online access allowed, CPU variant)
  from that package index, the way the UI runs it: pip in the background and the timer
  function ``_poll_install`` called as Blender's event loop would, with the preferences drawn
  mid-install (progress bar, Cancel);
- ``disable``: an install running while the add-on is disabled: pip must be gone afterwards and
  the packages folder as it was.
"""

import json
import os
import sys
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def prefs_data(prefs) -> dict:
    return {
        "ready": prefs.status_ready,
        "message": prefs.status_message,
        "info": json.loads(prefs.status_json or "{}"),
        "key": json.loads(prefs.status_key or "null"),
        "install_message": prefs.install_message,
        "install_log": prefs.install_log,
    }


def main():
    p = bl.parser()
    p.add_argument("--no-torch-python", required=True)
    p.add_argument("--wheels", default=None)
    p.add_argument("--bare-python", default=None)
    p.add_argument("--index-url", default=None)
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    prefs = bpy.context.preferences.addons[bl.MODULE].preferences
    module = sys.modules[bl.MODULE + ".preferences"]

    t0 = time.monotonic()
    op = bl.call_op(bpy.ops.fsgan.check_worker)
    bl.result(stage="status", op=op, prefs=prefs_data(prefs), seconds=time.monotonic() - t0,
              python=module.resolve_python(prefs)[0], executable=sys.executable)  # fmt: skip

    prefs.python_path = os.path.join(args.work, "no such folder", "python")
    bl.result(stage="bad_python", op=bl.call_op(bpy.ops.fsgan.check_worker),
              prefs=prefs_data(prefs))  # fmt: skip
    not_python = os.path.join(args.work, "not_python.sh")
    with open(not_python, "w") as f:
        f.write("#!/bin/sh\necho 'this is not python' >&2\nexit 3\n")
    os.chmod(not_python, 0o755)
    prefs.python_path = not_python
    bl.result(stage="not_python", op=bl.call_op(bpy.ops.fsgan.check_worker),
              prefs=prefs_data(prefs))  # fmt: skip
    prefs.python_path = args.no_torch_python
    bl.result(stage="no_torch", op=bl.call_op(bpy.ops.fsgan.check_worker),
              prefs=prefs_data(prefs))  # fmt: skip
    prefs.python_path = ""

    # Allow Online Access off, as a user may have it (bpy's default too): no download.
    bpy.context.preferences.system.use_online_access = False
    refused = bl.call_op(bpy.ops.fsgan.install_torch, offline=False)
    bl.result(stage="online_refused", online=bpy.app.online_access, op=refused,
              job=None if module._install is None else module._install.log_path)  # fmt: skip

    if args.wheels:
        prefs.python_path = args.bare_python
        prefs.wheel_dir = args.wheels
        t0 = time.monotonic()
        install = bl.call_op(bpy.ops.fsgan.install_torch, offline=True)
        install_s = time.monotonic() - t0
        target = module.site_packages_dir()
        paths_ = module.worker_paths(prefs)
        train = train_job(args)
        bl.result(stage="offline", op=install, seconds=install_s, prefs=prefs_data(prefs),
                  target=target, worker_paths=list(paths_), train=train,
                  torch_in_target=os.path.isdir(os.path.join(target, "torch")))  # fmt: skip
    if args.index_url:
        mirror_install(args, prefs, module)
    bl.result(stage="prefs_draw", log=draw_prefs(prefs))
    if args.wheels:
        disable_during_install(args, prefs, module)
    del addon


def mirror_install(args, prefs, module) -> None:
    bpy.context.preferences.system.use_online_access = True  # as a user allows it
    prefs.python_path = args.bare_python
    prefs.index_url = "mirror.example.com simple"
    bl.result(stage="bad_index", op=bl.call_op(bpy.ops.fsgan.install_torch, offline=False))
    prefs.index_url = args.index_url
    prefs.install_variant = "cpu"
    target = module.site_packages_dir()
    t0 = time.monotonic()
    op = bl.call_op(bpy.ops.fsgan.install_torch, offline=False, blocking=False)
    registered = bpy.app.timers.is_registered(module._poll_install)
    polls, mid_draw, fractions = 0, None, []
    while True:  # Blender's event loop: call the timer until it returns None
        job = module._install
        fractions.append(job.fraction)
        if mid_draw is None and not job.finished and job.phase != "Starting pip":
            mid_draw = draw_prefs(prefs)
        nxt = module._poll_install()
        polls += 1
        if nxt is None or time.monotonic() - t0 > 600:
            break
        time.sleep(nxt)
    seconds = time.monotonic() - t0
    ended = dict(finished=module._install.finished, error=module._install.error,
                 install_message=prefs.install_message)  # fmt: skip
    check = bl.call_op(bpy.ops.fsgan.check_worker)
    bl.result(stage="mirror", op=op, registered=registered, polls=polls, seconds=seconds,
              mid_draw=mid_draw, fractions=fractions, ended=ended, check=check,
              prefs=prefs_data(prefs), marker=module.installer.read_marker(target),
              worker_paths=list(module.worker_paths(prefs)), target=target)  # fmt: skip
    prefs.index_url = ""


def disable_during_install(args, prefs, module) -> None:
    """Start an offline install, wait until pip runs, then disable the add-on."""
    import addon_utils

    target = module.site_packages_dir()
    before = sorted(os.listdir(target))
    marker_before = module.installer.read_marker(target)
    prefs.python_path = args.bare_python
    prefs.wheel_dir = args.wheels
    op = bl.call_op(bpy.ops.fsgan.install_torch, offline=True, blocking=False)
    job = module._install
    t0 = time.monotonic()
    while (job.proc is None or job.phase == "Starting pip") and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    pid = job.proc.pid if job.proc else None
    running = job.proc is not None and job.proc.poll() is None
    addon_utils.disable(bl.MODULE, default_set=True)
    alive = False
    if pid is not None:
        try:
            os.kill(pid, 0)
            alive = job.proc.poll() is None
        except OSError:
            alive = False
    bl.result(stage="disable", op=op, pid=pid, running_before=running, alive_after=alive,
              enabled=bl.MODULE in bpy.context.preferences.addons, cancelled=job.cancelled,
              error=job.error, timers=bpy.app.timers.is_registered(module._poll_install),
              unchanged=sorted(os.listdir(target)) == before,
              marker_same=module.installer.read_marker(target) == marker_before)  # fmt: skip


def draw_prefs(prefs) -> list[dict]:
    """The preferences' draw() with a recording layout (no window in background mode)."""
    layout = bl.RecordingLayout()

    class Host:
        def __getattr__(self, name):
            return getattr(prefs, name)

    host = Host()
    host.__dict__["layout"] = layout
    type(prefs).draw(host, bpy.context)
    return layout.log


def train_job(args) -> dict:
    scene = bpy.context.scene
    scene.fsgan.batch_size = 2
    strip = bl.add_image_strip("walk", args.frames, 16)
    scene.sequence_editor.active_strip = strip
    out = bl.call_op(bpy.ops.fsgan.train_on_strip, steps=2, width=32, height=32,
                     model_width=0.125, device="cpu")  # fmt: skip
    out["checkpoint"] = bl.describe(strip)["checkpoint"]
    return out


bl.run(main)
