"""Reading frames from image strips and inserting new ones, across Blender 4.2 to 5.x.

API differences handled here and nowhere else:
- 4.2 has only ``sequence_editor.sequences``; 4.5 has ``sequences`` and ``strips``; 5.0 only
  ``strips`` (and meta strips follow the same pattern). Choose with ``hasattr``: an empty
  collection is falsy.
- Blender 5.2 renamed a strip's frame properties and deprecated the old names (to be removed
  in 6.0; reading one prints a DeprecationWarning): ``frame_final_start/end`` are now
  ``left_handle``/``right_handle``, ``frame_offset_start/end`` are
  ``left_handle_offset``/``right_handle_offset``, ``frame_final_duration`` is ``duration``,
  ``frame_start`` ``content_start``, ``frame_duration`` ``content_duration`` and
  ``animation_offset_start/end`` ``content_trim_start/end`` (RENAMED). The add-on uses the
  current names everywhere through ``get``/``put`` and the helpers below, which read whichever
  the strip's RNA defines: a feature check, not a version check.
- An image strip is ``directory`` + ``elements[k].filename``; its content frame ``i`` shows
  element ``i + content_trim_start`` (the Hold Offsets cut elements off both ends:
  ``image_element``) at scene frame ``content_start + i``, and the visible range
  ``[left_handle, right_handle)`` is the content trimmed by
  ``left_handle_offset``/``right_handle_offset``.
- A movie strip is one ``filepath``; its content frame ``i`` (``content_duration`` of them) shows
  at ``content_start + i`` in the same way. Blender decodes it, so its frames reach the worker as PNGs
  that Blender renders from a copy of the strip in a scratch scene (``decode.py``);
  so do image frames in formats the worker does not read (OpenEXR, DPX, ...).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import time
from collections.abc import Callable, Iterator

import bpy

from . import decode, look, paths

MIN_TRAIN_FRAMES = 3
MAX_CHANNEL = 128
CONTEXT_FRAMES = 8  # frames handed to an extend job; the last one is the start frame
LOOP_HISTORY = 96  # ... when it looks for a loop to continue (core.loops.HISTORY)
USABLE_TYPES = ("IMAGE", "MOVIE")


# The current name of each renamed strip property, and its name before Blender 5.2.
RENAMED = {
    "left_handle": "frame_final_start",
    "right_handle": "frame_final_end",
    "left_handle_offset": "frame_offset_start",
    "right_handle_offset": "frame_offset_end",
    "duration": "frame_final_duration",
    "content_start": "frame_start",
    "content_duration": "frame_duration",
    "content_trim_start": "animation_offset_start",
    "content_trim_end": "animation_offset_end",
}
_prop_names: dict[tuple[type, str], str] = {}


def prop_name(strip, name: str) -> str:
    """The property this Blender's ``strip`` has for ``name`` (a current name from RENAMED):
    ``name`` itself where the RNA defines it (5.2+), else its old name. Asked once per strip
    type (panels ask on every redraw)."""
    key = (type(strip), name)
    found = _prop_names.get(key)
    if found is None:
        found = name if name in strip.bl_rna.properties else RENAMED[name]
        _prop_names[key] = found
    return found


def get(strip, name: str):
    """``strip.<name>`` by its current name (``get(s, "left_handle")``) on any Blender."""
    return getattr(strip, prop_name(strip, name))


def put(strip, name: str, value) -> None:
    setattr(strip, prop_name(strip, name), value)


def left_handle(strip) -> int:
    """The first frame the timeline shows of ``strip``."""
    return get(strip, "left_handle")


def right_handle(strip) -> int:
    """The frame after the last one the timeline shows of ``strip`` (exclusive end)."""
    return get(strip, "right_handle")


def content_start(strip) -> float:
    """The scene frame where the strip's content (its frame 0) is, before trims."""
    return get(strip, "content_start")


def children(container):
    """The strips directly inside a sequence editor or a meta strip."""
    return container.strips if hasattr(container, "strips") else container.sequences


def all_strips(sequence_editor):
    if hasattr(sequence_editor, "strips_all"):
        return sequence_editor.strips_all
    return sequence_editor.sequences_all


