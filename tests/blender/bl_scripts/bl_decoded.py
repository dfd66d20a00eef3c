"""Frames Blender decodes for the worker: a movie strip (trims, reversal, cache, train, extend,
refusals) and an OpenEXR image strip (train, extend).

Run by tests/blender/test_decoded.py inside real bpy. The movie and the EXR frames are made
here, by Blender itself: the 16 procedural frames as lossless H.264 and as half-float EXR.
"""

import os
import shutil
import sys

import bpy
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bl_common as bl  # noqa: E402
import _tiff  # noqa: E402


def encode(frames: str, filepath: str, media_type: str, file_format: str, prefix: str = "frame_",
           **settings) -> None:  # fmt: skip
    """``frames``/frame_0001..16.png (64x36; ``prefix`` for another name, and a ``count``
    setting for fewer) rendered by a scratch scene to ``filepath``: a movie, or numbered images
    where it ends in ####. ``settings``: image_settings or, with an ``ffmpeg_`` prefix, FFmpeg
    settings."""
    scene = bpy.data.scenes.new("Encode")
    strips = bl.strips_of(scene.sequence_editor_create())
    strip = strips.new_image("src", os.path.join(frames, f"{prefix}0001.png"), 1, 1)
    for i in range(2, settings.get("count", 16) + 1):
        strip.elements.append(f"{prefix}{i:04d}.png")
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 64, 36, 100
    r.fps, r.fps_base = 24, 1.0
    r.dither_intensity = 0.0
    scene.frame_start, scene.frame_end = 1, settings.pop("count", 16)
    scene.view_settings.view_transform = "Standard"
    if hasattr(r.image_settings, "media_type"):  # 5.0: movies are a media type of their own
        r.image_settings.media_type = media_type
    r.image_settings.file_format = file_format
    for key, value in settings.items():
        if key.startswith("ffmpeg_"):
            setattr(r.ffmpeg, key.removeprefix("ffmpeg_"), value)
        else:
            setattr(r.image_settings, key, value)
    r.filepath = filepath
    bpy.ops.render.render(animation=True, scene=scene.name)
    bpy.data.scenes.remove(scene)


def encode_movie(frames: str, path: str) -> None:
    """The frames as a lossless H.264 movie."""
    encode(frames, path, "VIDEO", "FFMPEG", ffmpeg_format="MPEG4", ffmpeg_codec="H264",
           ffmpeg_constant_rate_factor="LOSSLESS")  # fmt: skip
    assert os.path.isfile(path), path


def encode_exr(frames: str, folder: str) -> None:
    """The frames as ``folder``/shot_0001..16.exr (half float, linear)."""
    encode(frames, os.path.join(folder, "shot_####"), "IMAGE", "OPEN_EXR", color_depth="16")


def pixels(path: str) -> np.ndarray:
    img = bpy.data.images.load(path, check_existing=False)
    try:
        w, h = img.size
        a = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(a)
        return a.reshape(h, w, 4)[::-1, :, :3]  # top row first, RGB
    finally:
        bpy.data.images.remove(img)


def match(paths: list[str], frames: str) -> list[dict]:
    """For each decoded frame: the source frame it is closest to, and how close (0-255)."""
    sources = [pixels(os.path.join(frames, f"frame_{i:04d}.png")) for i in range(1, 17)]
    out = []
    for p in paths:
        a = pixels(p)
        if a.shape != sources[0].shape:
            out.append({"shape": list(a.shape)})
            continue
        errs = [float(np.abs(a - s).mean() * 255) for s in sources]
        best = int(np.argmin(errs))
        out.append({"source": best + 1, "mean_abs": round(errs[best], 3)})
    return out


def timeline_truth(scene, first: int, last: int, folder: str) -> list[str]:
    """What ``scene``'s timeline shows at frames first..last, rendered the way the add-on
    decodes (sRGB, Standard, no dither, at the movie's size): the ground truth."""
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 64, 36, 100
    r.dither_intensity = 0.0
    if hasattr(r.image_settings, "media_type"):
        r.image_settings.media_type = "IMAGE"
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGB"
    scene.view_settings.view_transform = "Standard"
    scene.frame_start, scene.frame_end = first, last
    r.filepath = os.path.join(folder, "t_####")
    bpy.ops.render.render(animation=True, scene=scene.name)
    return [os.path.join(folder, f"t_{f:04d}.png") for f in range(first, last + 1)]


