"""Open a .blend and report its strips."""

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def main():
    p = bl.parser()
    p.add_argument("--blend", required=True)
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    bpy.ops.wm.open_mainfile(filepath=args.blend)
    bl.result(stage="inspect", strips=[bl.describe(s) for s in bl.top_strips()])


bl.run(main)
