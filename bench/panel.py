"""Sidebar benchmark: what one redraw of the add-on's Sequencer panels costs on a long strip.

    python bench/panel.py                         # 1,000 and 20,000 frames
    python bench/panel.py --frames 500 5000 --json panel.json

Runs in real Blender (the ``bpy`` module; the add-on registered from this source tree, its user
folder in a temporary HOME). For each length it makes an image strip of that many PNG files
(hard links of one small PNG) and times, per redraw, the three panels' ``draw()`` (Source,
Training, Extend: with the one allowed fake, a layout that records calls) plus the polls of Train
and Extend, which Blender runs for their buttons:

- ``cold``: the add-on's remembered file lists and missing-file checks cleared before each redraw
  (what every redraw cost before they were remembered, and what one costs after a change);
- ``warm``: redraws in a row, as while a job's progress redraws the sidebar four times a second.

It prints a table with the cold/warm ratio and one JSON line; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def redraw_ms(bl, panels, ops, repeat: int, clear) -> float:
    """Median milliseconds of one redraw (three panels and two polls)."""
    times = []
    for _ in range(repeat):
        clear()
        t0 = time.perf_counter()
        for cls in (panels.FSGAN_PT_source, panels.FSGAN_PT_training, panels.FSGAN_PT_extend):
            bl.draw_panel(cls)
        ops.train_on_strip.poll()
        ops.extend_animation.poll()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[1000, 20000])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    os.environ["HOME"] = tempfile.mkdtemp(prefix="fsgan-bench-home-")
    sys.path.insert(0, str(ROOT / "tests" / "blender" / "bl_scripts"))
    import _bl_common as bl  # the recording layout of the panel tests
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon = bl.register_source(str(ROOT))
    strips = addon.strips
    results = []
    for n in args.frames:
        folder = tempfile.mkdtemp(prefix=f"fsgan-bench-{n}-")
        first = os.path.join(folder, "frame_00001.png")
        img = bpy.data.images.new("bench", 8, 8)
        img.filepath_raw, img.file_format = first, "PNG"
        img.save()
        bpy.data.images.remove(img)
        for i in range(2, n + 1):
            os.link(first, os.path.join(folder, f"frame_{i:05d}.png"))
        scene = bpy.context.scene
        se = scene.sequence_editor_create()
        for old in list(bl.strips_of(se)):
            bl.strips_of(se).remove(old)
        strip = bl.strips_of(se).new_image(f"long{n}", first, 1, 1)
        for i in range(2, n + 1):
            strip.elements.append(f"frame_{i:05d}.png")
        se.active_strip = strip
        problem = strips.strip_problem(strip, check_files=True)
        assert problem is None, problem  # a usable strip: every check runs to its end

        def clear():
            strips._files_cache.clear()
            strips._missing_cache.clear()

        cold = redraw_ms(bl, addon.panels, bpy.ops.fsgan, args.repeat, clear)
        warm = redraw_ms(bl, addon.panels, bpy.ops.fsgan, args.repeat, lambda: None)
        results.append({"frames": n, "cold_ms": cold, "warm_ms": warm, "ratio": cold / warm})

    print(f"bpy {bpy.app.version_string}, one sidebar redraw (3 panels + 2 polls), median of "
          f"{args.repeat}")  # fmt: skip
    print(f"{'frames':>8} {'cold ms':>9} {'warm ms':>9} {'cold/warm':>10}")
    for r in results:
        print(f"{r['frames']:>8} {r['cold_ms']:>9.2f} {r['warm_ms']:>9.2f} {r['ratio']:>9.1f}x")
    summary = {"bpy": bpy.app.version_string, "repeat": args.repeat, "results": results}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    sys.stdout.flush()
    os._exit(0)  # importing bpy can hang at interpreter exit


if __name__ == "__main__":
    main()