def owner(sequence_editor, strip):
    """What holds ``strip``: the sequence editor (top level) or a meta strip."""
    if any(s == strip for s in children(sequence_editor)):
        return sequence_editor
    for meta in all_strips(sequence_editor):
        if meta.type == "META" and any(s == strip for s in children(meta)):
            return meta
    return sequence_editor


def closed_channels(holder) -> frozenset[int]:
    """Channels of a sequence editor or meta strip that are muted or locked: a strip put there
    would not play, or could not be edited."""
    channels = getattr(holder, "channels", None)  # Blender 4.2+
    if channels is None:
        return frozenset()
    return frozenset(i for i, c in enumerate(channels) if i and (c.mute or c.lock))


def sequencer_scene(context):
    """The scene the Sequencer edits: Blender 5.0's workspace sequencer scene when one is set
    (it can differ from the active scene), else the active scene."""
    return getattr(context, "sequencer_scene", None) or context.scene


@contextlib.contextmanager
def use_sequencer_scene(scene) -> Iterator[None]:
    """Meanwhile, the workspace's sequencer scene (Blender 5.0) is ``scene``; then it is what
    it was. The operators act on it, and ``strip.modifiers.new`` needs one (it crashes without
    one in background Blender). Blender 4.x has none: nothing to do."""
    workspace = getattr(bpy.context, "workspace", None)
    if workspace is None or not hasattr(workspace, "sequencer_scene"):
        yield
        return
    previous = workspace.sequencer_scene
    if previous == scene:  # the usual case in the UI: nothing to change
        yield
        return
    workspace.sequencer_scene = scene
    try:
        yield
    finally:
        workspace.sequencer_scene = previous


def active_strip(context):
    scene = sequencer_scene(context)
    se = scene.sequence_editor if scene else None
    return se.active_strip if se else None


def find_strip(scene, name: str):
    se = scene.sequence_editor if scene else None
    if se is None:
        return None
    return all_strips(se).get(name)


def image_trims(strip) -> tuple[int, int]:
    """The elements an image strip's Hold Offsets (``content_trim_start/end``) cut off its
    start and end: its content is the elements between."""
    return int(get(strip, "content_trim_start")), int(get(strip, "content_trim_end"))


def image_content_count(strip) -> int:
    """The elements an image strip's content holds: all but those its Hold Offsets cut off."""
    first, last = image_trims(strip)
    return max(0, len(strip.elements) - first - last)


def image_element(strip, i: int):
    """The element (file) content frame ``i`` of an image strip is, before reversal and strobe
    (Blender adds the start Hold Offset to the frame's index)."""
    return strip.elements[i + image_trims(strip)[0]]


def content_length(strip) -> int:
    """Timeline frames the content spans (from ``content_start``, before trims): an image
    strip's elements, a movie's frames. Computed from the trimmed range the same way on every
    Blender: ``content_duration`` of a movie whose frame rate Blender adapts to the scene's is the
    raw count in 4.2 and the timeline count in 4.5 and later. Retiming makes it differ from the
    files'."""
    start, end = content_start(strip), right_handle(strip)
    offset_end = get(strip, "right_handle_offset")
    span = end + offset_end - start
    # right_handle is int(content_start + length - right_handle_offset), truncated toward zero:
    # with a sub-frame offset the span is off by a fraction; take the length that reproduces it.
    for n in (math.floor(span), math.ceil(span)):
        if int(start + n - offset_end) == end:
            return int(n)
    return int(round(span))


def visible_indices(strip) -> range:
    """Indices of the content frames the timeline shows, in order (for an image strip, into
    ``strip.elements``)."""
    start = content_start(strip)
    first = int(round(left_handle(strip) - start))
    last = int(round(right_handle(strip) - start))  # exclusive
    # Still frames beyond the content (negative offsets) repeat an end frame: not new data.
    end = content_length(strip)
    if strip.type == "IMAGE":
        end = min(end, image_content_count(strip))
    return range(max(first, 0), min(last, end))


def _library(strip):
    return strip.id_data.library if strip.id_data else None


def strip_directory(strip) -> str:
    return os.path.normpath(bpy.path.abspath(strip.directory, library=_library(strip)))


def movie_path(strip) -> str:
    return os.path.normpath(bpy.path.abspath(strip.filepath, library=_library(strip)))


