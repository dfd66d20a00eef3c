"""The whole product, headless: build the extension, install it into Blender, train, extend.

    python scripts/blender_demo.py [--out demo_out] [--steps 400] [--device auto]

Run it with a Python that has the ``bpy`` module (Blender 4.2-5.x from PyPI) and PyTorch. It
1. builds dist/fsgan_blender-<version>.zip with build.py (validated by Blender's tooling);
2. writes the built-in procedural animation (a bouncing ball) as PNG frames;
3. in a separate Blender process with its own user folder (<out>/blender_user), installs and
   enables the extension, adds the frames as an image strip, runs Train on Strip and Extend
   Animation, and saves <out>/demo.blend;
4. writes <out>/contact_sheet.png: the last source frames above the generated ones.
The defaults are small so that it finishes in a few minutes on a 2-core CPU; raise --steps,
--size and --model-width for a better model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = "bl_ext.user_default.fsgan_blender"
STRIP = "bouncing_ball"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--frames", type=int, default=32, help="source frames (default: 32)")
    p.add_argument("--count", type=int, default=16, help="frames to generate (default: 16)")
    p.add_argument("--steps", type=int, default=400, help="training steps (default: 400)")
    p.add_argument("--size", default="64x36", help="frame and training size WxH (default: 64x36)")
    p.add_argument(
        "--model-width", type=float, default=0.5, help="channel multiplier (default: 0.5)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--timeout", type=float, default=1800, help="Blender stage limit in seconds")
    p.add_argument("--blender-stage", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--zip", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def size_of(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


# -- stage 2: inside Blender (a subprocess; importing bpy can hang at exit, so it exits hard) --


def blender_stage(args) -> int:
    import bpy

    out = os.path.abspath(args.out)
    width, height = size_of(args.size)
    ret = bpy.ops.extensions.package_install_files(
        filepath=args.zip, repo="user_default", enable_on_install=True
    )
    if ret != {"FINISHED"} or MODULE not in bpy.context.preferences.addons:
        print("error: the extension did not install", file=sys.stderr)
        return 1

    strips = sys.modules[MODULE + ".strips"]  # the add-on's API differences (4.2 to 5.x)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.fps = 24
    se = scene.sequence_editor_create()
    collection = strips.children(se)
    source_dir = os.path.join(out, "source")
    strip = collection.new_image(STRIP, os.path.join(source_dir, "frame_0001.png"), 1, 1)
    for i in range(2, args.frames + 1):
        strip.elements.append(f"frame_{i:04d}.png")
    se.active_strip = strip
    scene.frame_start, scene.frame_end = 1, args.frames + args.count

    settings = scene.fsgan
    settings.model_dir = os.path.join(out, "models")
    settings.output_dir = os.path.join(out, "generated")
    settings.batch_size = args.batch_size
    settings.preview_every = 0
    t0 = time.monotonic()
    bpy.ops.fsgan.train_on_strip(
        steps=args.steps,
        width=width,
        height=height,
        model_width=args.model_width,
        device=args.device,
    )
    t1 = time.monotonic()
    bpy.ops.fsgan.extend_animation(count=args.count)
    t2 = time.monotonic()
    new = se.active_strip
    blend = os.path.join(out, "demo.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    directory = bpy.path.abspath(new.directory)
    result = {
        "blend": blend,
        "checkpoint": bpy.path.abspath(strip["fsgan_checkpoint"]),
        "generated": [os.path.join(directory, e.filename) for e in new.elements],
        "source": [os.path.join(source_dir, e.filename) for e in strip.elements],
        "strip": {"name": new.name, "start": strips.left_handle(new), "channel": new.channel},
        "train_s": round(t1 - t0, 1),
        "extend_s": round(t2 - t1, 1),
        "blender": bpy.app.version_string,
    }
    print("DEMO_RESULT " + json.dumps(result), flush=True)
    return 0


# -- stages 1 and 3: plain Python ------------------------------------------------------------


def main(args) -> int:
    sys.path.insert(0, ROOT)
    import build
    from core.procedural import contact_sheet, make_clip, write_frames

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    width, height = size_of(args.size)
    t0 = time.monotonic()
    zip_path = build.build(Path(out) / "dist")
    print(f"built {zip_path}", flush=True)
    write_frames(make_clip(STRIP, args.frames, width, height), os.path.join(out, "source"))

    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = os.path.join(out, "blender_user")  # not the user's Blender
    cmd = [sys.executable, os.path.abspath(__file__), "--blender-stage", "--zip", str(zip_path)]
    cmd += [
        "--out", out, "--frames", str(args.frames), "--count", str(args.count),
        "--steps", str(args.steps), "--size", args.size, "--model-width", str(args.model_width),
        "--batch-size", str(args.batch_size), "--device", args.device,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    result = None
    try:
        for line in proc.stdout:
            if line.startswith("DEMO_RESULT "):
                result = json.loads(line[len("DEMO_RESULT ") :])
            else:
                print(line, end="", flush=True)
        proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        print("error: the Blender stage took too long", file=sys.stderr)
        return 1
    if proc.returncode != 0 or result is None:
        print(f"error: the Blender stage failed (exit {proc.returncode})", file=sys.stderr)
        return 1

    sheet = contact_sheet(
        [result["source"][-len(result["generated"]) :], result["generated"]],
        os.path.join(out, "contact_sheet.png"),
        cell=96,
        labels=["source", "generated"],
    )
    print(
        f"\ndemo finished in {time.monotonic() - t0:.0f} s with Blender {result['blender']} "
        f"(training {result['train_s']} s, extending {result['extend_s']} s)\n"
        f"  scene:         {result['blend']}\n"
        f"  new strip:     {result['strip']['name']} at frame {result['strip']['start']}, "
        f"channel {result['strip']['channel']}\n"
        f"  frames:        {os.path.dirname(result['generated'][0])}\n"
        f"  checkpoint:    {result['checkpoint']}\n"
        f"  contact sheet: {sheet}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.blender_stage:
        code = 1
        try:
            code = blender_stage(arguments)
        except RuntimeError as exc:  # an operator's ERROR report
            print(f"error: {str(exc).strip()}", file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # importing bpy can hang at interpreter exit
    sys.exit(main(arguments))
