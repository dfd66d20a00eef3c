"""The generated strip continues the source strip's look on the timeline.

Training sees the strip's frames without its modifiers (they are not baked into the frames the
worker reads or Blender decodes), so the generated frames come out "raw" like the source's files.
Giving the new strip the source's blend mode, opacity and a copy of its modifiers makes the
extension look on the timeline the way the source does, and keeps the grade editable: changing a
curve later is done on both strips, not baked into pixels.
"""

from __future__ import annotations

import bpy

from . import strips

# Strip settings that change how the strip's picture is composited, not what its files hold.
LOOK_PROPS = ("blend_type", "blend_alpha", "use_float", "use_linear_modifiers", "color_tag")

# Never copied property by property: identity, and Blender's own bookkeeping.
_SKIP = {"rna_type", "name", "type", "is_active", "open_mask_input_panel"}

_MAX_DEPTH = 4


def copy_look(source, strip) -> list[str]:
    """Give ``strip`` the source's blend mode, opacity and a copy of each of its modifiers, in
    order, with every setting (colour balance wheels and curves included). Returns what could not
    be copied, as "modifier.setting" names; an empty list when everything was."""
    skipped: list[str] = []
    for attr in LOOK_PROPS:
        if hasattr(source, attr) and hasattr(strip, attr):
            _set(strip, attr, getattr(source, attr), attr, skipped)
    if len(source.modifiers) == 0:
        return skipped
    with strips.use_sequencer_scene(strip.id_data):  # 5.0 needs one for modifiers.new
        for mod in source.modifiers:
            try:
                new = strip.modifiers.new(name=mod.name, type=mod.type)
            except (RuntimeError, TypeError, ValueError):
                skipped.append(mod.name)
                continue
            copy_struct(mod, new, mod.name, skipped)
    return skipped


def copy_struct(src, dst, path: str, skipped: list[str], depth: int = 0) -> None:
    """Copy every writable RNA property of ``src`` to ``dst``: values, references to data-blocks
    and strips (a mask, a node group), nested settings (``color_balance``, ``curve_mapping``)
    and curve points."""
    if depth > _MAX_DEPTH:
        return
    for prop in src.bl_rna.properties:
        name = prop.identifier
        if name in _SKIP:
            continue
        where = f"{path}.{name}"
        value = getattr(src, name)
        if prop.type == "COLLECTION":
            _copy_collection(value, getattr(dst, name), where, skipped, depth)
        elif prop.type == "POINTER" and prop.is_readonly:
            if value is not None and not isinstance(value, bpy.types.ID):
                copy_struct(value, getattr(dst, name), where, skipped, depth + 1)
        elif not prop.is_readonly:
            _set(dst, name, value[:] if getattr(prop, "is_array", False) else value, where, skipped)
    if src.bl_rna.identifier == "CurveMapping":
        dst.update()  # rebuild the evaluation tables from the copied points


def _copy_collection(src, dst, path: str, skipped: list[str], depth: int) -> None:
    items = list(src)
    kind = getattr(getattr(src, "bl_rna", None), "identifier", "")
    if len(dst) != len(items) and kind == "CurveMapPoints":
        try:  # a curve keeps at least two points: add first, then remove the extra ones
            while len(dst) < len(items):
                dst.new(*items[len(dst)].location)
            while len(dst) > len(items):
                dst.remove(dst[len(dst) - 1])
        except (RuntimeError, TypeError):
            pass
    if len(dst) != len(items):
        skipped.append(path)
        return
    for i, (a, b) in enumerate(zip(items, dst)):
        copy_struct(a, b, f"{path}[{i}]", skipped, depth + 1)


def _set(owner, attr: str, value, where: str, skipped: list[str]) -> None:
    try:
        setattr(owner, attr, value)
    except (AttributeError, TypeError, ValueError):
        skipped.append(where)