def _blend_relative(strip) -> str:
    """The strip's folder or movie file as stored (maybe ``//relative``)."""
    return strip.directory if strip.type == "IMAGE" else strip.filepath


# source_files of an image strip, remembered for panels and polls (``cached=True``): they ask
# on every redraw, and reading a long strip's elements costs (20,000 frames: about 70 ms). The
# key holds what changes the list (the folder, the trims, the element count and the end
# elements' names); a change it can't see (one middle element's file name edited) shows there
# after the TTL. Jobs always read the strip afresh.
_FILES_TTL_S = 5.0
_files_cache: dict[tuple, tuple[float, tuple[str, ...], frozenset[str]]] = {}


def image_files(strip, cached: bool) -> tuple[tuple[str, ...], frozenset[str]]:
    """(the visible frames' files, their lower-case extensions) of an image strip."""
    elements = strip.elements
    n = len(elements)
    key = (
        strip.as_pointer(),
        strip.directory,
        bpy.data.filepath,  # a //relative folder resolves against it
        n,
        elements[0].filename if n else "",
        elements[n - 1].filename if n else "",
        content_start(strip),
        left_handle(strip),
        right_handle(strip),
        get(strip, "right_handle_offset"),
        image_trims(strip),
    )
    now = time.monotonic()
    hit = _files_cache.get(key)
    if cached and hit is not None and now - hit[0] < _FILES_TTL_S:
        return hit[1], hit[2]
    directory = strip_directory(strip)
    names = [image_element(strip, i).filename for i in visible_indices(strip)]
    files = tuple(os.path.join(directory, name) for name in names)
    exts = frozenset(os.path.splitext(name)[1].lower() for name in names)
    if len(_files_cache) > 16:
        _files_cache.clear()
    _files_cache[key] = (now, files, exts)
    return files, exts


def source_files(strip, cached: bool = False) -> list[str]:
    """The files the visible frames come from: one per frame, or the one movie file.
    ``cached``: as remembered for a few seconds (panels, polls)."""
    if strip.type == "MOVIE":
        return [movie_path(strip)]
    return list(image_files(strip, cached)[0])


def source_extensions(strip, cached: bool = False) -> frozenset[str]:
    """The lower-case extensions of an image strip's visible frame files."""
    return image_files(strip, cached)[1]


