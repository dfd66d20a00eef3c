"""Frames Blender decodes for the worker: movie strips, and image strips in formats the worker
does not read (OpenEXR, DPX, Cineon, Radiance HDR, JPEG 2000, ...).

A copy of the strip renders in a scratch scene (sRGB display, Standard view, no dither), so the
PNGs are what the strip shows; they are cached per strip, file versions, picture settings and
size in the extension's user folder. Blender's main thread is busy meanwhile: decoding runs in
chunks with the window manager's progress (about 20 ms a frame for a 1080p H.264 movie scaled
to 256x144 on a 2-core CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator

import bpy

from . import paths, strips

# What the worker reads itself (core.data.IMAGE_EXTS); Blender decodes anything else.
WORKER_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".tga")
DECODED_CACHE_KEEP = 8  # strips (per size) whose decoded frames stay in the user folder
DECODE_CHUNK = 48  # frames Blender decodes between two progress updates

# What a strip's picture depends on, copied onto the scratch strip that renders it (those a
# Blender version or strip type lacks are skipped). Modifiers and retiming are not copied.
_PICTURE_PROPS = (
    "stream_index",
    "animation_offset_start",
    "animation_offset_end",
    "use_reverse_frames",
    "use_flip_x",
    "use_flip_y",
    "use_deinterlace",
    "color_saturation",
    "color_multiply",
)


def needs_decode(strip) -> bool:
    """Whether Blender must decode the strip's frames for the worker: a movie, or image files
    in a format the worker does not read (OpenEXR, DPX, Cineon, Radiance HDR, JPEG 2000, ...)."""
    if strip.type == "MOVIE":
        return True
    return any(
        os.path.splitext(strip.elements[i].filename)[1].lower() not in WORKER_IMAGE_EXTS
        for i in strips.visible_indices(strip)
    )


def _fit(size: tuple[int, int], max_size: tuple[int, int] | None) -> tuple[int, int]:
    """``size`` scaled down to fit inside ``max_size`` (aspect kept), never up."""
    w, h = size
    if not max_size:
        return w, h
    f = min(1.0, max_size[0] / w, max_size[1] / h)
    return max(1, round(w * f)), max(1, round(h * f))


def _decode_cache(strip, size: tuple[int, int]) -> str:
    """The cache folder for this strip's frames at ``size``: a new folder when a file or any
    setting that changes the picture changes."""
    if strip.type == "MOVIE":
        files = [strips.movie_path(strip)]
    else:
        directory = strips.strip_directory(strip)
        files = [os.path.join(directory, e.filename) for e in strip.elements]
    scene = strip.id_data
    facts = [strip.type, size, strip.colorspace_settings.name, strip.alpha_mode]
    facts += [scene.render.fps, scene.render.fps_base]
    facts += [repr(getattr(strip, a, None)) for a in _PICTURE_PROPS]
    facts += [(f, *strips.file_stat(f)) for f in files]
    key = hashlib.sha1(repr(facts).encode()).hexdigest()[:16]
    base = paths.user_dir("decoded_frames")
    _prune(base, keep=DECODED_CACHE_KEEP, current=key)
    folder = os.path.join(base, key)
    os.makedirs(folder, exist_ok=True)
    os.utime(folder)  # most recently used
    return folder


def _prune(base: str, keep: int, current: str) -> None:
    try:
        entries = [e for e in os.listdir(base) if e != current]
    except OSError:
        return
    folders = [os.path.join(base, e) for e in entries if os.path.isdir(os.path.join(base, e))]
    folders.sort(key=os.path.getmtime)
    for old in folders[: max(0, len(folders) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def decoded_frame_paths(
    strip,
    indices: list[int],
    max_size: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """PNG files of the strip's content frames ``indices`` (as ``visible_indices`` numbers
    them), decoded and rendered by Blender, cached in the extension's user folder.

    The frames are what the strip shows in an sRGB view with the Standard transform, at the
    source's size or scaled down to fit ``max_size``. ``progress(done, total)`` is called after
    each chunk of frames. Raises ValueError with a sentence for the user when Blender cannot
    read the frames.
    """
    if not indices:
        return []
    problem = strips.files_problem(strip)
    if problem:
        raise ValueError(problem)
    what = "movie" if strip.type == "MOVIE" else "frames"
    where = strips.movie_path(strip) if strip.type == "MOVIE" else strips.strip_directory(strip)
    native = strips.strip_resolution(strip)
    if native is None:
        raise ValueError(
            f"Blender cannot read the {what} of strip '{strip.name}' ({where}): no picture size."
        )
    size = _fit(native, max_size)
    folder = _decode_cache(strip, size)
    out = [os.path.join(folder, f"{i:06d}.png") for i in indices]
    todo = [i for i, p in zip(indices, out) if not os.path.isfile(p)]
    if todo:
        _render_copy(strip, _chunks(todo), size, folder, progress)
    missing = [p for p in out if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"Blender could not decode {len(missing)} of {len(out)} frames of strip "
            f"'{strip.name}' ({where})."
        )
    return out


def _copy_strip(collection, strip):
    """A copy of an image or movie strip at frame 1 of ``collection``, fit to the render size,
    showing the same picture: content frame ``i`` at frame ``1 + i``."""
    if strip.type == "MOVIE":
        copy = collection.new_movie("source", strips.movie_path(strip), 1, 1, fit_method="FIT")
    else:
        directory = strips.strip_directory(strip)
        first = os.path.join(directory, strip.elements[0].filename)
        copy = collection.new_image("source", first, 1, 1, fit_method="FIT")
        for element in list(strip.elements)[1:]:
            copy.elements.append(element.filename)
    for attr in _PICTURE_PROPS:
        if hasattr(strip, attr) and hasattr(copy, attr):
            setattr(copy, attr, getattr(strip, attr))
    strips.set_enum(copy.colorspace_settings, "name", strip.colorspace_settings.name)
    copy.alpha_mode = strip.alpha_mode
    shown, decoded = strips.content_length(strip), strips.content_length(copy)
    if strip.type == "MOVIE" and (copy.elements[0].orig_width <= 0 or decoded <= 1):
        raise ValueError(
            f"Blender cannot read the movie {strips.movie_path(strip)} of strip '{strip.name}': "
            "the file is damaged or in a format this Blender does not decode."
        )
    if decoded != shown:
        raise ValueError(
            f"The strip '{strip.name}' shows {shown} frames of content where its files decode "
            f"to {decoded}: a retimed or sped-up strip is not supported; remove the retiming, or "
            "render the strip to images."
        )
    return copy


def _chunks(todo: list[int], most: int | None = None) -> list[tuple[int, int]]:
    """Sorted frame indices as (first, last) runs of consecutive frames, at most ``most``
    (default ``DECODE_CHUNK``) frames each."""
    most = most or DECODE_CHUNK
    runs: list[tuple[int, int]] = []
    for i in sorted(todo):
        if runs and i == runs[-1][1] + 1 and i - runs[-1][0] < most:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _render_copy(
    strip,
    runs: list[tuple[int, int]],
    size: tuple[int, int],
    folder: str,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Render the content frames of each (first, last) run of a copy of ``strip`` in a scratch
    scene to ``folder/<index>.png`` (each written whole, then moved into place)."""
    source_scene = strip.id_data
    tmp = bpy.data.scenes.new(".fsgan_decode")
    work = os.path.join(folder, f".render-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        r = tmp.render
        r.resolution_x, r.resolution_y = size
        r.resolution_percentage = 100
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0
        r.fps, r.fps_base = source_scene.render.fps, source_scene.render.fps_base
        r.use_sequencer = True
        r.use_compositing = False
        r.dither_intensity = 0.0  # dither would add noise to every frame
        if hasattr(r.image_settings, "media_type"):  # 5.0
            r.image_settings.media_type = "IMAGE"
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.image_settings.color_depth = "8"
        strips.set_enum(tmp.display_settings, "display_device", "sRGB")
        strips.set_enum(tmp.view_settings, "view_transform", "Standard")
        strips.set_enum(tmp.view_settings, "look", "None")
        tmp.view_settings.exposure = 0.0
        tmp.view_settings.gamma = 1.0
        tmp.view_settings.use_curve_mapping = False
        strips.set_enum(tmp.sequencer_colorspace_settings, "name", "sRGB")
        _copy_strip(strips.children(tmp.sequence_editor_create()), strip)
        r.filepath = os.path.join(work, "f_#######")
        r.use_file_extension = True
        total = sum(last - first + 1 for first, last in runs)
        done = 0
        for first, last in runs:
            tmp.frame_start, tmp.frame_end = 1 + first, 1 + last
            try:
                with _quiet_stdout():  # Blender prints two lines per frame written
                    bpy.ops.render.render(animation=True, scene=tmp.name)
            except RuntimeError as exc:
                raise ValueError(
                    f"Blender could not decode the frames of strip '{strip.name}': {exc}".rstrip()
                ) from exc
            for i in range(first, last + 1):
                rendered = os.path.join(work, f"f_{1 + i:07d}.png")
                if os.path.isfile(rendered):
                    os.replace(rendered, os.path.join(folder, f"{i:06d}.png"))
            done += last - first + 1
            if progress:
                progress(done, total)
    finally:
        bpy.data.scenes.remove(tmp)
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send what Blender's C code prints to stdout (``Saved: ...``, ``Time: ...``) to the null
    device meanwhile; Python's own output is flushed first and goes on as before after."""
    sys.stdout.flush()
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ else 1
        saved = os.dup(fd)
    except (OSError, ValueError):  # no real stdout (some Windows GUIs): nothing to quiet
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
