"""Frames Blender decodes for the worker: movie strips, and image strips in formats the worker
does not read (OpenEXR, DPX, Cineon, Radiance HDR, JPEG 2000, ...).

A copy of the strip renders in a scratch scene (sRGB display, Standard view, no dither), so the
PNGs are what the strip shows, with alpha when its frames use transparency; they are cached per
strip, file versions, picture settings and size in the extension's user folder. Rendering
needs Blender's main thread: in the UI the Train operator decodes one chunk per timer event
(``DecodeTask``), so the window stays responsive, with progress and Cancel; scripts decode in
one go (about 25 ms a frame for a 1080p H.264 movie scaled to 256x144 on a 2-core CPU,
docs/PERFORMANCE.md).
"""

from __future__ import annotations

import array
import contextlib
import functools
import hashlib
import math
import os
import shutil
import struct
import sys
import time
from collections.abc import Callable, Iterator

import bpy

from . import filecheck, filememo, paths, strips

# What the worker reads itself (core.data.IMAGE_EXTS); Blender decodes anything else.
WORKER_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".tga")
DECODED_CACHE_KEEP = 8  # strips (per size) whose decoded frames stay in the user folder
DECODE_CHUNK = 48  # frames Blender decodes between two progress updates
DECODE_CHUNK_PIXELS = 1 << 22  # pixels the UI's first decode step renders (two 1080p frames)
DECODE_STEP_S = 0.5  # seconds a UI decode step aims at (the window waits that long); 0: fixed
DECODE_VERSION = 4  # part of every cache key: bump when what a decoded frame holds changes
_IN_USE_S = 600  # a cache folder touched this recently may serve another Blender: kept

# What a strip's picture depends on, copied onto the scratch strip that renders it (those a
# Blender version or strip type lacks are skipped). Modifiers and retiming are not copied, nor
# the flips: Blender mirrors a strip after its transform and crop, so a flip baked into the
# frames would come out mirrored on a strip that moves, turns or crops them; the generated
# strip takes the source's flips instead (strips.insert_image_strip).
_PICTURE_PROPS = (
    "stream_index",
    "content_trim_start",  # strips.RENAMED: animation_offset_start/end before Blender 5.2
    "content_trim_end",
    "use_reverse_frames",
    "use_deinterlace",
    "color_saturation",
    "color_multiply",
    "strobe",
)


def _picture_prop(strip, name: str) -> str:
    """The name ``strip`` has for one of _PICTURE_PROPS on this Blender."""
    return strips.prop_name(strip, name) if name in strips.RENAMED else name


def _changes_picture(strip) -> bool:
    """The strip shows its files changed: reversed, strobed (strobe 0 and 1 are off) or with
    another saturation or multiply. (Flips are not baked: the generated strip repeats them.)"""
    return bool(
        getattr(strip, "use_reverse_frames", False)
        or getattr(strip, "strobe", 1.0) > 1.0
        or abs(getattr(strip, "color_saturation", 1.0) - 1.0) > 1e-6
        or abs(getattr(strip, "color_multiply", 1.0) - 1.0) > 1e-6
    )


def needs_decode(strip, cached: bool = False) -> bool:
    """Whether Blender must render the strip's frames for the worker: a movie; image files in
    a format the worker does not read (OpenEXR, DPX, Cineon, Radiance HDR, JPEG 2000, a TIFF
    of float or 32-bit colour, ...); or image files the strip shows changed (reversed,
    strobed, another saturation or multiply), so that training sees what the timeline shows.
    ``cached``: the strip's file list as remembered for a few seconds (panels)."""
    if strip.type == "MOVIE":
        return True
    if _changes_picture(strip):
        return True
    files, exts = strips.image_files(strip, cached)  # the strip's file list, read once
    if not exts.issubset(WORKER_IMAGE_EXTS):
        return True
    if exts & {".tif", ".tiff"}:
        tiffs = [f for f in files if f.lower().endswith((".tif", ".tiff"))]
        # The first one stands for the strip (frames of one sequence share their format).
        return bool(tiffs) and _tiff_needs_blender(tiffs[0])
    return False


_tiff_memo = filememo.FileMemo(limit=64)