def visible_frame_paths(
    strip,
    max_size: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """One image file per visible frame, in order, that the worker can read. Frames Blender
    must decode (``decode.needs_decode``) are rendered into a cache first, scaled down to fit
    ``max_size`` (never up) when given, with ``progress(done, total)`` after each chunk."""
    if decode.needs_decode(strip):
        return decode.decoded_frame_paths(strip, list(visible_indices(strip)), max_size, progress)
    return source_files(strip)


def index_at_frame(strip, scene_frame: int) -> int | None:
    """Content index shown at ``scene_frame``, or None outside the visible range. Where a
    handle is dragged past the content, the held first or last frame shows."""
    if not left_handle(strip) <= scene_frame < right_handle(strip):
        return None
    index = int(round(scene_frame - content_start(strip)))
    return min(max(index, 0), content_length(strip) - 1)


def context_indices(strip, start: str, scene_frame: int, count: int = CONTEXT_FRAMES) -> list[int]:
    """The up to ``count`` content frames an extend job starts from (the last one is the start
    frame), without reading any file; ValueError when there are none.

    ``start`` is "END" (last visible frame) or "PLAYHEAD" (frame under the playhead).
    """
    indices = list(visible_indices(strip))
    if not indices:
        raise ValueError(f"The strip '{strip.name}' shows no frames.")
    if start == "PLAYHEAD":
        index = index_at_frame(strip, scene_frame)
        if index is None:
            raise ValueError(
                f"The playhead (frame {scene_frame}) is not over the strip '{strip.name}' "
                f"(frames {left_handle(strip)}-{right_handle(strip) - 1})."
            )
        indices = [i for i in indices if i <= index]
    return indices[-count:]


def context_frame_paths(
    strip, start: str, scene_frame: int, count: int = CONTEXT_FRAMES
) -> list[str]:
    """The files of ``context_indices`` that the worker reads (decoded first if need be)."""
    indices = context_indices(strip, start, scene_frame, count)
    if decode.needs_decode(strip):  # full size: generated frames match the source's
        return decode.decoded_frame_paths(strip, indices)
    directory = strip_directory(strip)
    return [os.path.join(directory, image_element(strip, i).filename) for i in indices]


def strip_problem(
    strip, min_frames: int = MIN_TRAIN_FRAMES, check_files: bool = False
) -> str | None:
    """Why ``strip`` can't be used (one sentence), or None when it can.

    ``check_files`` also looks for missing frame files (cached for a moment: polls and panels
    call this on every redraw); a movie strip's one file is always looked for.
    """
    if strip is None:
        return "No active strip: select an image-sequence or movie strip in the Sequencer."
    if strip.type not in USABLE_TYPES:
        kind = strip.type.replace("_", " ").lower()
        return (
            f"The active strip '{strip.name}' is a {kind} strip; "
            "FrameSequenceGAN needs an image-sequence or movie strip."
        )
    library = strip.id_data.library
    if library is not None:
        return (
            f"The strip '{strip.name}' is in scene '{strip.id_data.name}', linked from "
            f"{os.path.basename(library.filepath)}: what is trained or added here would not be "
            "saved. Make the scene local first, or open that file."
        )
    stored = _blend_relative(strip)
    if stored.startswith("//") and not bpy.data.filepath:
        # bpy.path.abspath would resolve it against the current directory: the wrong files.
        what = "folder" if strip.type == "IMAGE" else "movie file"
        return (
            f"The strip '{strip.name}' uses a {what} relative to the .blend file "
            f"({stored}), which is not saved yet; save the file or make the path absolute."
        )
    if strip.type == "MOVIE" and (problem := files_problem(strip, cached=True)):
        return problem  # one file, and without it Blender knows no frame count
    if strip.type == "MOVIE" and (problem := stream_problem(strip)):
        return problem
    if strip.type == "IMAGE" and content_length(strip) != image_content_count(strip):
        return (
            f"The strip '{strip.name}' is retimed: its {image_content_count(strip)} frames span "
            f"{content_length(strip)} frames of the timeline. Reset its retiming, or render the "
            "strip to images."
        )
    count = len(visible_indices(strip))
    if count < min_frames:
        return (
            f"The strip '{strip.name}' shows {count} frame{'s' if count != 1 else ''}; "
            f"at least {min_frames} are needed."
        )
    if check_files and strip.type == "IMAGE":
        return files_problem(strip, cached=True)
    return None


def stream_problem(movie, named=None) -> str | None:
    """A movie strip whose Stream Index names a video stream its file lacks (Blender shows
    "missing media" there, and its frame rate reads 0), in one sentence; else None. ``named``:
    the strip to name (the user's, when ``movie`` is a copy of it)."""
    named = named or movie
    if getattr(movie, "fps", 1.0) > 0 or not getattr(movie, "stream_index", 0):
        return None  # readable, or stream 0 unreadable: a damaged file, said elsewhere
    return (
        f"Blender cannot open video stream {getattr(movie, 'stream_index', 0)} of the movie "
        f"{movie_path(named)} (strip '{named.name}'); set its Stream Index to a stream the file "
        "has."
    )


def files_problem(strip, cached: bool = False) -> str | None:
    """Which of the files behind the visible frames are missing (one sentence), or None.
    ``cached``: the file list and the check as remembered for a few seconds (panels, polls)."""
    files = source_files(strip, cached)
    missing = (cached_missing_files if cached else missing_files)(files)
    if not missing:
        return None
    if strip.type == "MOVIE":
        return (
            f"The movie file {missing[0]} of strip '{strip.name}' is missing; relink the strip "
            "or restore the file."
        )
    return missing_message(strip.name, files, missing)


def missing_files(frame_paths: list[str]) -> list[str]:
    return [p for p in frame_paths if not os.path.isfile(p)]


_MISSING_TTL_S = 2.0
_missing_cache: dict[tuple[str, ...], tuple[float, list[str]]] = {}


def cached_missing_files(frame_paths: list[str]) -> list[str]:
    """``missing_files``, re-checked at most every couple of seconds for the same frames."""
    key = tuple(frame_paths)
    now = time.monotonic()
    hit = _missing_cache.get(key)
    if hit is not None and now - hit[0] < _MISSING_TTL_S:
        return hit[1]
    missing = missing_files(frame_paths)
    if len(_missing_cache) > 16:
        _missing_cache.clear()
    _missing_cache[key] = (now, missing)
    return missing


def missing_message(strip_name: str, frames: list[str], missing: list[str]) -> str:
    """One sentence naming the missing frame files, runs of neighbours shortened to 'a to b'."""
    gone = set(missing)
    runs: list[list[str]] = []
    previous_missing = False
    for path in frames:
        if path in gone:
            if previous_missing:
                runs[-1].append(path)
            else:
                runs.append([path])
        previous_missing = path in gone
    parts = [
        os.path.basename(r[0]) if len(r) == 1 else
        f"{os.path.basename(r[0])} to {os.path.basename(r[-1])}"
        for r in runs
    ]  # fmt: skip
    shown = ", ".join(parts[:4]) + (f" and {len(parts) - 4} more" if len(parts) > 4 else "")
    folder = os.path.dirname(missing[0])
    if len(missing) == len(frames):
        return (
            f"All {len(frames)} frame files of strip '{strip_name}' are missing ({shown}) "
            f"from {folder}; relink the strip or restore the files."
        )
    return (
        f"{len(missing)} of the {len(frames)} frame files of strip '{strip_name}' are missing: "
        f"{shown} (in {folder})."
    )


def image_size(path: str) -> tuple[int, int] | None:
    """Width and height from a PNG, JPEG or OpenEXR header (no image decoding), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return struct.unpack(">II", head[16:24])
            if head[:4] == b"\x76\x2f\x31\x01":  # OpenEXR: attributes until an empty name
                f.seek(8)
                header = f.read(65536)
                pos = 0
                while pos < len(header) and header[pos] != 0:
                    name_end = header.index(b"\0", pos)
                    type_end = header.index(b"\0", name_end + 1)
                    (size,) = struct.unpack("<i", header[type_end + 1 : type_end + 5])
                    if size < 0:  # damaged: never step backwards (panels call this)
                        return None
                    value = header[type_end + 5 : type_end + 5 + size]
                    if header[pos:name_end] == b"dataWindow" and size == 16:
                        x0, y0, x1, y1 = struct.unpack("<4i", value)
                        return x1 - x0 + 1, y1 - y0 + 1
                    pos = type_end + 5 + size
                return None
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                while True:
                    marker = f.read(2)
                    if len(marker) < 2 or marker[0] != 0xFF:
                        return None
                    (length,) = struct.unpack(">H", f.read(2))
                    if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                        h, w = struct.unpack(">xHH", f.read(5))
                        return w, h
                    f.seek(length - 2, 1)
    except (OSError, struct.error, ValueError):
        return None
    return None


def strip_resolution(strip, load: bool = True) -> tuple[int, int] | None:
    """The size of the strip's first visible frame. ``load=False`` (panels: no data may be
    created while drawing) reads file headers only, and what an earlier load found."""
    indices = visible_indices(strip)
    if not indices:
        return None
    if strip.type == "MOVIE":  # known once Blender opened the movie (saved in the .blend)
        element = strip.elements[0] if len(strip.elements) else None
        if element is None or element.orig_width <= 0 or element.orig_height <= 0:
            return None
        return int(element.orig_width), int(element.orig_height)
    # Not element.orig_width/height: they are unset (even garbage) until Blender loads a frame.
    element = image_element(strip, indices[0])
    path = os.path.join(strip_directory(strip), element.filename)
    return image_size(path) or blender_image_size(path, load)


def file_stat(path: str) -> tuple[int, int]:
    """(size, mtime in ns) of a file, or (-1, -1) when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


