"""Reading frames from image strips and inserting new ones, across Blender 4.2 to 5.x.

API differences handled here and nowhere else:
- 4.2 has only ``sequence_editor.sequences``; 4.5 has ``sequences`` and ``strips``; 5.0 only
  ``strips`` (and meta strips follow the same pattern). Choose with ``hasattr``: an empty
  collection is falsy.
- An image strip is ``directory`` + ``elements[i].filename``; element ``i`` shows at scene frame
  ``frame_start + i``, and the visible range ``[frame_final_start, frame_final_end)`` is the
  content trimmed by ``frame_offset_start/end``.
"""

from __future__ import annotations

import os
import struct
import time

import bpy

from . import paths

MIN_TRAIN_FRAMES = 3
MAX_CHANNEL = 128
CONTEXT_FRAMES = 8  # frames handed to an extend job; the last one is the start frame


def children(container):
    """The strips directly inside a sequence editor or a meta strip."""
    return container.strips if hasattr(container, "strips") else container.sequences


def all_strips(sequence_editor):
    if hasattr(sequence_editor, "strips_all"):
        return sequence_editor.strips_all
    return sequence_editor.sequences_all


def owner_collection(sequence_editor, strip):
    """The collection that holds ``strip`` (top level or a meta strip's children)."""
    top = children(sequence_editor)
    if any(s == strip for s in top):
        return top
    for meta in all_strips(sequence_editor):
        if meta.type == "META" and any(s == strip for s in children(meta)):
            return children(meta)
    return top


def active_strip(context):
    scene = context.scene
    se = scene.sequence_editor if scene else None
    return se.active_strip if se else None


def find_strip(scene, name: str):
    se = scene.sequence_editor if scene else None
    if se is None:
        return None
    return all_strips(se).get(name)


def visible_indices(strip) -> range:
    """Indices into ``strip.elements`` of the frames the timeline shows, in order."""
    first = int(round(strip.frame_final_start - strip.frame_start))
    last = int(round(strip.frame_final_end - strip.frame_start))  # exclusive
    # Still frames beyond the content (negative offsets) repeat an end frame: not new data.
    return range(max(first, 0), min(last, len(strip.elements)))


def strip_directory(strip) -> str:
    library = strip.id_data.library if strip.id_data else None
    return os.path.normpath(bpy.path.abspath(strip.directory, library=library))


def visible_frame_paths(strip) -> list[str]:
    directory = strip_directory(strip)
    return [os.path.join(directory, strip.elements[i].filename) for i in visible_indices(strip)]


def index_at_frame(strip, scene_frame: int) -> int | None:
    """Element index shown at ``scene_frame``, or None outside the visible range."""
    if not strip.frame_final_start <= scene_frame < strip.frame_final_end:
        return None
    index = int(round(scene_frame - strip.frame_start))
    return index if 0 <= index < len(strip.elements) else None


def context_frame_paths(strip, start: str, scene_frame: int) -> list[str]:
    """The frames an extend job starts from; the last one is the start frame.

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
                f"(frames {strip.frame_final_start}-{strip.frame_final_end - 1})."
            )
        indices = [i for i in indices if i <= index]
    directory = strip_directory(strip)
    return [os.path.join(directory, strip.elements[i].filename) for i in indices][-CONTEXT_FRAMES:]


def strip_problem(
    strip, min_frames: int = MIN_TRAIN_FRAMES, check_files: bool = False
) -> str | None:
    """Why ``strip`` can't be used (one sentence), or None when it can.

    ``check_files`` also looks for missing frame files (cached for a moment: polls and panels
    call this on every redraw).
    """
    if strip is None:
        return "No active strip: select an image-sequence strip in the Sequencer."
    if strip.type != "IMAGE":
        kind = strip.type.replace("_", " ").lower()
        return (
            f"The active strip '{strip.name}' is a {kind} strip; "
            "FrameSequenceGAN needs an image-sequence strip."
        )
    count = len(visible_indices(strip))
    if count < min_frames:
        return (
            f"The strip '{strip.name}' shows {count} frame{'s' if count != 1 else ''}; "
            f"at least {min_frames} are needed."
        )
    library = strip.id_data.library if strip.id_data else None
    if strip.directory.startswith("//") and not bpy.data.filepath and library is None:
        # bpy.path.abspath would resolve it against the current directory: the wrong files.
        return (
            f"The strip '{strip.name}' uses a folder relative to the .blend file "
            f"({strip.directory}), which is not saved yet; save the file or make the path "
            "absolute."
        )
    if check_files:
        frames = visible_frame_paths(strip)
        missing = cached_missing_files(frames)
        if missing:
            return missing_message(strip.name, frames, missing)
    return None


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
    """Width and height from a PNG or JPEG header (no image decoding), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return struct.unpack(">II", head[16:24])
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
    except (OSError, struct.error):
        return None
    return None


def strip_resolution(strip) -> tuple[int, int] | None:
    indices = visible_indices(strip)
    if not indices:
        return None
    # Not element.orig_width/height: they are unset (even garbage) until Blender loads a frame.
    element = strip.elements[indices[0]]
    return image_size(os.path.join(strip_directory(strip), element.filename))


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


def free_channel(collection, start: int, end: int, preferred: int) -> int:
    """The lowest channel >= ``preferred`` where [start, end) overlaps no strip."""
    busy: dict[int, list[tuple[int, int]]] = {}
    for s in collection:
        busy.setdefault(s.channel, []).append((s.frame_final_start, s.frame_final_end))
    for channel in range(max(1, preferred), MAX_CHANNEL + 1):
        if all(e <= start or s >= end for s, e in busy.get(channel, ())):
            return channel
    raise ValueError(f"No channel is free for frames {start}-{end - 1}.")


def insert_image_strip(scene, source, directory: str, filenames: list[str], frame_start: int):
    """A new image strip of ``filenames`` at ``frame_start`` on a free channel.

    It takes the source strip's colour space, alpha mode, transform (which is where Blender
    keeps the fit) and crop, so frames at the source's resolution line up with it.
    """
    if not filenames:
        raise ValueError("There are no frames to insert.")
    se = scene.sequence_editor
    collection = owner_collection(se, source)
    end = frame_start + len(filenames)
    channel = free_channel(collection, frame_start, end, source.channel)
    first = os.path.join(directory, filenames[0])
    strip = collection.new_image(f"{source.name}_gan", first, channel, frame_start)
    for name in filenames[1:]:
        strip.elements.append(name)
    if bpy.data.filepath and bpy.context.preferences.filepaths.use_relative_paths:
        try:
            strip.directory = bpy.path.relpath(directory) + "/"
        except ValueError:
            pass
    try:
        strip.colorspace_settings.name = source.colorspace_settings.name
    except TypeError:  # a colour space this config does not know
        pass
    strip.alpha_mode = source.alpha_mode
    for attr in ("scale_x", "scale_y", "offset_x", "offset_y", "rotation", "origin", "filter"):
        setattr(strip.transform, attr, getattr(source.transform, attr))
    for attr in ("min_x", "max_x", "min_y", "max_y"):
        setattr(strip.crop, attr, getattr(source.crop, attr))
    if strip.channel != channel or strip.frame_final_start != frame_start:
        # Blender moved it to resolve an overlap we did not foresee: keep it, but be honest.
        print(
            f"FrameSequenceGAN: strip '{strip.name}' placed at channel {strip.channel}, "
            f"frame {strip.frame_final_start}"
        )
    return strip