def differences(a: list[str], b: list[str], mirror: bool = False) -> list[float]:
    """Mean absolute difference (0-255) of each pair; ``mirror``: b's frames flipped in x."""
    out = []
    for x, y in zip(a, b):
        other = pixels(y)[:, ::-1] if mirror else pixels(y)
        out.append(round(float(np.abs(pixels(x) - other).mean() * 255), 3))
    return out


def image_size(path: str) -> list[int]:
    img = bpy.data.images.load(path, check_existing=False)
    size = list(img.size)
    bpy.data.images.remove(img)
    return size


def write_sprites(folder: str, count: int, opaque: bool, ext: str = "png", size=(64, 36),
                  opaque_first: bool = False) -> None:  # fmt: skip
    """``folder``/s_0001.<ext>...: a white square moving over a transparent background (or,
    ``opaque``, over a solid blue one; ``opaque_first``: only the first frame, a title card),
    RGBA, written by Blender."""
    os.makedirs(folder, exist_ok=True)
    w, h = size
    for i in range(count):
        a = np.zeros((h, w, 4), np.float32)
        if opaque or (opaque_first and i == 0):
            a[..., 2] = a[..., 3] = 1.0
        a[10:26, 4 + 6 * i : 20 + 6 * i] = 1.0
        img = bpy.data.images.new("sprite", w, h, alpha=True, float_buffer=ext == "exr")
        img.pixels.foreach_set(a.ravel())
        img.filepath_raw = os.path.join(folder, f"s_{i + 1:04d}.{ext}")
        img.file_format = "OPEN_EXR" if ext == "exr" else "PNG"
        img.save()
        bpy.data.images.remove(img)


def decode_error(S, strip, max_size=None) -> str | None:
    """The ValueError decoding the strip's frames raises (its sentence), or None."""
    try:
        S.visible_frame_paths(strip, max_size)
    except ValueError as exc:
        return str(exc)
    return None


def alpha_of(path: str) -> list:
    """[Blender's depth of the file (32: 8-bit RGBA, 24: RGB), its lowest alpha]."""
    img = bpy.data.images.load(path, check_existing=False)
    try:
        a = np.empty(len(img.pixels), np.float32)
        img.pixels.foreach_get(a)
        return [img.depth, round(float(a[3::4].min()), 3)]
    finally:
        bpy.data.images.remove(img)


def train_and_extend(scene, strip) -> dict:
    """Train on ``strip`` (1 step, tiny) and extend it by 2 frames: the operators' results and
    the depth of each generated file (32: RGBA); the new strip is removed again."""
    scene.sequence_editor.active_strip = strip
    train = bl.call_op(bpy.ops.fsgan.train_on_strip, steps=1, width=32, height=18,
                       model_width=0.125, device="cpu")  # fmt: skip
    extend = bl.call_op(bpy.ops.fsgan.extend_animation, count=2, device="cpu")
    new = scene.sequence_editor.active_strip
    directory = bpy.path.abspath(new.directory)
    generated = [alpha_of(os.path.join(directory, e.filename))[0] for e in new.elements]
    bl.top_strips().remove(new)
    return {"train": train, "extend": extend, "generated": generated}


