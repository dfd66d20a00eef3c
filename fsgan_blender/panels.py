"""The Sequencer sidebar tab "FrameSequenceGAN" and the status-bar progress.

Panels only read: settings from ``scene.fsgan``, the strip from the sequence editor, the job's
progress from worker_client.current(). Nothing here starts work or writes data.
"""

from __future__ import annotations

import os
import textwrap

import bpy
import bpy.utils.previews

from . import checkpoints, decode, operators, preferences, strips, worker_client

_previews = None  # a bpy.utils.previews collection holding the latest sample image


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 42) -> None:
    """A long sentence as several labels (a sidebar label does not wrap by itself)."""
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")


def _latest_preview(path: str) -> str:
    """``path``, or the newest preview beside it: the worker keeps only the newest one, so the
    file of an event drained a moment ago may already be replaced."""
    if not path or os.path.isfile(path):
        return path
    folder = os.path.dirname(path)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".png") and n[0] != ".")
    except OSError:
        return ""
    return os.path.join(folder, names[-1]) if names else ""


def _preview_icon(path: str) -> int:
    """Icon id of the sample image at ``path`` (loaded once per new path), or 0."""
    path = _latest_preview(path)
    if _previews is None or not path:
        return 0
    if path not in _previews:
        _previews.clear()
        _previews.load(path, path, "IMAGE")
    return _previews[path].icon_id


def draw_job(layout, job: worker_client.WorkerJob) -> None:
    state = job.state
    box = layout.box()
    what = "Training" if state.kind == "train" else "Extending"
    device = f" on {state.device}" if state.device else ""
    box.label(text=f"{what} '{state.label}'{device}", icon="SORTTIME")
    box.progress(
        factor=state.fraction, type="BAR", text=worker_client.format_progress(state).split(",")[0]
    )
    if state.kind == "train":
        box.label(text=f"ETA {worker_client.format_eta(state.eta_s)}")
        if state.losses:
            col = box.column(align=True)
            for name, value in state.losses.items():
                col.label(text=f"{name}: {value:.4f}")
    row = box.row()
    row.enabled = not state.cancel_requested
    row.operator(
        "fsgan.cancel_job",
        text="Cancelling..." if state.cancel_requested else "Cancel",
        icon="CANCEL",
    )
    if state.sample_path:
        box.label(text=f"Preview rollout ({os.path.basename(state.sample_path)}):")
        icon = _preview_icon(state.sample_path)
        if icon:  # 0 in background mode, where Blender makes no preview images
            box.template_icon(icon_value=icon, scale=8.0)


def draw_decode(layout, task) -> None:
    box = layout.box()
    box.label(text=f"Decoding '{task.strip_name}' for {task.purpose}", icon="RENDER_ANIMATION")
    box.progress(factor=task.fraction, type="BAR", text=f"{task.done} / {task.total} frames")
    row = box.row()
    row.enabled = not task.cancelled
    text = "Cancelling..." if task.cancelled else "Cancel"
    row.operator("fsgan.cancel_job", text=text, icon="CANCEL")


def draw_outcome(layout, kind: str) -> None:
    """The last job of ``kind`` that failed (or was refused): its one-sentence reason stays in
    the panel after the job is gone, e.g. a worker that was killed or ran out of memory. Also
    training that Blender stopped (a file load, quit) and where its model went."""
    outcome = operators.last_outcome()
    if outcome is None or outcome["kind"] != kind:
        return
    box = layout.box()
    what = "Training" if kind == "train" else "Extend"
    if outcome["level"] == "ERROR":
        box.label(text=f"{what} '{outcome['label']}' failed:", icon="ERROR")
    else:
        box.label(text=f"{what} '{outcome['label']}' was stopped:", icon="INFO")
    _wrapped(box, outcome["message"])


def draw_estimate(layout, strip) -> None:
    est = operators.last_estimate()
    if est is None or strip is None or est.get("label") != strip.name:
        return
    _wrapped(layout, operators.estimate_text(est) + ".", icon="MEMORY")


class _SidebarPanel:
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "FrameSequenceGAN"


class FSGAN_PT_main(_SidebarPanel, bpy.types.Panel):
    bl_label = "FrameSequenceGAN"
    bl_idname = "FSGAN_PT_main"

    def draw(self, context):
        self.layout.label(text="Learn the strip's motion, then extend it.")
        problem = preferences.worker_problem(context)  # cached; a check runs in a thread
        if problem:
            box = self.layout.box()
            box.label(text="The worker is not ready.", icon="ERROR")
            _wrapped(box, problem)
            op = box.operator("preferences.addon_show", text="Open Preferences", icon="PREFERENCES")
            op.module = __package__


class FSGAN_PT_source(_SidebarPanel, bpy.types.Panel):
    bl_label = "Source"
    bl_idname = "FSGAN_PT_source"
    bl_parent_id = "FSGAN_PT_main"

    def draw(self, context):
        layout = self.layout
        strip = strips.active_strip(context)
        if strip is not None:
            icon = {"IMAGE": "IMAGE_DATA", "MOVIE": "FILE_MOVIE"}.get(strip.type, "SEQ_SEQUENCER")
            layout.label(text=strip.name, icon=icon)
        known = strip is not None and strip.type in strips.USABLE_TYPES
        if known and strip.type == "MOVIE" and strips.files_problem(strip, cached=True):
            known = False  # without its file a movie has no frame count or size
        if known:
            col = layout.column(align=True)
            visible = len(strips.visible_indices(strip))
            col.label(text=f"Frames: {visible} visible of {strips.content_length(strip)}")
            if strip.type == "MOVIE":
                col.label(text=f"Movie: {os.path.basename(strip.filepath)}")
            size = strips.strip_resolution(strip, load=False)
            col.label(text=f"Resolution: {size[0]} x {size[1]}" if size else "Resolution: ?")
            if decode.needs_decode(strip, cached=True):  # why Train first shows "Decoding"
                col.label(text="Decoded by Blender first, then cached", icon="RENDER_ANIMATION")
            col.label(
                text=f"Timeline: {strips.left_handle(strip)}-{strips.right_handle(strip) - 1}, "
                f"channel {strip.channel}"
            )
        problem = strips.strip_problem(strip, check_files=True)
        if problem:
            _wrapped(layout, problem, icon="ERROR")


