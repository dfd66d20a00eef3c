"""Decode benchmark: how long Blender takes to turn a movie strip into frames for the worker.

    python bench/decode.py                          # 240 frames of 1920x1080 H.264, 128x72 training
    python bench/decode.py --frames 96 --size 1280x720 --train 256x144 --json decode.json

Runs in real Blender (the ``bpy`` module; the add-on from this source tree, its user folder in a
temporary HOME). It encodes a test movie with Blender's own FFmpeg (a moving text over a colour,
``--crf`` quality, not timed), adds it as a movie strip and times ``fsgan_blender.strips``:

1. ``visible_frame_paths(strip, 2 x training size)``: what *Train on strip* decodes (all frames);
2. ``context_frame_paths(strip, "END", ...)``: what *Extend animation* decodes without Continue
   Loops (8 frames, full size);
3. the same training call again: the cache;
4. with Continue Loops (the default) *Extend* reads up to ``strips.LOOP_HISTORY`` (96) frames at
   full size: decoded in one go (a script's way) and, from an empty cache again, by the UI's
   ``DecodeTask`` a chunk per timer event. Its longest step is the longest the window waits.

It prints one JSON line with the timings and frames per second. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def encode(path: str, frames: int, width: int, height: int, crf: str) -> None:
    import bpy

    scene = bpy.data.scenes.new("Encode")
    se = scene.sequence_editor_create()
    strips = se.strips if hasattr(se, "strips") else se.sequences
    if bpy.app.version >= (5, 0, 0):
        colour = strips.new_effect("bg", "COLOR", 1, 1, length=frames)
        text = strips.new_effect("text", "TEXT", 2, 1, length=frames)
    else:
        colour = strips.new_effect("bg", "COLOR", 1, 1, frame_end=frames + 1)
        text = strips.new_effect("text", "TEXT", 2, 1, frame_end=frames + 1)
    colour.color = (0.2, 0.4, 0.8)
    text.text = "FrameSequenceGAN"
    text.font_size = height // 6
    text.location = (0.1, 0.5)
    text.keyframe_insert("location", frame=1)
    text.location = (0.9, 0.5)
    text.keyframe_insert("location", frame=frames)
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    scene.frame_start, scene.frame_end = 1, frames
    if hasattr(r.image_settings, "media_type"):
        r.image_settings.media_type = "VIDEO"
    r.image_settings.file_format = "FFMPEG"
    r.ffmpeg.format = "MPEG4"
    r.ffmpeg.codec = "H264"
    r.ffmpeg.constant_rate_factor = crf
    r.filepath = path
    bpy.ops.render.render(animation=True, scene=scene.name)
    bpy.data.scenes.remove(scene)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=240, help="frames in the movie")
    p.add_argument("--size", type=size, default=(1920, 1080), help="movie size, WxH")
    p.add_argument("--train", type=size, default=(128, 72), help="training resolution, WxH")
    p.add_argument("--crf", default="MEDIUM", help="Blender's H.264 quality enum (not timed)")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument(
        "--ui-pixels",
        type=int,
        default=None,
        help="pixels the UI's decode renders per step (default: decode.DECODE_CHUNK_PIXELS)",
    )
    args = p.parse_args()

    home = tempfile.mkdtemp(prefix="fsgan_decode_")
    os.environ["HOME"] = home  # the add-on's user folder (the cache) lives under it
    os.environ.pop("BLENDER_USER_RESOURCES", None)
    import bpy

    sys.path.insert(0, str(ROOT))
    from fsgan_blender import decode, strips

    movie = os.path.join(home, "movie.mp4")
    encode(movie, args.frames, *args.size, args.crf)
    scene = bpy.context.scene
    scene.render.fps = 24
    se = scene.sequence_editor_create()
    strip = strips.children(se).new_movie("movie", movie, 1, 1)
    tw, th = args.train

    t0 = time.perf_counter()
    train = strips.visible_frame_paths(strip, (2 * tw, 2 * th))
    t1 = time.perf_counter()
    context = strips.context_frame_paths(strip, "END", 0)
    t2 = time.perf_counter()
    strips.visible_frame_paths(strip, (2 * tw, 2 * th))
    t3 = time.perf_counter()

    history = strips.context_indices(strip, "END", 0, strips.LOOP_HISTORY)
    folder = decode._plan(strip, None)[1]
    shutil.rmtree(folder, ignore_errors=True)
    t4 = time.perf_counter()
    strips.context_frame_paths(strip, "END", 0, strips.LOOP_HISTORY)
    t5 = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    if args.ui_pixels:
        decode.DECODE_CHUNK_PIXELS = args.ui_pixels
    task = decode.DecodeTask(scene.name, strip.name, None, indices=history, purpose="extending")
    first_chunk, steps = task.chunk, []
    while True:
        ts = time.perf_counter()
        finished = task.step()
        steps.append(time.perf_counter() - ts)
        if finished:
            break

    from PIL import Image

    result = {
        "blender": bpy.app.version_string,
        "movie": f"{args.size[0]}x{args.size[1]} H.264 ({args.crf}), {args.frames} frames",
        "movie_mb": round(os.path.getsize(movie) / 2**20, 2),
        "train_size": list(Image.open(train[0]).size),
        "train_frames": len(train),
        "train_s": round(t1 - t0, 3),
        "train_fps": round(len(train) / (t1 - t0), 1),
        "context_frames": len(context),
        "context_size": list(Image.open(context[0]).size),
        "context_s": round(t2 - t1, 3),
        "cached_s": round(t3 - t2, 4),
        "loops_frames": len(history),
        "loops_one_go_s": round(t5 - t4, 3),
        "loops_task_chunk": first_chunk,
        "loops_task_steps": len(steps),
        "loops_task_total_s": round(sum(steps), 3),
        "loops_task_longest_step_s": round(max(steps), 3),
        "cpu_count": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    line = json.dumps(result)
    print(line, flush=True)
    if args.json:
        Path(args.json).write_text(line + "\n")
    sys.stdout.flush()
    os._exit(0)  # importing bpy can hang at interpreter exit


if __name__ == "__main__":
    main()