def alpha_stage(S, D, scene, args):
    """Decoded frames keep transparency when the strip's frames use it (a reversed sprite, an
    RGBA OpenEXR), and stay RGB for an opaque picture stored as RGBA; Extend from the sprite
    gives RGBA frames."""
    out = {}
    cases = (
        ("sprite", False, "png", True, (64, 36), False),
        ("solid", True, "png", True, (64, 36), False),
        ("sprite_exr", False, "exr", False, (64, 36), False),
        ("title_card_first", False, "png", True, (64, 36), True),  # frame 1 opaque, rest not
        ("big_exr", False, "exr", False, (600, 300), False),  # the check looks at a small copy
    )
    for name, opaque, ext, reverse, size, opaque_first in cases:
        folder = os.path.join(args.work, name)
        write_sprites(folder, 6, opaque, ext, size, opaque_first)
        strip = bl.top_strips().new_image(name, os.path.join(folder, f"s_0001.{ext}"), 30, 1)
        for i in range(2, 7):
            strip.elements.append(f"s_{i:04d}.{ext}")
        strip.use_reverse_frames = reverse  # a PNG strip Blender decodes
        frames = S.visible_frame_paths(strip, (64, 36))
        context = S.context_frame_paths(strip, "END", 0)
        out[name] = {
            "needs_decode": D.needs_decode(strip),
            "frames": [alpha_of(f) for f in frames[:2]],
            "context": alpha_of(context[-1]),
            "transparent": D.transparent(strip),
        }
        if name == "title_card_first":
            strip.frame_offset_start = 1  # trimmed past the card: the same decision, same cache
            out[name]["trimmed_same_folder"] = os.path.dirname(
                S.visible_frame_paths(strip, (64, 36))[0]
            ) == os.path.dirname(frames[0])
        if name == "sprite":
            out[name].update(train_and_extend(scene, strip))
        bl.top_strips().remove(strip)
    # Movies: the sprite as QuickTime Animation with alpha (Blender's depth 32) decodes to RGBA
    # and Extend from it writes RGBA; as H.264 (no alpha in the codec) it stays RGB.
    sprite = os.path.join(args.work, "sprite")
    movies = (
        (
            "movie_alpha.mov",
            dict(ffmpeg_format="QUICKTIME", ffmpeg_codec="QTRLE", color_mode="RGBA"),
        ),
        ("movie_h264.mp4", dict(ffmpeg_format="MPEG4", ffmpeg_codec="H264", color_mode="RGB")),
    )
    for file, settings in movies:
        name, path = os.path.splitext(file)[0], os.path.join(args.work, file)
        encode(sprite, path, "VIDEO", "FFMPEG", prefix="s_", count=6, **settings)
        strip = bl.top_strips().new_movie(name, path, 30, 1)
        frames = S.visible_frame_paths(strip, (64, 36))
        out[name] = {
            "transparent": D.transparent(strip),
            "frames": [alpha_of(f) for f in frames[:2]],
            "count": len(frames),
        }
        if name == "movie_alpha":
            out[name]["context"] = alpha_of(S.context_frame_paths(strip, "END", 0)[-1])
            out[name].update(train_and_extend(scene, strip))
        bl.top_strips().remove(strip)
    bl.result(stage="alpha", **out)


def write_soft_sprites(folder: str, count: int) -> None:
    """``folder``/soft_0001.exr...: a dark orange disc with a soft edge (alpha falling from 1
    to 0 over 8 pixels) moving over a transparent background, written by Blender as float RGBA.
    Dark, because the sequencer converts premultiplied values to sRGB before dividing by alpha:
    a bright edge comes out brighter than white, which no 8-bit frame holds."""
    os.makedirs(folder, exist_ok=True)
    yy, xx = np.mgrid[0:36, 0:64].astype(np.float32)
    for i in range(count):
        r = np.hypot(xx - 20 - 4 * i, yy - 18)
        alpha = np.clip((16 - r) / 8, 0, 1)
        a = np.zeros((36, 64, 4), np.float32)
        a[..., 0], a[..., 1], a[..., 3] = 0.2 * alpha, 0.08 * alpha, alpha  # premultiplied
        img = bpy.data.images.new("soft", 64, 36, alpha=True, float_buffer=True)
        img.pixels.foreach_set(a[::-1].ravel())
        img.filepath_raw = os.path.join(folder, f"soft_{i + 1:04d}.exr")
        img.file_format = "OPEN_EXR"
        img.save()
        bpy.data.images.remove(img)