def _tiff_needs_blender(path: str) -> bool:
    """A TIFF the worker (Pillow) cannot read but Blender can: colour or grey-and-alpha in 32-
    or 64-bit samples (float, as compositors write, or integer), or 64-bit grey. Read from the
    header, remembered per file version; a missing or unparsable file is left to the worker,
    whose error names it."""
    try:
        return _tiff_memo.get(path, path, lambda _st: _tiff_wide(path))
    except OSError:
        return False


def _tiff_wide(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            return False
        order = "<" if head[:2] == b"II" else ">"
        if struct.unpack(order + "H", head[2:4])[0] != 42:  # BigTIFF (43): left to the worker
            return False
        f.seek(struct.unpack(order + "I", head[4:8])[0])
        raw = f.read(2)
        if len(raw) < 2:
            return False
        count = struct.unpack(order + "H", raw)[0]
        entries = f.read(12 * min(count, 512))
        tags = {}
        for k in range(len(entries) // 12):
            tag, kind, n = struct.unpack(order + "HHI", entries[12 * k : 12 * k + 8])
            if tag not in (258, 277) or kind != 3:  # BitsPerSample, SamplesPerPixel: SHORT
                continue
            value = entries[12 * k + 8 : 12 * k + 12]
            if n > 2:  # one per sample, stored elsewhere: the first stands for all
                f.seek(struct.unpack(order + "I", value)[0])
                value = f.read(2)
            if len(value) >= 2:
                tags[tag] = struct.unpack(order + "H", value[:2])[0]
    bits, samples = tags.get(258, 1), tags.get(277, 1)
    return bits >= 64 or (bits >= 32 and samples > 1)


def _fit(size: tuple[int, int], max_size: tuple[int, int] | None) -> tuple[int, int]:
    """``size`` scaled down to fit inside ``max_size`` (aspect kept), never up, and never
    below Blender's smallest render size (4 pixels)."""
    w, h = size
    if not max_size:
        return w, h
    f = min(1.0, max_size[0] / w, max_size[1] / h)
    return max(min(w, 4), round(w * f)), max(min(h, 4), round(h * f))


def _decode_cache(strip, size: tuple[int, int]) -> str:
    """The cache folder for this strip's frames at ``size``: a new folder when a file or any
    setting that changes the picture or the frame timing changes."""
    if strip.type == "MOVIE":
        files = [strips.movie_path(strip)]
    else:
        directory = strips.strip_directory(strip)
        files = [os.path.join(directory, e.filename) for e in strip.elements]
    scene = strip.id_data
    facts = [DECODE_VERSION, strip.type, size, strip.colorspace_settings.name, strip.alpha_mode]
    facts += [scene.render.fps, scene.render.fps_base, getattr(strip, "fps", None)]
    facts += [strips.content_length(strip)]
    facts += [round(k.timeline_frame, 3) for k in getattr(strip, "retiming_keys", ())]
    facts += [repr(getattr(strip, _picture_prop(strip, a), None)) for a in _PICTURE_PROPS]
    facts += [(f, *strips.file_stat(f)) for f in files]
    facts += [transparent(strip)]
    key = hashlib.sha1(repr(facts).encode()).hexdigest()[:16]
    base = paths.user_dir("decoded_frames")
    _prune(base, keep=DECODED_CACHE_KEEP, current=key)
    folder = os.path.join(base, key)
    os.makedirs(folder, exist_ok=True)
    os.utime(folder)  # most recently used
    return folder


_alpha_memo = filememo.FileMemo(limit=64)


def _shown_element(strip, i: int) -> int:
    """The element (file) content frame ``i`` of an image strip shows: reversed first, then
    held by the strobe, then moved past the start Hold Offset (Blender's rule)."""
    n = strips.image_content_count(strip)
    j = n - 1 - i if strip.use_reverse_frames else i
    strobe = max(1.0, float(getattr(strip, "strobe", 1.0)))
    return min(max(int(j - math.fmod(j, strobe)), 0), n - 1) + strips.image_trims(strip)[0]


def transparent(strip) -> bool:
    """Whether a strip's frames use transparency: one of the files an image strip's first,
    middle and last content frames show, or a movie's first frame (Blender loads no other frame
    of a movie as an image), has an alpha channel with some pixel below opaque (trims do not
    change the answer). A movie has one in a codec that stores alpha: PNG, QuickTime Animation,
    ProRes 4444, FFV1 (H.264 and most others have none). Only then are decoded frames rendered
    with alpha: a sprite or an effect keeps its transparent background, while an opaque picture
    (RGBA files with a solid alpha, most renders) stays RGB, since scaling leaves its edges a
    little transparent. A file that looks damaged is never loaded."""
    if strip.type == "MOVIE":
        files = [strips.movie_path(strip)]
    else:
        n = strips.image_content_count(strip) if strip.type == "IMAGE" else 0
        if not n:
            return False
        directory = strips.strip_directory(strip)
        shown = sorted({_shown_element(strip, i) for i in (0, n // 2, n - 1)})
        files = [os.path.join(directory, strip.elements[k].filename) for k in shown]
    for path in files:
        try:
            if _alpha_memo.get(path, path, lambda _st, p=path: _file_transparent(p)):
                return True
        except OSError:  # missing: the decode says so, if it is shown
            continue
    return False


ALPHA_SCAN = 256  # the alpha check looks at a copy this size at most (a 4K EXR is 133 MB)


def _file_transparent(path: str) -> bool:
    if filecheck.damage(path, _loads):
        return False
    try:
        image = bpy.data.images.load(path, check_existing=False)
    except RuntimeError:
        return False
    try:
        # 4 channels, and a depth of 8-bit RGBA (32; grey + alpha too) or float RGBA (128):
        # 24, 96 are RGB; a multilayer EXR reports 128 with its first pass's channels. A movie
        # loads its first frame: 24 for H.264, 32 for PNG or QuickTime Animation with alpha,
        # 128 (float) for ProRes 4444.
        if image.type != "IMAGE" or image.channels != 4:
            return False
        if image.depth != (128 if image.is_float else 32):
            return False
        w, h = image.size
        if max(w, h) > ALPHA_SCAN:
            f = ALPHA_SCAN / max(w, h)
            image.scale(max(1, round(w * f)), max(1, round(h * f)))
        pixels = array.array("f", [0.0]) * len(image.pixels)  # no numpy in the add-on
        image.pixels.foreach_get(pixels)
        alpha = pixels[3::4]
        return bool(alpha) and min(alpha) < 0.999
    finally:
        bpy.data.images.remove(image)


_usage: tuple[float, tuple[int, int]] | None = None


def cache_usage(max_age_s: float = 5.0) -> tuple[int, int]:
    """(strips, bytes) in the decoded-frames cache; recounted at most every ``max_age_s``
    (the preferences ask on every redraw)."""
    global _usage
    now = time.monotonic()
    if _usage is not None and now - _usage[0] < max_age_s:
        return _usage[1]
    base = paths.user_dir("decoded_frames")
    folders, total = 0, 0
    for entry in os.scandir(base):
        if entry.is_dir():
            folders += 1
            for root, _dirs, files in os.walk(entry.path):
                total += sum(strips.file_stat(os.path.join(root, f))[0] for f in files)
    _usage = (now, (folders, total))
    return folders, total


def clear_cache() -> int:
    """Delete every decoded frame (they are made again when needed); returns the bytes freed."""
    global _usage
    _, total = cache_usage(max_age_s=0)
    base = paths.user_dir("decoded_frames")
    for entry in os.scandir(base):
        if entry.is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)
    _usage = None
    return total


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:  # removed meanwhile (another Blender pruning)
        return 0.0


def _prune(base: str, keep: int, current: str) -> None:
    """Delete the least recently used cache folders beyond ``keep``, but none used in the last
    ``_IN_USE_S`` seconds (another Blender may be reading it)."""
    try:
        folders = [os.path.join(base, e) for e in os.listdir(base) if e != current]
    except OSError:
        return
    folders = sorted((f for f in folders if os.path.isdir(f)), key=_mtime)
    now = time.time()
    for old in folders[: max(0, len(folders) - (keep - 1))]:
        if now - _mtime(old) > _IN_USE_S:
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
    size, folder = _plan(strip, max_size)
    return _decode_into(strip, indices, size, folder, progress)


def _plan(strip, max_size: tuple[int, int] | None) -> tuple[tuple[int, int], str]:
    """(decoded size, cache folder) for the strip; ValueError when its files can't be read."""
    problem = strips.files_problem(strip)
    if problem:
        raise ValueError(problem)
    native = strips.strip_resolution(strip)
    if native is None:
        what = "movie" if strip.type == "MOVIE" else "frames"
        raise ValueError(
            f"Blender cannot read the {what} of strip '{strip.name}' ({_where(strip)}): no "
            "picture size."
        )
    size = _fit(native, max_size)
    return size, _decode_cache(strip, size)


def _where(strip) -> str:
    return strips.movie_path(strip) if strip.type == "MOVIE" else strips.strip_directory(strip)


def _cached(folder: str, i: int) -> str:
    return os.path.join(folder, f"{i:06d}.png")


def _decode_into(strip, indices, size, folder, progress=None) -> list[str]:
    """Render those of ``indices`` not in ``folder`` yet; the paths of all of them."""
    out = [_cached(folder, i) for i in indices]
    todo = [i for i, p in zip(indices, out) if not os.path.isfile(p)]
    if todo and strip.type == "IMAGE":
        _refuse_damaged(strip, todo)
    if todo:
        _render_copy(strip, _chunks(todo), size, folder, progress)
    missing = [p for p in out if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"Blender could not decode {len(missing)} of {len(out)} frames of strip "
            f"'{strip.name}' ({_where(strip)})."
        )
    return out


def _refuse_damaged(strip, indices: list[int], load: bool = True) -> None:
    """ValueError naming the first file these content frames show that Blender could not read
    (it would render "missing media" there without an error): empty, cut short, not the format
    its name says. Blender's rule for the file a content frame shows: reversed first, then
    held by the strobe. ``load=False``: header checks only (no file is loaded)."""
    directory = strips.strip_directory(strip)
    for k in sorted({_shown_element(strip, i) for i in indices}):
        path = os.path.join(directory, strip.elements[k].filename)
        why = filecheck.damage(path, _loads if load else None)
        if why:
            raise ValueError(
                f"The frame file {path} of strip '{strip.name}' {why}; replace it, or trim it "
                "out of the strip."
            )


def _loads(path: str) -> bool:
    """Whether Blender can load ``path`` as an image (an image it can't has no size)."""
    try:
        image = bpy.data.images.load(path, check_existing=False)
    except RuntimeError:
        return False
    try:
        return tuple(image.size) != (0, 0)
    finally:
        bpy.data.images.remove(image)


def uncached(strip, indices: list[int], max_size: tuple[int, int] | None = None) -> list[int]:
    """Those of ``indices`` whose decoded frame at this size is not in the cache yet."""
    _, folder = _plan(strip, max_size)
    return [i for i in indices if not os.path.isfile(_cached(folder, i))]


class DecodeTask:
    """Decodes a strip's frames a chunk per ``step()``, for a modal operator: Blender handles
    its events between two chunks, so the window stays responsive. The strip is found again by
    name at every step, since the user works meanwhile.

    ``indices``: the content frames to decode, or None for every visible frame (the strip may
    be lengthened meanwhile: the new ones are decoded too). ``max_size``: scaled down to fit
    it, or None for the source's size. The first chunk holds at most ``chunk`` frames and
    ``DECODE_CHUNK_PIXELS``; later ones as many as take about ``DECODE_STEP_S`` (``next_chunk``),
    so that a 1080p movie does not hold the window for seconds between two events, nor a small
    one decode a frame per event. ``purpose``: "training" or "extending", for the panel and
    messages."""

    def __init__(
        self,
        scene_name: str,
        strip_name: str,
        max_size: tuple[int, int] | None,
        chunk: int = 16,
        indices: list[int] | None = None,
        purpose: str = "training",
    ):
        self.scene_name, self.strip_name = scene_name, strip_name
        self.max_size, self.purpose = max_size, purpose
        self.indices = None if indices is None else list(indices)
        self.done = 0
        self._planned: tuple = ()
        self._pending: list[int] = []
        strip, todo, size, _ = self._todo()
        self.most = chunk
        self.chunk = max(1, min(chunk, DECODE_CHUNK_PIXELS // max(1, size[0] * size[1])))
        self.total = len(todo)
        if strip.type == "IMAGE":  # a damaged file is reported now, not after minutes of work
            _refuse_damaged(strip, todo, load=False)
        self.cancelled = False

    def _strip(self):
        scene = bpy.data.scenes.get(self.scene_name)
        strip = strips.find_strip(scene, self.strip_name) if scene is not None else None
        if strip is None:
            nothing = "nothing was trained" if self.purpose == "training" else "nothing was made"
            raise ValueError(f"The strip '{self.strip_name}' is gone; {nothing}.")
        return strip

    def _todo(self):
        """(strip, frames still to decode, decoded size, cache folder), looked up afresh. The
        cache is searched once per plan, not at every step: a long strip's steps would each
        look at all of its files again."""
        strip = self._strip()
        size, folder = _plan(strip, self.max_size)
        wanted = strips.visible_indices(strip) if self.indices is None else self.indices
        plan = (folder, wanted)
        if plan != self._planned:  # the first step, or the strip or its settings changed
            self._planned = plan
            self._pending = [i for i in wanted if not os.path.isfile(_cached(folder, i))]
        else:
            while self._pending and os.path.isfile(_cached(folder, self._pending[0])):
                self._pending.pop(0)  # decoded meanwhile (another Blender, say): done
                self.done += 1
        return strip, list(self._pending), size, folder

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def step(self) -> bool:
        """Decode the next chunk; True when every frame asked for is in the cache."""
        strip, todo, size, folder = self._todo()
        self.total = max(self.total, self.done + len(todo))  # the user may lengthen the strip
        if not todo:
            self.done = self.total
            return True
        chunk = todo[: self.chunk]
        began = time.monotonic()
        _decode_into(strip, chunk, size, folder)
        if DECODE_STEP_S > 0:
            self.chunk = next_chunk(len(chunk), time.monotonic() - began, self.most)
        del self._pending[: len(chunk)]
        self.done += len(chunk)
        return len(chunk) == len(todo)


def next_chunk(frames: int, seconds: float, most: int, target: float | None = None) -> int:
    """The frames of the next UI decode step, from the last one's ``frames`` and ``seconds``:
    as many as take about ``target`` (``DECODE_STEP_S``) at the last step's pace, at most
    twice as many as then and at most ``most``; at least one. Each step also has a fixed cost
    (a scratch scene, opening the movie: about 0.15 s on a 2-core CPU), so the chunk settles a
    little under the target's count at the per-frame cost alone."""
    target = DECODE_STEP_S if target is None else target
    if seconds <= 0:
        return min(most, 2 * frames)
    return max(1, min(most, 2 * frames, int(frames * target / seconds)))


def _copy_strip(collection, strip) -> Callable[[int], int]:
    """A copy of an image or movie strip at frame 1 of ``collection``, fit to the render size,
    showing the same picture. Returns the map from the strip's content index to the copy's
    (the frame to render is 1 + that): the identity, except for a movie whose frame rate
    Blender adapts to the scene's, which the copy (made from Python) plays frame by frame."""
    if strip.type == "MOVIE":
        copy = collection.new_movie("source", strips.movie_path(strip), 1, 1, fit_method="FIT")
    else:
        directory = strips.strip_directory(strip)
        first = os.path.join(directory, strip.elements[0].filename)
        copy = collection.new_image("source", first, 1, 1, fit_method="FIT")
        for element in list(strip.elements)[1:]:
            copy.elements.append(element.filename)
    for attr in map(functools.partial(_picture_prop, strip), _PICTURE_PROPS):
        if hasattr(strip, attr) and hasattr(copy, attr):
            setattr(copy, attr, getattr(strip, attr))
    strips.set_enum(copy.colorspace_settings, "name", strip.colorspace_settings.name)
    copy.alpha_mode = strip.alpha_mode
    shown, decoded = strips.content_length(strip), strips.content_length(copy)
    if strip.type == "MOVIE" and (problem := strips.stream_problem(copy, strip)):
        raise ValueError(problem)
    if strip.type == "MOVIE" and (copy.elements[0].orig_width <= 0 or decoded <= 1 < shown):
        raise ValueError(
            f"Blender cannot read the movie {strips.movie_path(strip)} of strip '{strip.name}': "
            "the file is damaged or in a format this Blender does not decode."
        )
    scene = strip.id_data
    movie_fps = getattr(strip, "fps", 0.0) or 0.0
    scene_fps = scene.render.fps / scene.render.fps_base
    reverse = bool(getattr(strip, "use_reverse_frames", False))
    frame_map = _frame_map(shown, decoded, movie_fps, scene_fps, reverse)
    if (
        frame_map is None
        and not list(getattr(strip, "retiming_keys", ()))
        and strip.type == "MOVIE"
    ):
        # Not retimed: the file itself changed (re-exported, replaced) since the strip was added.
        raise ValueError(
            f"The movie {strips.movie_path(strip)} now holds {decoded} frames, but the strip "
            f"'{strip.name}' was made for {shown}: the file changed since the strip was added. "
            "Use Strip > Movie Strip > Reload Strips and Adjust Length, or add it again."
        )
    if frame_map is None:
        raise ValueError(
            f"The strip '{strip.name}' shows {shown} frames of content where its files hold "
            f"{decoded}: a retimed or sped-up strip is not supported; reset its retiming, or "
            "render the strip to images."
        )
    return frame_map


def _frame_map(
    shown: int, decoded: int, movie_fps: float, scene_fps: float, reverse: bool = False
) -> Callable[[int], int] | None:
    """Content index (timeline frames from the strip's start) -> the copy's frame index.

    The same when the counts agree. A movie whose frame rate Blender adapts to the scene's
    shows movie frame floor(i * movie_fps / scene_fps) at timeline frame i (Blender's rule;
    reversed, it reverses the timeline frame first: floor((shown - 1 - i) * rate)), where the
    copy plays frame by frame (reversed: frame j shows movie frame decoded - 1 - j). None when
    neither explains the counts (retiming)."""
    if decoded == shown:
        return lambda i: i
    if movie_fps <= 0 or scene_fps <= 0:
        return None
    rate = movie_fps / scene_fps
    if abs(decoded - shown * rate) > max(1.5, 0.01 * decoded):
        return None
    if reverse:
        return lambda i: decoded - 1 - min(decoded - 1, int((shown - 1 - i) * rate + 1e-6))
    return lambda i: min(decoded - 1, int(i * rate + 1e-6))


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
    work = os.path.join(folder, f".render-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tmp = None
    try:
        tmp = bpy.data.scenes.new(".fsgan_decode")
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
        r.image_settings.color_mode = "RGBA" if transparent(strip) else "RGB"
        r.image_settings.color_depth = "8"
        colour = [
            strips.set_enum(tmp.display_settings, "display_device", "sRGB"),
            strips.set_enum(tmp.view_settings, "view_transform", "Standard"),
            strips.set_enum(tmp.view_settings, "look", "None"),
            strips.set_enum(tmp.sequencer_colorspace_settings, "name", "sRGB"),
        ]
        if not all(colour):  # a studio OCIO configuration without these names
            print(
                "FrameSequenceGAN: this colour configuration lacks sRGB/Standard; decoded "
                f"frames of '{strip.name}' use its defaults",
                flush=True,
            )
        tmp.view_settings.exposure = 0.0
        tmp.view_settings.gamma = 1.0
        tmp.view_settings.use_curve_mapping = False
        to_copy = _copy_strip(strips.children(tmp.sequence_editor_create()), strip)
        r.filepath = os.path.join(work, "f_#######")
        r.use_file_extension = True
        total = sum(last - first + 1 for first, last in runs)
        done = 0
        for first, last in runs:
            tmp.frame_start, tmp.frame_end = 1 + to_copy(first), 1 + to_copy(last)
            try:
                with _quiet_stdout():  # Blender prints two lines per frame written
                    bpy.ops.render.render(animation=True, scene=tmp.name)
            except RuntimeError as exc:
                raise ValueError(
                    f"Blender could not decode the frames of strip '{strip.name}': {exc}".rstrip()
                ) from exc
            _place(work, folder, first, last, to_copy)
            done += last - first + 1
            if progress:
                progress(done, total)
    finally:
        if tmp is not None:
            bpy.data.scenes.remove(tmp)
        shutil.rmtree(work, ignore_errors=True)


def _place(work: str, folder: str, first: int, last: int, to_copy: Callable[[int], int]):
    """Move each rendered frame to ``folder/<content index>.png``; a copy frame that several
    content frames show (a movie slower than the scene) is copied for the later ones."""
    placed: dict[int, str] = {}
    for i in range(first, last + 1):
        j = to_copy(i)
        dest = os.path.join(folder, f"{i:06d}.png")
        rendered = os.path.join(work, f"f_{1 + j:07d}.png")
        if j in placed:
            shutil.copyfile(placed[j], rendered + ".tmp")
            os.replace(rendered + ".tmp", dest)
        elif os.path.isfile(rendered):
            os.replace(rendered, dest)
            placed[j] = dest


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send what Blender's C code prints to stdout (``Saved: ...``, ``Time: ...``) to the null
    device meanwhile; Python's own output is flushed first and goes on as before after."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):  # no real stdout: nothing to quiet
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