_size_cache: dict[tuple, tuple[int, int] | None] = {}


def blender_image_size(path: str, load: bool = True) -> tuple[int, int] | None:
    """Width and height of any image Blender reads (DPX, TIFF, Radiance HDR, ...), or None;
    remembered per file version. ``load=False`` only looks up what an earlier call found."""
    key = (path, *file_stat(path))
    if key[1] < 0:
        return None
    if key not in _size_cache:
        if not load:
            return None
        size = None
        try:
            img = bpy.data.images.load(path, check_existing=False)
        except RuntimeError:  # not an image Blender reads
            img = None
        if img is not None:
            w, h = img.size
            size = (int(w), int(h)) if w > 0 and h > 0 else None
            bpy.data.images.remove(img)
        if len(_size_cache) > 64:
            _size_cache.clear()
        _size_cache[key] = size
    return _size_cache[key]


def set_enum(owner, attr: str, value: str) -> bool:
    """Set an enum by name where this Blender's colour configuration has it; False where not."""
    try:
        setattr(owner, attr, value)
    except TypeError:
        return False
    return True


def checkpoint_of(strip) -> str:
    """The strip's remembered checkpoint (absolute path), or ''."""
    value = strip.get(paths.CHECKPOINT_KEY, "") if strip is not None else ""
    return paths.abspath(value) if isinstance(value, str) and value else ""