def seam_stage(S, D, args):
    """Frames as the worker reads them (the files, or the PNGs Blender decodes), inserted as the
    "generated" strip, render at the cut as the source's own frame does: a PNG strip flipped,
    moved, turned and cropped (Blender mirrors after the transform: a flip baked into the
    frames came out mirrored), and an OpenEXR sprite with soft edges over a colour strip (its
    decoded PNGs hold straight alpha, where the EXR's is premultiplied)."""
    scene = bpy.data.scenes.new("Seam")
    collection = bl.strips_of(scene.sequence_editor_create())
    kw = {"length": 60} if bpy.app.version >= (5, 0, 0) else {"frame_end": 61}
    collection.new_effect("under", "COLOR", 1, 1, **kw).color = (0.2, 0.5, 0.9)
    soft_dir = os.path.join(args.work, "soft_exr")
    write_soft_sprites(soft_dir, 4)
    folder = os.path.join(args.work, "seam")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name in ("flipped", "soft_exr"):
        if name == "flipped":
            src = collection.new_image(name, os.path.join(args.frames, "frame_0001.png"), 2, 1)
            for i in range(2, 5):
                src.elements.append(f"frame_{i:04d}.png")
            src.use_flip_x = src.use_flip_y = True
            src.transform.offset_x, src.transform.offset_y = 9.0, -4.0
            src.transform.rotation = 0.3
            src.crop.min_x, src.crop.max_y = 6, 3
        else:
            src = collection.new_image(name, os.path.join(soft_dir, "soft_0001.exr"), 2, 1)
            for i in range(2, 5):
                src.elements.append(f"soft_{i:04d}.exr")
        frames = S.visible_frame_paths(src)  # what Train and Extend read, at full size
        last = frames[-1]
        new = S.insert_image_strip(
            scene, src, os.path.dirname(last), [os.path.basename(last)], src.frame_final_end
        )
        a = bl.render(scene, src.frame_final_end - 1, os.path.join(folder, f"{name}_src"))
        b = bl.render(scene, src.frame_final_end, os.path.join(folder, f"{name}_new"))
        alpha = new.alpha_mode
        new.alpha_mode = "PREMUL" if alpha == "STRAIGHT" else "STRAIGHT"  # the other way
        c = bl.render(scene, src.frame_final_end, os.path.join(folder, f"{name}_other"))
        new.alpha_mode = alpha
        out[name] = {
            "other_alpha_mean": round(float(np.abs(a - c).mean() * 255), 3),
            "needs_decode": D.needs_decode(src),
            "new_alpha": new.alpha_mode,
            "new_flip": [new.use_flip_x, new.use_flip_y],
            "mean": round(float(np.abs(a - b).mean() * 255), 3),
            "max": round(float(np.abs(a - b).max() * 255), 3),
        }
        collection.remove(new)
        collection.remove(src)
    bl.result(stage="seam", **out)
    bpy.data.scenes.remove(scene)