class FSGAN_PT_training(_SidebarPanel, bpy.types.Panel):
    bl_label = "Training"
    bl_idname = "FSGAN_PT_training"
    bl_parent_id = "FSGAN_PT_main"

    def draw(self, context):
        layout = self.layout
        s = strips.sequencer_scene(context).fsgan
        layout.use_property_split = True
        layout.use_property_decorate = False
        col = layout.column()
        col.prop(s, "preset")
        sub = col.column(align=True)
        sub.prop(s, "width", text="Resolution X")
        sub.prop(s, "height", text="Y")
        sub.prop(s, "fit_aspect")
        col.prop(s, "flow_guidance")
        col.prop(s, "minutes", text="Time Limit (min)")
        col.prop(s, "steps", text="Steps (most)")
        col.prop(s, "device")
        col.prop(s, "resume")

        strip = strips.active_strip(context)
        checkpoint = strips.checkpoint_of(strip) if strip is not None else ""
        box = layout.box()
        if checkpoint:
            about, problem = checkpoints.summary(checkpoint)  # header only, remembered
            box.label(
                text=f"Model: {os.path.basename(checkpoint)}",
                icon="ERROR" if problem else "CHECKMARK",
            )
            if problem:
                _wrapped(box, problem)
            else:
                box.label(text=about)
        else:
            box.label(text="Model: none yet", icon="INFO")
        box.operator("fsgan.set_checkpoint", text="Use Checkpoint File...", icon="FILEBROWSER")

        row = layout.row()
        row.scale_y = 1.4
        row.operator("fsgan.train_on_strip", icon="PLAY")
        draw_estimate(layout, strip)
        job = worker_client.current()
        task = operators.current_decode()
        if task is not None and task.purpose == "training":
            draw_decode(layout, task)
        elif job is not None and job.state.kind == "train":
            draw_job(layout, job)
        else:
            draw_outcome(layout, "train")


class FSGAN_PT_training_advanced(_SidebarPanel, bpy.types.Panel):
    bl_label = "Advanced"
    bl_idname = "FSGAN_PT_training_advanced"
    bl_parent_id = "FSGAN_PT_training"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = strips.sequencer_scene(context).fsgan
        layout.use_property_split = True
        layout.use_property_decorate = False
        col = layout.column()
        for name in ("model_width", "batch_size", "seed", "preview_every", "model_dir"):
            col.prop(s, name)


class FSGAN_PT_extend(_SidebarPanel, bpy.types.Panel):
    bl_label = "Extend"
    bl_idname = "FSGAN_PT_extend"
    bl_parent_id = "FSGAN_PT_main"

    def draw(self, context):
        layout = self.layout
        s = strips.sequencer_scene(context).fsgan
        layout.use_property_split = True
        layout.use_property_decorate = False
        col = layout.column()
        col.prop(s, "count")
        col.prop(s, "start")
        col.prop(s, "continue_loops")
        col.prop(s, "calibrate_motion")
        sub = col.column()
        sub.active = not s.calibrate_motion
        sub.prop(s, "motion_gain")
        col.prop(s, "fit_scene_range")
        col.prop(s, "output_dir")
        row = layout.row()
        row.scale_y = 1.4
        row.operator("fsgan.extend_animation", icon="SEQ_SEQUENCER")
        job = worker_client.current()
        task = operators.current_decode()
        if task is not None and task.purpose == "extending":
            draw_decode(layout, task)
        elif job is not None and job.state.kind == "extend":
            draw_job(layout, job)
        else:
            draw_outcome(layout, "extend")


def draw_status(self, context):
    """Appended to the status bar: the running job's progress, visible from any editor."""
    task = operators.current_decode()
    if task is not None:
        row = self.layout.row(align=True)
        row.ui_units_x = 16
        text = f"Decoding {task.strip_name}: {task.done} / {task.total} frames"
        row.progress(factor=task.fraction, type="BAR", text=text)
        row.operator("fsgan.cancel_job", text="", icon="CANCEL", emboss=False)
        return
    job = worker_client.current()
    if job is None:
        return
    state = job.state
    row = self.layout.row(align=True)
    row.ui_units_x = 16
    what = "Training" if state.kind == "train" else "Extending"
    row.progress(
        factor=state.fraction,
        type="BAR",
        text=f"{what} {state.label}: {worker_client.format_progress(state).split(',')[0]}",
    )
    row.operator("fsgan.cancel_job", text="", icon="CANCEL", emboss=False)


classes = (
    FSGAN_PT_main,
    FSGAN_PT_source,
    FSGAN_PT_training,
    FSGAN_PT_training_advanced,
    FSGAN_PT_extend,
)


def register_extras() -> None:
    global _previews
    _previews = bpy.utils.previews.new()
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister_extras() -> None:
    global _previews
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
