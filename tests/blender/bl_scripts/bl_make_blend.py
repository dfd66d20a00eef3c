"""Save a .blend with one image strip (no add-on needed)."""

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402


def main():
    p = bl.parser()
    p.add_argument("--blend", required=True)
    p.add_argument("--name", required=True)
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    bl.add_image_strip(args.name, args.frames, 16, channel=2, frame_start=5)
    bpy.ops.wm.save_as_mainfile(filepath=args.blend)


bl.run(main)