def tiff_stage(S, D, args):
    """Float RGB TIFF frames (Pillow reads none; Blender does): Blender decodes them, to what
    the timeline shows; an 8-bit TIFF strip the worker reads itself."""
    scene = bpy.data.scenes.new("Tiff")
    collection = bl.strips_of(scene.sequence_editor_create())
    folder = os.path.join(args.work, "float_tiff")
    os.makedirs(folder, exist_ok=True)
    yy, xx = np.mgrid[0:36, 0:64].astype(np.float32)
    for i in range(4):
        a = np.zeros((36, 64, 3), np.float32)
        a[..., 0], a[..., 2] = xx / 63, yy / 35
        a[..., 1] = ((xx - 6 * i) // 8 % 2) * 0.6  # stripes moving right
        _tiff.write_float_tiff(os.path.join(folder, f"t_{i + 1:04d}.tif"), a)
    strip = collection.new_image("float_tiff", os.path.join(folder, "t_0001.tif"), 1, 1)
    for i in range(2, 5):
        strip.elements.append(f"t_{i:04d}.tif")
    frames = S.visible_frame_paths(strip)
    truth = timeline_truth(scene, 1, 4, os.path.join(args.work, "truth_tiff"))
    eight = os.path.join(args.work, "tiff8")
    os.makedirs(eight, exist_ok=True)
    for i in range(3):
        img = bpy.data.images.new("t8", 64, 36)
        img.filepath_raw = os.path.join(eight, f"e_{i + 1:04d}.tif")
        img.file_format = "TIFF"
        img.save()
        bpy.data.images.remove(img)
    plain = collection.new_image("tiff8", os.path.join(eight, "e_0001.tif"), 2, 1)
    for i in range(2, 4):
        plain.elements.append(f"e_{i:04d}.tif")
    bl.result(
        stage="tiff",
        needs_decode=D.needs_decode(strip),
        decoded=[os.path.splitext(f)[1] for f in frames],
        vs_timeline=differences(frames, truth),
        stripes_move=differences(frames[:1], frames[1:2]),
        eight_bit_needs_decode=D.needs_decode(plain),
    )
    bpy.data.scenes.remove(scene)


def main():
    p = bl.parser()
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :])
    addon = bl.load_addon(args)
    S, D = addon.strips, addon.decode
    movie_file = os.path.join(args.work, "clip.mp4")
    encode_movie(args.frames, movie_file)

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    se = scene.sequence_editor_create()
    movie = bl.top_strips().new_movie("clip", movie_file, 2, 10)
    movie.frame_offset_start = 2
    movie.frame_offset_end = 3
    se.active_strip = movie

    train_frames = S.visible_frame_paths(movie, max_size=(32, 32))
    mtimes = [os.stat(f).st_mtime_ns for f in train_frames]
    again = S.visible_frame_paths(movie, max_size=(32, 32))
    context_end = S.context_frame_paths(movie, "END", 0)
    context_playhead = S.context_frame_paths(movie, "PLAYHEAD", 15)
    bl.result(
        stage="decode",
        type=movie.type,
        final=[movie.frame_final_start, movie.frame_final_end],
        problem=S.strip_problem(movie, check_files=True),
        content=S.content_length(movie),
        visible=len(S.visible_indices(movie)),
        resolution=S.strip_resolution(movie),
        train_sizes=sorted({tuple(image_size(f)) for f in train_frames}),
        train_count=len(train_frames),
        cached=again == train_frames and mtimes == [os.stat(f).st_mtime_ns for f in again],
        end_context=match(context_end, args.frames),
        end_sizes=sorted({tuple(image_size(f)) for f in context_end}),
        playhead_context=match(context_playhead, args.frames),
        scenes=[s.name for s in bpy.data.scenes],
        panel=bl.draw_panel(addon.panels.FSGAN_PT_source),
    )

    calls = []
    D.DECODE_CHUNK = 4  # progress after every 4 frames: 11 frames in 3 chunks
    S.visible_frame_paths(movie, (16, 16), progress=lambda done, total: calls.append([done, total]))
    bl.result(
        stage="chunks",
        progress=calls,
        runs=D._chunks([9, 1, 2, 3, 5, 6, 7], most=2),
        # the UI's next step at the last one's pace (target 0.5 s, at most 16 frames)
        next_chunk=[
            D.next_chunk(4, 0.1, 16, 0.5),  # 20 would fit; twice the last at most
            D.next_chunk(16, 0.25, 16, 0.5),  # the most
            D.next_chunk(2, 0.5, 16, 0.5),  # on target
            D.next_chunk(4, 1.6, 16, 0.5),  # slow: fewer
            D.next_chunk(1, 3.0, 16, 0.5),  # never none
            D.next_chunk(3, 0.0, 16, 0.5),
        ],
    )
    D.DECODE_CHUNK = 48
    D.DECODE_STEP_S = 0  # the tasks below keep their first chunk: steps known in advance

    # The UI's way: a chunk per timer event (the modal operator needs a window; this drives
    # the same task, and shows it in the panel, the status bar and Cancel).
    task = D.DecodeTask(scene.name, "clip", (20, 20), chunk=4)
    steps = [[task.done, task.total]]
    while not task.step():
        steps.append([task.done, task.total])
    steps.append([task.done, task.total])
    addon.operators._decoding = task
    status = bl.RecordingLayout()
    addon.panels.draw_status(type("Host", (), {"layout": status})(), bpy.context)
    decoding = {
        "steps": steps,
        "left": D.uncached(movie, list(S.visible_indices(movie)), (20, 20)),
        "train_poll": bl.call_op(bpy.ops.fsgan.train_on_strip)["error"],
        "panel": bl.draw_panel(addon.panels.FSGAN_PT_training),
        "status": status.log,
        "cancel": bl.call_op(bpy.ops.fsgan.cancel_job),
        "cancelled": task.cancelled,
    }
    # Disabling the add-on mid-decode (no cancel() then) must not leave Train refused.
    addon.unregister()  # what disabling runs
    addon.register()
    decoding["after_reenable"] = addon.operators._running_problem()
    spare = bl.top_strips().new_movie("spare", movie_file, 9, 300)
    spare_task = D.DecodeTask(scene.name, "spare", (12, 12))
    bl.top_strips().remove(spare)
    try:
        spare_task.step()
        decoding["gone"] = None
    except ValueError as exc:
        decoding["gone"] = str(exc)
    decoding["cached_total"] = D.DecodeTask(scene.name, "clip", (20, 20)).total
    bl.result(stage="task", **decoding)

    movie.use_reverse_frames = True
    reversed_frames = S.visible_frame_paths(movie)
    movie.use_reverse_frames = False
    bl.result(stage="reversed", frames=match(reversed_frames[:3], args.frames))

    # Strobe, and a reversed, flipped PNG strip (which the worker could read, but not as the
    # timeline shows it): the decoded frames equal what the timeline renders, mirrored back (the
    # flip is left to the strip: Blender mirrors after the transform, see the seam stage).
    movie.strobe = 3.0
    strobed = S.visible_frame_paths(movie)
    truth = timeline_truth(scene, 12, 22, os.path.join(args.work, "truth_movie"))
    movie.strobe = 1.0
    movie.mute = True
    flipped = bl.add_image_strip("flipped", args.frames, 16, channel=3, frame_start=10)
    flipped.frame_offset_start = 2
    flipped.use_reverse_frames = True
    flipped.use_flip_x = True
    flipped_frames = S.visible_frame_paths(flipped)
    flipped_truth = timeline_truth(scene, 12, 25, os.path.join(args.work, "truth_png"))
    bl.result(
        stage="as_shown",
        strobe_sources=[m["source"] for m in match(strobed, args.frames)],
        strobe_vs_timeline=differences(strobed, truth),
        flipped_needs_decode=D.needs_decode(flipped),
        flipped_vs_timeline=differences(flipped_frames, flipped_truth, mirror=True),
        flipped_vs_unmirrored=differences(flipped_frames, flipped_truth),
        flipped_count=len(flipped_frames),
        # A movie Blender plays at its own rate (30 fps in a 24 fps scene: 30 frames over 24)
        # and one slower than the scene (24 over 30); retiming matches neither.
        faster=[D._frame_map(24, 30, 30.0, 24.0)(i) for i in range(24)],
        slower=[D._frame_map(30, 24, 24.0, 30.0)(i) for i in range(30)],
        retimed=D._frame_map(24, 30, 24.0, 24.0) is None,
        # Reversed, Blender reverses the timeline frame first: the copy's reversed frame j
        # shows movie frame 29 - j, so timeline frame i needs j = 29 - floor((23 - i) * 1.25).
        faster_reversed=[D._frame_map(24, 30, 30.0, 24.0, reverse=True)(i) for i in range(24)],
    )
    bl.top_strips().remove(flipped)
    movie.mute = False

    scene.fsgan.batch_size = 2
    scene.fsgan.preview_every = 0
    scene.fsgan.output_dir = os.path.join(args.work, "generated")
    bl.add_color_strip("block", 2, 23, 30)  # the movie's channel is taken after its end
    se.active_strip = movie
    train = bl.call_op(
        bpy.ops.fsgan.train_on_strip, steps=2, width=32, height=18, model_width=0.125,
        device="cpu",
    )  # fmt: skip
    movie = bl.top_strips()["clip"]
    # Extend in the UI decodes its context (all 11 visible frames with Continue Loops, at the
    # movie's size) a chunk per timer event first, as Train does; the job then finds them all.
    full_cache = D._plan(movie, None)[1]
    shutil.rmtree(full_cache)
    D.DECODE_CHUNK_PIXELS = 4 * 64 * 36  # 4 frames of the movie's size per step
    etask = addon.operators.extend_decode_task(scene, movie, "END", True)
    D.DECODE_CHUNK_PIXELS = 1 << 22
    esteps = [[etask.done, etask.total]]
    while not etask.step():
        esteps.append([etask.done, etask.total])
    esteps.append([etask.done, etask.total])
    addon.operators._decoding = etask
    extend_decoding = {
        "steps": esteps,
        "chunk": etask.chunk,
        "poll": bl.call_op(bpy.ops.fsgan.extend_animation)["error"],
        "panel": bl.draw_panel(addon.panels.FSGAN_PT_extend),
        "train_panel": bl.draw_panel(addon.panels.FSGAN_PT_training),
        "cached_task": addon.operators.extend_decode_task(scene, movie, "END", True),
        "no_loops_task": addon.operators.extend_decode_task(scene, movie, "END", False),
    }
    addon.operators._decoding = None
    extend_decoding["cached_task"] = extend_decoding["cached_task"] is None
    extend_decoding["no_loops_task"] = extend_decoding["no_loops_task"] is None
    before = {f: os.stat(os.path.join(full_cache, f)).st_mtime_ns for f in os.listdir(full_cache)}
    extend = bl.call_op(bpy.ops.fsgan.extend_animation, "EXEC_DEFAULT", True, count=3)
    after = {f: os.stat(os.path.join(full_cache, f)).st_mtime_ns for f in os.listdir(full_cache)}
    extend_decoding["decoded_again"] = sorted(f for f in after if before.get(f) != after[f])
    extend_decoding["cached_files"] = len(before)
    new = scene.sequence_editor.active_strip
    files = [os.path.join(bpy.path.abspath(new.directory), e.filename) for e in new.elements]
    bl.result(
        stage="extend",
        train=train,
        checkpoint=S.checkpoint_of(movie),
        extend=extend,
        new=bl.describe(new),
        sizes=[image_size(f) for f in files],
        movie_end=movie.frame_final_end,
        movie_channel=movie.channel,
        decoding=extend_decoding,
    )

    # OpenEXR frames, which the worker does not read: Blender decodes them as well.
    exr_dir = os.path.join(args.work, "exr")
    encode_exr(args.frames, exr_dir)
    exr = bl.top_strips().new_image("shot", os.path.join(exr_dir, "shot_0001.exr"), 4, 200)
    for i in range(2, 17):
        exr.elements.append(f"shot_{i:04d}.exr")
    exr.frame_offset_end = 4  # frames 1-12 show
    se.active_strip = exr
    exr_context = S.context_frame_paths(exr, "END", 0)
    train_exr = bl.call_op(
        bpy.ops.fsgan.train_on_strip, steps=1, width=32, height=18, model_width=0.125,
        device="cpu",
    )  # fmt: skip
    extend_exr = bl.call_op(bpy.ops.fsgan.extend_animation, "EXEC_DEFAULT", True, count=2)
    new_exr = scene.sequence_editor.active_strip
    # A damaged header (a negative attribute size) must not hang the panel that reads it.
    bad_exr = os.path.join(args.work, "bad.exr")
    with open(bad_exr, "wb") as f:
        f.write(
            b"\x76\x2f\x31\x01"
            + b"\x02\0\0\0"
            + b"name\0type\0"
            + (-12).to_bytes(4, "little", signed=True)
            + b"\0" * 32
        )
    import signal

    signal.alarm(10)  # a regression fails here instead of hanging until the test's timeout
    bad_size = S.image_size(bad_exr)
    signal.alarm(0)
    # A frame file Blender cannot read renders as "missing media" without an error: it is found
    # (from its header) and named. A frame that is black in its file (a fade) is accepted.
    damaged_dir = os.path.join(args.work, "exr_damaged")
    shutil.copytree(exr_dir, damaged_dir)
    black = bpy.data.images.new("black", 64, 36, float_buffer=True)  # (0, 0, 0, 1) everywhere
    black.filepath_raw = os.path.join(damaged_dir, "shot_0005.exr")
    black.file_format = "OPEN_EXR"
    black.save()
    bpy.data.images.remove(black)
    faded = bl.top_strips().new_image("faded", os.path.join(damaged_dir, "shot_0001.exr"), 5, 300)
    for i in range(2, 9):
        faded.elements.append(f"shot_{i:04d}.exr")
    faded_frames = D.decoded_frame_paths(faded, list(range(8)), (32, 32))
    truncated = os.path.join(damaged_dir, "shot_0003.exr")
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) // 2)
    broken = bl.top_strips().new_image("broken", os.path.join(damaged_dir, "shot_0001.exr"), 6, 300)
    for i in range(2, 9):
        broken.elements.append(f"shot_{i:04d}.exr")
    try:
        D.decoded_frame_paths(broken, list(range(8)), (32, 32))
        broken_error = None
    except ValueError as exc:
        broken_error = str(exc)
    broken.frame_offset_end = 5  # contents 0-2 show, reversed: shot_0008 to shot_0006 (not
    broken.use_reverse_frames = True  # the damaged shot_0003): they decode
    broken_short = D.decoded_frame_paths(broken, [0, 1, 2])  # full size
    broken.frame_offset_end = 0  # content frame 5 shows the damaged file
    se.active_strip = broken
    broken_train = bl.call_op(
        bpy.ops.fsgan.train_on_strip, steps=1, width=32, height=18, model_width=0.125,
        device="cpu",
    )  # fmt: skip
    # Strobe 2 shows contents 0, 0, 2, 2, 4, ...: a damaged odd one (shot_0004) never shows.
    odd_dir = os.path.join(args.work, "exr_odd")
    shutil.copytree(exr_dir, odd_dir)
    with open(os.path.join(odd_dir, "shot_0004.exr"), "r+b") as f:
        f.truncate(100)
    strobed = bl.top_strips().new_image("strobed", os.path.join(odd_dir, "shot_0001.exr"), 7, 300)
    for i in range(2, 9):
        strobed.elements.append(f"shot_{i:04d}.exr")
    strobed.strobe = 2.0
    strobed_frames = D.decoded_frame_paths(strobed, list(range(8)))
    strobed.strobe = 1.0
    try:
        D.decoded_frame_paths(strobed, list(range(8)))
        unstrobed_error = None
    except ValueError as exc:
        unstrobed_error = str(exc)
    bl.top_strips().remove(strobed)
    try:  # the UI's chunked decode says so before its first chunk
        D.DecodeTask(scene.name, "broken", (24, 24))
        task_error = None
    except ValueError as exc:
        task_error = str(exc)
    bl.result(
        stage="damaged",
        task_error=task_error,
        strobed=[m["source"] for m in match(strobed_frames, args.frames)],
        unstrobed_error=unstrobed_error,
        faded_black=[not pixels(p).any() for p in faded_frames],
        error=broken_error,
        reversed_ok=[m["source"] for m in match(broken_short, args.frames)],
        train=broken_train,
    )
    for s in (faded, broken):
        bl.top_strips().remove(s)
    se.active_strip = exr

    bl.result(
        stage="exr",
        colorspace=exr.colorspace_settings.name,
        needs_decode=D.needs_decode(exr),
        png_needs_decode=D.needs_decode(bl.top_strips()["clip_gan"]),
        header_size=S.strip_resolution(exr, load=False),
        bad_header_size=bad_size,
        context=match(exr_context, args.frames),
        train=train_exr,
        extend=extend_exr,
        new=bl.describe(new_exr),
    )

    alpha_stage(S, D, scene, args)
    seam_stage(S, D, args)
    tiff_stage(S, D, args)

    # The cache in the preferences, and its Clear button.
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    host = type("Host", (), {"__getattr__": lambda _self, name: getattr(prefs, name)})()
    host.layout = bl.RecordingLayout()
    before = D.cache_usage(max_age_s=0)
    type(prefs).draw(host, bpy.context)
    cleared = bl.call_op(bpy.ops.fsgan.clear_decoded_frames)
    after = D.cache_usage(max_age_s=0)
    again = S.visible_frame_paths(movie, (32, 32))  # decoded again on demand
    bl.result(
        stage="cache",
        before=before,
        after=after,
        cleared=cleared,
        labels=[e.get("text", "") for e in host.layout.log if e["call"] == "label"],
        again=len(again) == 11 and all(os.path.isfile(f) for f in again),
    )

    # Refusals: a // movie path in an unsaved file; a movie file that went away.
    rel = bl.top_strips().new_movie("rel", movie_file, 5, 100)
    rel.filepath = "//clip.mp4"
    gone_file = os.path.join(args.work, "gone.mp4")
    shutil.copy(movie_file, gone_file)
    gone = bl.top_strips().new_movie("gone", gone_file, 6, 100)
    os.remove(gone_file)
    damaged_file = os.path.join(args.work, "damaged.mp4")
    shutil.copy(movie_file, damaged_file)
    damaged = bl.top_strips().new_movie("damaged", damaged_file, 7, 100)
    with open(damaged_file, "wb") as f:
        f.write(bytes(range(256)) * 20)  # not a movie any more
    decode_damaged = decode_error(S, damaged)
    se.active_strip = gone
    decode_gone = decode_error(S, gone)
    bl.result(
        stage="refused",
        relative=S.strip_problem(rel),
        gone=S.strip_problem(gone, check_files=True),
        decode_gone=decode_gone,
        decode_damaged=decode_damaged,
        train_gone=bl.call_op(bpy.ops.fsgan.train_on_strip, steps=1),
    )

    # A Stream Index the file lacks (Blender would show "missing media"), and a movie file
    # replaced by a shorter one since the strip was added: said as such, not as retiming.
    streams = bl.top_strips().new_movie("streams", movie_file, 8, 100)
    streams.stream_index = 3
    replaced_file = os.path.join(args.work, "replaced.mp4")
    shutil.copy(movie_file, replaced_file)
    replaced = bl.top_strips().new_movie("replaced", replaced_file, 9, 100)
    encode(args.frames, replaced_file, "VIDEO", "FFMPEG", ffmpeg_format="MPEG4",
           ffmpeg_codec="H264", ffmpeg_constant_rate_factor="LOSSLESS", count=6)  # fmt: skip
    bl.result(
        stage="streams",
        stream_problem=S.strip_problem(streams),
        replaced=decode_error(S, replaced, (32, 32)),
    )


bl.run(main)