def set_checkpoint(strip, path: str) -> None:
    if bpy.data.filepath and bpy.context.preferences.filepaths.use_relative_paths:
        try:
            path = bpy.path.relpath(path)
        except ValueError:  # another drive on Windows
            pass
    strip[paths.CHECKPOINT_KEY] = path


def remap_checkpoints(old_blend: str, new_blend: str) -> list[tuple[str, str, str]]:
    """Save As to another folder: every strip's relative (//) checkpoint path is made relative
    to the new .blend's folder, as Blender does for its own paths (a custom property is not
    remapped by Blender). Returns (scene, strip, old value) for each change, to undo it."""
    if not old_blend or not new_blend:
        return []
    old_dir = os.path.dirname(os.path.abspath(old_blend))
    new_dir = os.path.dirname(os.path.abspath(new_blend))
    if os.path.normcase(old_dir) == os.path.normcase(new_dir):
        return []
    changed = []
    for scene in bpy.data.scenes:
        if scene.library is not None or scene.sequence_editor is None:
            continue
        for strip in all_strips(scene.sequence_editor):
            value = strip.get(paths.CHECKPOINT_KEY)
            if not isinstance(value, str) or not value.startswith("//"):
                continue
            target = os.path.normpath(os.path.join(old_dir, value[2:]))
            try:
                new_value = "//" + os.path.relpath(target, new_dir).replace(os.sep, "/")
            except ValueError:  # another drive on Windows: absolute
                new_value = target
            strip[paths.CHECKPOINT_KEY] = new_value
            changed.append((scene.name, strip.name, value))
    return changed


def restore_checkpoints(changed: list[tuple[str, str, str]]) -> None:
    """Undo ``remap_checkpoints`` (after File > Save Copy, which leaves this file where it
    was)."""
    for scene_name, strip_name, value in changed:
        strip = find_strip(bpy.data.scenes.get(scene_name), strip_name)
        if strip is not None:
            strip[paths.CHECKPOINT_KEY] = value


def free_channel(
    collection, start: int, end: int, preferred: int, closed: frozenset[int] = frozenset()
) -> int:
    """The lowest channel >= ``preferred``, not in ``closed``, where [start, end) overlaps no
    strip."""
    busy: dict[int, list[tuple[int, int]]] = {}
    for s in collection:
        busy.setdefault(s.channel, []).append((left_handle(s), right_handle(s)))
    for channel in range(max(1, preferred), MAX_CHANNEL + 1):
        if channel in closed:
            continue
        if all(e <= start or s >= end for s, e in busy.get(channel, ())):
            return channel
    raise ValueError(
        f"No channel from {max(1, preferred)} to {MAX_CHANNEL} is free for frames "
        f"{start}-{end - 1} (each holds a strip there, or is muted or locked)."
    )


def plan_channel(scene, source, frame_start: int, count: int) -> int:
    """The channel a new strip of ``count`` frames from ``frame_start`` goes to beside
    ``source`` (in the same meta, if any): the lowest free one from the source's up, never a
    muted or locked one. ValueError when there is none."""
    holder = owner(scene.sequence_editor, source)
    end = frame_start + count
    return free_channel(children(holder), frame_start, end, source.channel, closed_channels(holder))


