"""A bundled build (``build.py --with-wheels``) installed the way a user installs it.

Blender installs the zip's wheels into its folder for extension wheels; the worker, running
Blender's own Python, gets that folder on its path. Stage ``bundled``: where the wheels went,
the worker's paths and status, and the doctor of a Python *without* packages given those same
paths, which can only find torch in Blender's wheel folder.
"""

import os
import sys
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def main():
    p = bl.parser()
    p.add_argument("--bare-python", required=True)
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    t0 = time.monotonic()
    addon = bl.install(args.zip)
    install_s = time.monotonic() - t0
    module = sys.modules[bl.MODULE + ".preferences"]
    prefs = bpy.context.preferences.addons[bl.MODULE].preferences
    wheels = module.wheels_site_packages()
    worker_paths = list(module.worker_paths(prefs))
    op = bl.call_op(bpy.ops.fsgan.check_worker)
    core_parent = module.worker_client.find_core_parent(module.addon_dir())
    bare = module.installer.doctor(args.bare_python, "test", core_parent, tuple(worker_paths))
    bl.result(stage="bundled", seconds=install_s, wheels=wheels,
              torch_in_wheels=os.path.isdir(os.path.join(wheels or "", "torch")),
              worker_paths=worker_paths, op=op, ready=prefs.status_ready,
              message=prefs.status_message, bare=bare)  # fmt: skip
    del addon


bl.run(main)