def reveal_in_metas(sequence_editor, strip) -> str | None:
    """A strip added inside a meta strip past the meta's end does not play: Blender keeps the
    meta's range and hides what lies beyond. Extend the meta (and each meta holding it) to the
    strip's end where that shows nothing else the meta hid and overlaps no strip beside it (an
    overlap makes Blender move the meta to another channel). Returns None, or one sentence
    saying what is still hidden and why."""
    end = right_handle(strip)
    inner = strip
    holder = owner(sequence_editor, strip)
    while holder is not sequence_editor and getattr(holder, "type", "") == "META":
        meta = holder
        old_end = right_handle(meta)
        if old_end >= end:
            return None
        parent = owner(sequence_editor, meta)
        if meta.lock or meta.channel in closed_channels(parent):
            return (
                f"'{strip.name}' is inside meta strip '{meta.name}', which ends at frame "
                f"{old_end - 1}: the frames after it do not play until the meta is extended to "
                f"frame {end - 1} (not done here: the meta or its channel is locked)."
            )
        hidden = [
            s
            for s in children(meta)
            if s != inner and left_handle(s) < end and right_handle(s) > old_end
        ]
        blocking = [
            s
            for s in children(parent)
            if s != meta
            and s.channel == meta.channel
            and left_handle(s) < end
            and right_handle(s) > old_end
        ]
        if hidden or blocking:
            why = (
                f"it would also show '{hidden[0].name}', which the meta hides"
                if hidden
                else f"'{blocking[0].name}' is in the way on channel {meta.channel}"
            )
            return (
                f"'{strip.name}' is inside meta strip '{meta.name}', which ends at frame "
                f"{old_end - 1}: the frames after it do not play until the meta is extended to "
                f"frame {end - 1} (not done here: {why})."
            )
        put(meta, "right_handle", end)
        inner, holder = meta, parent
    return None


def insert_image_strip(scene, source, directory: str, filenames: list[str], frame_start: int):
    """A new image strip of ``filenames`` at ``frame_start`` on a free channel.

    It takes the source strip's colour space and alpha mode (sRGB and straight alpha after
    frames Blender decoded), transform (which is where Blender keeps the fit), crop and flips,
    so frames at the source's resolution line up with it, and its blend mode, opacity and
    modifiers, so it looks the way the source does.
    """
    if not filenames:
        raise ValueError("There are no frames to insert.")
    se = scene.sequence_editor
    holder = owner(se, source)
    collection = children(holder)
    end = frame_start + len(filenames)
    channel = plan_channel(scene, source, frame_start, len(filenames))
    first = os.path.join(directory, filenames[0])
    strip = collection.new_image(f"{source.name}_gan", first, channel, frame_start)
    for name in filenames[1:]:
        strip.elements.append(name)
    if holder is not se:
        # Appending elements does not update the meta's own range (it was computed from the
        # one-frame strip): setting the end does, else the meta would show the first frame only.
        put(strip, "right_handle", end)
    if bpy.data.filepath and bpy.context.preferences.filepaths.use_relative_paths:
        try:
            strip.directory = bpy.path.relpath(directory) + "/"
        except ValueError:
            pass
    # Frames Blender decoded were rendered to sRGB PNGs, whose alpha is straight (decode.py),
    # whatever the source's files hold (an OpenEXR's is premultiplied); others keep their
    # files' colour space and alpha.
    decoded = decode.needs_decode(source)
    space = "sRGB" if decoded else source.colorspace_settings.name
    set_enum(strip.colorspace_settings, "name", space)  # unknown to this config: left as is
    strip.alpha_mode = "STRAIGHT" if decoded else source.alpha_mode
    for attr in ("scale_x", "scale_y", "offset_x", "offset_y", "rotation", "origin", "filter"):
        setattr(strip.transform, attr, getattr(source.transform, attr))
    for attr in ("min_x", "max_x", "min_y", "max_y"):
        setattr(strip.crop, attr, getattr(source.crop, attr))
    # The frames are never flipped (decode.py): Blender mirrors after the transform and crop,
    # so the new strip shows them the way the source shows its files only with the same flips.
    for attr in ("use_flip_x", "use_flip_y"):
        setattr(strip, attr, getattr(source, attr))
    skipped = look.copy_look(source, strip)
    if skipped:
        print(f"FrameSequenceGAN: not copied to '{strip.name}': {', '.join(skipped)}")
    if strip.channel != channel or left_handle(strip) != frame_start:
        # Blender moved it to resolve an overlap we did not foresee: keep it, but be honest.
        print(
            f"FrameSequenceGAN: strip '{strip.name}' placed at channel {strip.channel}, "
            f"frame {left_handle(strip)}"
        )
    return strip
