"""Operators: gather a job from Blender data, run the worker, put the result back.

Two ways to run, one code path:
- ``invoke`` (buttons in the UI): start the worker and return; a modal timer drains its events,
  so Blender never waits on training. The Cancel button (panel, status bar) stops the job.
- ``execute`` (scripts, ``bpy.ops.fsgan.train_on_strip(steps=20)``, and ``blender --background``,
  where timers never fire): run the worker to the end and print progress lines.
Either way the result (checkpoint reference, new strip) is written to Blender data on the main
thread when the operator finishes, so the operator's undo step covers it: Ctrl-Z removes the
strip that Extend added.
"""

from __future__ import annotations

import atexit
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import time

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import checkpoints, decode, interrupted, paths, preferences, strips, worker_client
from .properties import DEVICE_ITEMS, PRESET_ITEMS, START_ITEMS

LOG_PREFIX = "FrameSequenceGAN:"
GB = 2**30
ESTIMATE_TIMEOUT_S = 60.0
FLOW_WEIGHT = 1.0  # Optical Flow Guidance: core's flow_weight, as measured (docs/QUALITY.md)
# What to lower when a job does not fit, in the panel's words (not the CLI's flags).
MEMORY_ADVICE = (
    "lower Batch Size (Training > Advanced), Resolution X/Y or Model Width, or set Device to CPU"
)

# The last finished job, for the panels: a failure stays visible after the job is gone.
_outcome: dict | None = None
# The memory estimate of the last training job (bytes, device), for the Training panel.
_estimate: dict | None = None
# The last training run that finished with a checkpoint (for scripts).
_last_train: dict | None = None
# Frames Blender decodes before a job starts (UI only), for the panel and Cancel,
# and the (window manager, timer) that drives it, for unregister.
_decoding: decode.DecodeTask | None = None
_decode_timer: tuple | None = None


def _log(text: str) -> None:
    print(f"{LOG_PREFIX} {text}", flush=True)


def last_outcome() -> dict | None:
    """``{"kind", "label", "level", "message"}`` of the last job that ended, or None."""
    return _outcome


def last_train() -> dict | None:
    """``{"label", "step", "cancelled", "checkpoint"}`` of the last training run that saved a
    checkpoint (scripts check ``cancelled``: a Ctrl-C stops the run but the operator finishes)."""
    return _last_train


def last_estimate() -> dict | None:
    """The memory estimate of the running training job (its worker reports it), else of the
    last one."""
    job = worker_client.current()
    if job is not None and job.state.kind == "train" and job.state.memory:
        return {**job.state.memory, "label": job.state.label}
    return _estimate


def current_decode() -> decode.DecodeTask | None:
    return _decoding


def _set_outcome(kind: str, label: str, level: str, message: str) -> None:
    global _outcome
    _outcome = {"kind": kind, "label": label, "level": level, "message": message}


def estimate_memory(
    python: str,
    core_parent: str,
    extra_paths,
    settings: dict,
    n_frames: int,
    source: tuple[int, int] | None = None,
) -> dict | None:
    """``python -m core estimate --json`` for a training job's settings, run by the worker's
    Python; None when it gives no answer (no torch, a timeout): the worker checks again.
    ``source``: the strip's frame size (the training size is fitted to its aspect)."""
    cmd = [python, "-m", "core", "estimate", "--frames", str(n_frames), "--json"]
    if source:
        cmd += ["--source", f"{source[0]}x{source[1]}"]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            cmd.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            cmd += [flag, str(value)]
    kwargs = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        proc = subprocess.run(
            cmd,  # an argument list, never a shell string
            capture_output=True,
            text=True,
            timeout=ESTIMATE_TIMEOUT_S,
            cwd=core_parent,
            env=worker_client.worker_env(core_parent, tuple(extra_paths)),
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _log(f"no memory estimate: {exc}")
        return None
    lines = proc.stdout.strip().splitlines()
    try:
        est = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    except json.JSONDecodeError:
        est = None
    if not isinstance(est, dict) or "total_bytes" not in est:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        _log(f"no memory estimate (exit {proc.returncode}): {tail}")
        return None
    return est


def decode_size(
    width: int, height: int, fit_aspect: bool, source: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The box frames Blender decodes for training are scaled down to fit (aspect kept): twice
    the training size, enough for a clean resize in the worker. With Fit Strip Aspect the
    training size follows the strip's aspect (``source``, its frame size, when known) with
    about width x height pixels (core.data.fitted_size), so the box is a square of twice its
    longer side (at 128 x 72: 256 x 256 for a square strip, 272 x 272 for a 9:16 one)."""
    if not fit_aspect:
        return 2 * width, 2 * height
    longer = max(width, height)
    if source and min(source) > 0:
        ratio = max(source) / min(source)
        longer = max(longer, math.ceil((width * height * ratio) ** 0.5) + 8)  # 8: the rounding
    return 2 * longer, 2 * longer


def estimate_text(est: dict) -> str:
    free = est.get("available_bytes")
    free_text = f" of {free / GB:.1f} GB free" if free else ""
    device = str(est.get("device") or "?").upper()
    return f"Memory estimate: about {est['total_bytes'] / GB:.2f} GB{free_text} on the {device}"


def _running_problem() -> str | None:
    if _decoding is not None:
        return (
            f"Blender is decoding the frames of '{_decoding.strip_name}' for "
            f"{_decoding.purpose}; cancel it or wait for it to finish."
        )
    job = worker_client.current()
    if job is not None and not job.finished:
        what = "Training" if job.state.kind == "train" else "Extending"
        return f"{what} '{job.state.label}' is still running; cancel it or wait for it to finish."
    return None


def tag_redraw(context) -> None:
    wm = context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type in {"SEQUENCE_EDITOR", "STATUSBAR"}:
                area.tag_redraw()


class _JobOperator:
    """Shared start / wait / finish logic of the two job operators."""

    kind = ""

    def _prepare(self, context) -> tuple[dict, str]:
        """Return (job dict, label) and remember what _finish() needs: names, never bpy
        references, because the user may undo, rename or delete while a modal job runs."""
        raise NotImplementedError

    def _finish(self, context, job: worker_client.WorkerJob) -> set[str]:
        raise NotImplementedError

    def _check_job(self, context, python, core_parent, extra_paths, job_dict) -> None:
        """Raise ValueError when the job should not start (train: the memory estimate)."""

    def _clean_failed(self, job: worker_client.WorkerJob) -> None:
        """Remove what a failed job left half done (extend: its frames, temp files)."""

    def _failure_text(self, job: worker_client.WorkerJob) -> str | None:
        """The worker's failure as one sentence, naming the panel's settings to change."""
        message = job.failure_message()
        error = job.state.error or {}
        if message is not None and error.get("code") == "out_of_memory":
            text = str(error.get("message") or "")
            head = text.split(":")[0] if text.startswith("This job needs") else (
                "The device ran out of memory"
            )  # fmt: skip
            message = f"{head}: {MEMORY_ADVICE}."
        return message

    def _value(self, settings, name: str):
        """The operator property when the caller set it, else the panel's value."""
        if self.properties.is_property_set(name):
            return getattr(self, name)
        return getattr(settings, name)

    def _start(self, context) -> worker_client.WorkerJob | None:
        problem = _running_problem()
        if problem:
            self.report({"ERROR"}, problem)
            return None
        try:
            prefs = preferences.get(context)
            python, source = preferences.resolve_python(prefs)
            python = worker_client.check_python(python, source)
            core_parent = worker_client.find_core_parent(preferences.addon_dir())
            job_dict, label = self._prepare(context)
            self._check_job(context, python, core_parent, preferences.worker_paths(prefs), job_dict)
            job = worker_client.WorkerJob(
                job_dict,
                self._job_dir,
                python,
                core_parent,
                extra_paths=preferences.worker_paths(prefs),
                label=label,
            )
            job.start()
            if getattr(self, "_attach", None):
                interrupted.begin(job, self._attach)  # should the job end without _end()
        except (ValueError, worker_client.WorkerError) as exc:
            self._discard_job_dir()
            self.report({"ERROR"}, str(exc))
            return None
        except OSError as exc:
            self._discard_job_dir()
            self.report({"ERROR"}, f"A file could not be written: {exc}.")
            return None
        global _outcome
        _outcome = None
        worker_client.set_current(job)
        _log(f"{self.kind} '{label}' started with {python} (job folder {self._job_dir})")
        return job

    def _discard_job_dir(self) -> None:
        """A job refused before its worker started leaves no folder behind."""
        job_dir = getattr(self, "_job_dir", None)
        if job_dir and not os.path.exists(os.path.join(job_dir, "job.json")):
            shutil.rmtree(job_dir, ignore_errors=True)

    def _end(self, context, job: worker_client.WorkerJob) -> set[str]:
        global _estimate
        job.close()
        if job.state.memory:  # the panel keeps showing it once the job is over
            _estimate = {**job.state.memory, "label": job.state.label}
        worker_client.set_current(None)
        tag_redraw(context)
        message = self._failure_text(job)
        if message is not None:
            self._clean_failed(job)
            interrupted.end(job.record_id)  # what it saved is in the message or on the strip
            _log(f"{self.kind} failed: {message}")
            _set_outcome(self.kind, job.state.label, "ERROR", message)
            self.report({"ERROR"}, message)
            return {"CANCELLED"}
        try:
            result = self._finish(context, job)
        except (ValueError, OSError) as exc:
            interrupted.end(job.record_id)
            _set_outcome(self.kind, job.state.label, "ERROR", str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        # Attached (or reported). An unexpected error above keeps the record instead: the
        # file's next load attaches what the run saved.
        interrupted.end(job.record_id)
        prefs = preferences.get(context)
        if prefs is not None and not prefs.keep_job_files:
            shutil.rmtree(job.job_dir, ignore_errors=True)
        return result

    # -- blocking (scripts, background) ----------------------------------------------------------

    def execute(self, context):
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        last_print = [0.0]

        def on_event(event):
            kind = event["event"]
            now = time.monotonic()
            if kind == "started":
                _log(f"{self.kind} running on {event.get('device', '?')}")
            elif kind in ("progress", "frame"):
                finished = job.state.step >= job.state.total > 0
                if now - last_print[0] >= 1.0 or finished or kind == "frame":
                    last_print[0] = now
                    _log(f"{self.kind} {worker_client.format_progress(job.state)}")
            elif kind == "checkpoint":
                _log(f"checkpoint at step {event.get('step')}: {event.get('path')}")
            elif kind == "error":
                _log(f"error: {event.get('message')}")

        try:
            job.wait(on_event=on_event)
        except KeyboardInterrupt:
            job.cancel()
            job.wait(on_event=on_event)
        return self._end(context, job)

    # -- non-blocking (UI) -----------------------------------------------------------------------

    def _invoke_job(self, context):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        self._job = job
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        tag_redraw(context)
        return {"RUNNING_MODAL"}

    def _modal_job(self, context, event):
        job = self._job
        # Every other event (ESC included: it stops playback, cancels a grab, closes a menu
        # while the job runs on) goes on to Blender; the panel's and status bar's Cancel stop it.
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if job.poll():
            tag_redraw(context)
        if not job.finished:
            return {"PASS_THROUGH"}
        job.poll()  # events printed just before the exit
        context.window_manager.event_timer_remove(self._timer)
        return self._end(context, job)

    # -- UI: decode a movie's (or EXR) frames a chunk per timer event, then start the job ---------

    def _decode_task(self, context) -> decode.DecodeTask | None:
        """The frames Blender must decode before the job can start, or None (nothing to
        decode, all of it cached, or a problem that _start() reports)."""
        return None

    def _precheck(self, context) -> None:
        """Raise ValueError for what would refuse the job after the decode (said at once)."""

    def invoke(self, context, event):
        if bpy.app.background or context.window is None or _running_problem():
            return self._invoke_job(context)
        try:
            task = self._decode_task(context)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if task is None:  # nothing to decode, or all of it cached
            return self._invoke_job(context)
        try:  # a worker that can't run, or a job refused, is said now, not after the decode
            self._precheck(context)
            prefs = preferences.get(context)
            python, source = preferences.resolve_python(prefs)
            worker_client.check_python(python, source)
            worker_client.find_core_parent(preferences.addon_dir())
        except (ValueError, worker_client.WorkerError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except OSError as exc:
            self.report({"ERROR"}, f"A file could not be written: {exc}.")
            return {"CANCELLED"}
        global _decoding, _decode_timer
        _decoding = self._decode = task
        _log(f"decoding {task.total} frames of '{task.strip_name}' before {task.purpose}")
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.05, window=context.window)
        _decode_timer = (wm, self._timer)
        wm.modal_handler_add(self)
        tag_redraw(context)
        return {"RUNNING_MODAL"}

    def _continue_with(self, task: decode.DecodeTask) -> None:
        global _decoding
        _decoding = self._decode = task

    def _end_decode(self, context) -> None:
        global _decoding, _decode_timer
        _decoding = self._decode = _decode_timer = None
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        tag_redraw(context)

    def modal(self, context, event):
        task = getattr(self, "_decode", None)
        if task is None:
            return self._modal_job(context, event)
        if task.cancelled or _decoding is not task:
            self._end_decode(context)
            self.report({"WARNING"}, "Decoding cancelled; decoded frames stay cached.")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            finished = task.step()
        except Exception as exc:  # noqa: BLE001 - never leave the add-on stuck "decoding"
            self._end_decode(context)
            known = isinstance(exc, (ValueError, OSError))
            self.report({"ERROR"}, str(exc) if known else f"Decoding failed: {exc!r}")
            return {"CANCELLED"}
        tag_redraw(context)
        if not finished:
            return {"PASS_THROUGH"}
        strip = strips.active_strip(context)
        scene = strips.sequencer_scene(context)
        if strip is None or (scene.name, strip.name) != (task.scene_name, task.strip_name):
            self._end_decode(context)
            button = "Train" if self.kind == "train" else "Extend"
            self.report(
                {"ERROR"},
                f"The active strip changed while '{task.strip_name}' was decoded; select it and "
                f"press {button} again (its frames are cached).",
            )
            return {"CANCELLED"}
        try:  # the size or the frames may have changed meanwhile: decode those too
            again = self._decode_task(context)
        except Exception as exc:  # noqa: BLE001 - never leave the add-on stuck "decoding"
            self._end_decode(context)
            known = isinstance(exc, (ValueError, OSError))
            self.report({"ERROR"}, str(exc) if known else f"Decoding failed: {exc!r}")
            return {"CANCELLED"}
        if again is not None:
            self._continue_with(again)
            return {"PASS_THROUGH"}
        self._end_decode(context)
        job = self._start(context)  # every frame is cached now: it starts at once
        if job is None:
            return {"CANCELLED"}
        self._job = job
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        return {"RUNNING_MODAL"}

    def cancel(self, context):
        # Blender ends the modal operator (file load, window closed): end the worker too.
        if getattr(self, "_decode", None) is not None:
            self._end_decode(context)
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        stop_jobs()


class FSGAN_OT_train_on_strip(_JobOperator, bpy.types.Operator):
    """Train a next-frame GAN on the visible frames of the active image or movie strip"""

    bl_idname = "fsgan.train_on_strip"
    bl_label = "Train on Strip"
    bl_options = {"UNDO"}
    kind = "train"

    steps: IntProperty(
        name="Steps",
        description="Most training steps (default: the panel's value)",
        default=400,
        min=1,
        options={"SKIP_SAVE"},
    )
    minutes: FloatProperty(
        name="Time Limit",
        description="Minutes after which training ends even if fewer steps ran; 0: no limit "
        "(default: the panel's value)",
        default=5.0,
        min=0.0,
        options={"SKIP_SAVE"},
    )
    preset: EnumProperty(
        name="Preset",
        description="Model architecture and training defaults (default: the panel's value)",
        items=PRESET_ITEMS,
        options={"SKIP_SAVE"},
    )
    width: IntProperty(
        name="Width",
        description="Training width in pixels (default: the panel's value)",
        default=128,
        min=16,
        max=4096,
        options={"SKIP_SAVE"},
    )
    height: IntProperty(
        name="Height",
        description="Training height in pixels (default: the panel's value)",
        default=72,
        min=16,
        max=4096,
        options={"SKIP_SAVE"},
    )
    fit_aspect: BoolProperty(
        name="Fit Strip Aspect",
        description="Train at the strip's aspect ratio with about Width x Height pixels; "
        "off: letterboxed into exactly Width x Height (default: the panel's value)",
        default=False,
        options={"SKIP_SAVE"},
    )
    flow_guidance: BoolProperty(
        name="Optical Flow Guidance",
        description="Also teach the model the strip's motion as optical flow measures it "
        "(default: the panel's value)",
        default=False,
        options={"SKIP_SAVE"},
    )
    device: EnumProperty(
        name="Device",
        description="Where the worker trains (default: the panel's value)",
        items=DEVICE_ITEMS,
        options={"SKIP_SAVE"},
    )
    model_width: FloatProperty(
        name="Model Width",
        description="Scale of the networks' channel counts (default: the panel's value)",
        default=1.0,
        min=0.0625,
        max=4.0,
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        strip = strips.active_strip(context)
        problem = _running_problem() or strips.strip_problem(strip, check_files=True)
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def _prepare(self, context):
        s = strips.sequencer_scene(context).fsgan
        strip = strips.active_strip(context)
        problem = strips.strip_problem(strip)
        if problem:
            raise ValueError(problem)
        problem = strips.files_problem(strip)
        if problem:
            raise ValueError(problem)
        width, height = self._value(s, "width"), self._value(s, "height")
        fit = self._value(s, "fit_aspect")
        self._source_size = strips.strip_resolution(strip, load=False)  # for the estimate
        # Frames Blender decodes (movies, OpenEXR, ...) are rendered at twice the training
        # size, enough for a clean resize in the worker; cached, so only the first time costs.
        wm = context.window_manager
        decoding = decode.needs_decode(strip)
        if decoding:
            wm.progress_begin(0, 100)

        def progress(done, total):  # total: the frames not cached yet
            wm.progress_update(int(100 * done / max(1, total)))
            _log(f"decoded {done}/{total} frames of '{strip.name}'")

        try:
            box = decode_size(width, height, fit, self._source_size)
            frames = strips.visible_frame_paths(strip, box, progress)
        finally:
            if decoding:
                wm.progress_end()
        existing = strips.checkpoint_of(strip)
        resume = bool(s.resume and existing and os.path.isfile(existing))
        checkpoint = paths.new_checkpoint_path(s, strip.name)
        # Continue Training works on a copy: the model it starts from may be another strip's
        # too (Extend's strip shares its source's) or one picked with Use Checkpoint File, and
        # stays as it was. The strip moves to the copy when the run ends.
        self._resumed_from = existing if resume else ""
        self._resume_copy = ""
        if resume:
            paths.copy_file(existing, checkpoint)
            self._resume_copy = checkpoint
        train = {
            "preset": self._value(s, "preset"),
            "steps": self._value(s, "steps"),
            "minutes": round(self._value(s, "minutes"), 4),
            "width": width,
            "height": height,
            "fit_aspect": fit,
            "flow_weight": FLOW_WEIGHT if self._value(s, "flow_guidance") else 0.0,
            "device": self._value(s, "device"),
            "width_mult": round(self._value(s, "model_width"), 6),
            "seed": s.seed,
            "preview_every": s.preview_every,
        }
        if s.batch_size > 0:
            train["batch_size"] = s.batch_size
        self._job_dir = paths.job_dir("train")
        self._scene_name = strips.sequencer_scene(context).name
        self._strip_name = strip.name
        self._attach = interrupted.target(strips.sequencer_scene(context), strip)
        job = worker_client.make_job(
            "train",
            frames,
            checkpoint,
            train=train,
            resume=resume,
            preview_dir=os.path.join(self._job_dir, "previews") if s.preview_every else None,
            cancel_file=os.path.join(self._job_dir, "cancel"),
        )
        return job, strip.name

    def _decode_task(self, context) -> decode.DecodeTask | None:
        scene = strips.sequencer_scene(context)
        strip = strips.active_strip(context)
        if strips.strip_problem(strip) or not decode.needs_decode(strip):
            return None  # _start() reports any problem
        s = scene.fsgan
        size = decode_size(
            self._value(s, "width"),
            self._value(s, "height"),
            self._value(s, "fit_aspect"),
            strips.strip_resolution(strip, load=False),
        )
        task = decode.DecodeTask(scene.name, strip.name, size)
        return task if task.total else None

    def _check_job(self, context, python, core_parent, extra_paths, job_dict):
        global _estimate
        _estimate = None
        if not bpy.app.background:
            # A separate estimate would import torch (seconds of a frozen UI) and, on a GPU,
            # take memory while the worker checks its own: in the UI the worker's estimate (in
            # its `started` event) is shown, and the worker refuses a job that won't fit.
            return
        est = estimate_memory(
            python,
            core_parent,
            extra_paths,
            job_dict["train"],
            len(job_dict["frames"]),
            getattr(self, "_source_size", None),
        )
        if est is None:
            return
        est["label"] = self._strip_name
        _estimate = est
        text = estimate_text(est)
        _log(text)
        if est.get("fits") is False:
            fewer = est.get("frames_bytes", 0) >= est.get("activations_bytes", 0)
            advice = "trim the strip to fewer frames, or " + MEMORY_ADVICE if fewer else (
                MEMORY_ADVICE + ", or trim the strip to fewer frames"
            )  # fmt: skip
            free = (est.get("available_bytes") or 0) / GB
            message = (
                f"This job needs about {est['total_bytes'] / GB:.1f} GB but the "
                f"{str(est.get('device', '?')).upper()} has {free:.1f} GB free: {advice}."
            )
            _set_outcome("train", self._strip_name, "ERROR", message)
            raise ValueError(message)
        self.report({"INFO"}, text + ".")

    def _failure_text(self, job):
        message = super()._failure_text(job)
        if message is not None and job.state.error is None:
            # Killed or crashed: checkpoints are written atomically, so the last one is whole.
            for path in (job.state.checkpoint, getattr(self, "_resumed_from", "")):
                if path and os.path.isfile(path):
                    return f"{message} The last saved checkpoint {path} is intact."
        return message

    def _clean_failed(self, job):
        # A worker killed while writing leaves its temp file (never the checkpoint itself).
        checkpoint = job.job["checkpoint"]
        pattern = os.path.join(glob.escape(os.path.dirname(checkpoint)), ".tmp-*")
        for tmp in glob.glob(pattern):
            if tmp.endswith(os.path.basename(checkpoint)):
                try:
                    os.remove(tmp)
                except OSError:
                    pass
        if not job.job["resume"]:
            return  # a new model the run saved is named in the message; the strip keeps its own
        saved = job.state.checkpoint
        if saved and os.path.isfile(saved):
            # Continue Training saved steps to its copy before it failed: the strip goes on from
            # them, as it did when the run wrote into the strip's own file. An undo step of its
            # own, so a later Ctrl-Z can't quietly take the strip back to the older model.
            strip = strips.find_strip(bpy.data.scenes.get(self._scene_name), self._strip_name)
            if strip is not None:
                strips.set_checkpoint(strip, saved)
                if bpy.ops.ed.undo_push.poll():
                    bpy.ops.ed.undo_push(message="FrameSequenceGAN: keep the steps saved")
        else:  # the copy it started from holds nothing new
            try:
                os.remove(checkpoint)
            except OSError:
                pass

    def _discard_job_dir(self) -> None:
        super()._discard_job_dir()
        # The job was refused, or its worker did not start: the copy Continue Training made
        # holds nothing new, and no strip uses it.
        copy = getattr(self, "_resume_copy", "")
        if copy:
            try:
                os.remove(copy)
            except OSError:
                pass

    def _finish(self, context, job):
        done = job.state.done or {}
        checkpoint = done.get("checkpoint") or job.job["checkpoint"]
        step = done.get("step", job.state.step)
        if not checkpoint or not os.path.isfile(checkpoint):
            self.report({"WARNING"}, "Training stopped before its first step; nothing was saved.")
            return {"CANCELLED"}
        scene = bpy.data.scenes.get(self._scene_name)
        strip = strips.find_strip(scene, self._strip_name)
        if strip is None:
            self.report(
                {"WARNING"},
                f"The strip '{self._strip_name}' is gone; the checkpoint is at {checkpoint}.",
            )
            return {"FINISHED"}
        strips.set_checkpoint(strip, checkpoint)
        global _last_train
        cancelled = bool(done.get("cancelled") or job.state.cancel_requested)
        _last_train = {"label": strip.name, "step": step, "checkpoint": checkpoint,
                       "cancelled": cancelled}  # fmt: skip
        what = "Training cancelled at" if done.get("cancelled") else "Trained"
        message = f"{what} step {step} on '{strip.name}'; checkpoint saved to {checkpoint}."
        _log(message)
        self.report({"INFO"}, message)
        return {"FINISHED"}


def extend_decode_task(scene, strip, start: str, loops: bool) -> decode.DecodeTask | None:
    """The frames an Extend from ``start`` reads that Blender must decode first (at the
    source's size: up to ``strips.LOOP_HISTORY`` of them with Continue Loops), as a task the
    UI runs a chunk per timer event; None when they are all cached (or the playhead is off the
    strip, which _start() reports)."""
    history = strips.LOOP_HISTORY if loops else strips.CONTEXT_FRAMES
    try:
        indices = strips.context_indices(strip, start, scene.frame_current, history)
    except ValueError:
        return None
    task = decode.DecodeTask(scene.name, strip.name, None, indices=indices, purpose="extending")
    return task if task.total else None


class FSGAN_OT_extend_animation(_JobOperator, bpy.types.Operator):
    """Generate new frames with the strip's model and add them as a strip after it"""

    bl_idname = "fsgan.extend_animation"
    bl_label = "Extend Animation"
    bl_options = {"UNDO"}
    kind = "extend"

    count: IntProperty(
        name="Frames",
        description="Number of new frames to generate (default: the panel's value)",
        default=16,
        min=1,
        options={"SKIP_SAVE"},
    )
    start: EnumProperty(
        name="Start From",
        description="Which frame the new animation continues from (default: the panel's value)",
        items=START_ITEMS,
        options={"SKIP_SAVE"},
    )
    device: EnumProperty(
        name="Device",
        description="Where the frames are generated (default: the panel's value)",
        items=DEVICE_ITEMS,
        options={"SKIP_SAVE"},
    )
    continue_loops: BoolProperty(
        name="Continue Loops",
        description="Where the frames before the start repeat a cycle, continue it with the "
        "strip's own frames (default: the panel's value)",
        default=True,
        options={"SKIP_SAVE"},
    )
    calibrate_motion: BoolProperty(
        name="Calibrate Motion",
        description="Match the new frames' motion to the strip's last frames (default: the "
        "panel's value)",
        default=True,
        options={"SKIP_SAVE"},
    )
    motion_gain: FloatProperty(
        name="Motion Gain",
        description="The factor on the model's motion when Calibrate Motion is off; set on its "
        "own (by a script), it turns calibration off (default: the panel's value)",
        default=1.0,
        min=0.1,
        max=4.0,
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        strip = strips.active_strip(context)
        problem = _running_problem() or strips.strip_problem(strip, min_frames=1)
        if not problem and not strips.checkpoint_of(strip):
            problem = f"The strip '{strip.name}' has no trained model yet; train on it first."
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def _checked(self, context) -> tuple:
        """(scene, strip, start, count, out_dir) once everything but the frames is known to
        work; ValueError (one sentence) when the job would be refused."""
        scene = strips.sequencer_scene(context)
        s = scene.fsgan
        strip = strips.active_strip(context)
        problem = strips.strip_problem(strip, min_frames=1)
        if problem:
            raise ValueError(problem)
        checkpoint = strips.checkpoint_of(strip)
        if not checkpoint:
            raise ValueError(f"The strip '{strip.name}' has no trained model yet; train first.")
        if not os.path.isfile(checkpoint):
            raise ValueError(
                f"The checkpoint {checkpoint} of strip '{strip.name}' does not exist; "
                "train again or pick another checkpoint."
            )
        start = self._value(s, "start")
        count = self._value(s, "count")
        first = scene.frame_current + 1 if start == "PLAYHEAD" else strips.right_handle(strip)
        strips.context_indices(strip, start, scene.frame_current)  # a playhead off the strip
        try:  # said now, not after the context is decoded and every frame generated
            strips.plan_channel(scene, strip, first, count)
        except ValueError as exc:
            raise ValueError(
                f"{exc} Make room above the strip '{strip.name}', or extend fewer frames."
            ) from None
        out_dir = paths.output_dir(s, strip.name)
        blocked = paths.unwritable_part(out_dir)  # made by the worker, not before the job runs
        if blocked is not None:
            why = "" if blocked == out_dir else f" ({blocked} is not a writable folder)"
            raise ValueError(
                f"The output folder {out_dir} cannot be written{why}; choose another Output "
                "Folder in the Extend panel."
            )
        return scene, strip, start, count, out_dir

    def _precheck(self, context) -> None:
        self._checked(context)

    def _decode_task(self, context) -> decode.DecodeTask | None:
        scene = strips.sequencer_scene(context)
        strip = strips.active_strip(context)
        if strips.strip_problem(strip, min_frames=1) or not decode.needs_decode(strip):
            return None  # _start() reports any problem
        loops = self._value(scene.fsgan, "continue_loops")
        return extend_decode_task(scene, strip, self._value(scene.fsgan, "start"), loops)

    def _prepare(self, context):
        scene, strip, start, count, out_dir = self._checked(context)
        s = scene.fsgan
        checkpoint = strips.checkpoint_of(strip)
        loops = self._value(s, "continue_loops")
        history = strips.LOOP_HISTORY if loops else strips.CONTEXT_FRAMES
        frames = strips.context_frame_paths(strip, start, scene.frame_current, history)
        missing = strips.missing_files(frames)
        if missing:
            gap = max(frames.index(p) for p in missing)
            if gap >= len(frames) - strips.CONTEXT_FRAMES:
                raise ValueError(
                    f"The frame file {missing[-1]} is missing; Extend reads the "
                    f"{strips.CONTEXT_FRAMES} frames up to the start frame."
                )
            frames = frames[gap + 1 :]  # older frames find a loop and calibrate the motion
        prefix = paths.safe_name(strip.name) + "_"
        self._job_dir = paths.job_dir("extend")
        self._scene_name = scene.name
        self._strip_name = strip.name
        self._start_mode = start
        self._playhead = scene.frame_current
        self._out_dir = out_dir
        extend = {
            "count": count,
            "out_dir": out_dir,
            "prefix": prefix,
            "start_number": paths.next_free_number(out_dir, prefix),
            "size": "source",
            "device": self._value(s, "device"),
            "loop": bool(loops),
            "motion_gain": (
                None if self._calibrates(s) else round(float(self._value(s, "motion_gain")), 4)
            ),
        }
        job = worker_client.make_job(
            "extend",
            frames,
            checkpoint,
            extend=extend,
            cancel_file=os.path.join(self._job_dir, "cancel"),
        )
        return job, strip.name

    def _calibrates(self, settings) -> bool:
        """Calibrate Motion, unless the caller set a Motion Gain and not Calibrate Motion."""
        if self.properties.is_property_set("motion_gain"):
            return self.properties.is_property_set("calibrate_motion") and self.calibrate_motion
        return self._value(settings, "calibrate_motion")

    def _clean_failed(self, job):
        # Frames of a failed run are complete files but no strip shows them: remove them, and
        # any temp file a killed worker left, so the folder is as it was.
        out_dir = os.path.realpath(self._out_dir)
        leftovers = list(job.state.frames)
        leftovers += glob.glob(os.path.join(glob.escape(out_dir), ".tmp-*"))
        for path in leftovers:
            if os.path.dirname(os.path.realpath(path)) == out_dir:
                try:
                    os.remove(path)
                except OSError:
                    pass

    def _finish(self, context, job):
        done = job.state.done or {}
        if done.get("cancelled") or job.state.cancel_requested:
            # The user asked to stop: add nothing, even if the worker finished the frames first.
            self.report({"WARNING"}, f"Extend was cancelled; no strip was added ({self._out_dir}).")
            return {"CANCELLED"}
        frames = [str(p) for p in (done.get("frames") or job.state.frames)]
        out_dir = os.path.realpath(self._out_dir)
        for path in frames:
            if os.path.dirname(os.path.realpath(path)) != out_dir or not os.path.isfile(path):
                raise ValueError(f"The worker reported a frame outside {out_dir}: {path}.")
        if not frames:
            raise ValueError("The worker finished without writing any frames.")
        scene = bpy.data.scenes.get(self._scene_name)
        source = strips.find_strip(scene, self._strip_name)
        if source is None:
            raise ValueError(
                f"The strip '{self._strip_name}' is gone; the frames are in {self._out_dir}."
            )
        if self._start_mode == "PLAYHEAD":
            frame_start = self._playhead + 1
        else:
            frame_start = strips.right_handle(source)
        try:
            new = strips.insert_image_strip(
                scene, source, self._out_dir, [os.path.basename(p) for p in frames], frame_start
            )
        except ValueError as exc:  # the timeline filled up while the frames were made
            raise ValueError(
                f"{exc} The {len(frames)} generated frames are in {self._out_dir}; make room "
                "and add them as an image strip."
            ) from None
        strips.set_checkpoint(new, job.job["checkpoint"])  # so Extend can continue from its end
        hidden = strips.reveal_in_metas(scene.sequence_editor, new)
        for s in strips.all_strips(scene.sequence_editor):
            s.select = False
        new.select = True
        scene.sequence_editor.active_strip = new
        message = (
            f"Added strip '{new.name}': {len(frames)} frames at frame {strips.left_handle(new)}, "
            f"channel {new.channel}."
        )
        if done.get("loop"):
            message += (
                f" The frames before it repeat a {done['loop']}-frame cycle, so the new ones "
                "continue it (turn off Continue Loops to generate them with the model)."
            )
        elif done.get("motion_gain_calibrated"):
            message += (
                f" Motion gain {done['motion_gain']:g}, calibrated on the strip's last frames "
                "(turn off Calibrate Motion to set it)."
            )
        elif done.get("motion_gain") is not None and job.job["extend"].get("motion_gain") is None:
            message += " The motion is the model's own: too few frames to calibrate it."
        last = strips.right_handle(new) - 1
        if scene.fsgan.fit_scene_range and last > scene.frame_end:
            scene.frame_end = last
            message += f" The scene now ends at frame {last}."
        if (
            scene.fsgan.fit_scene_range
            and scene.use_preview_range
            and strips.right_handle(source) - 1 <= scene.frame_preview_end < last
        ):  # a preview range that reached the source's end plays the new frames too
            scene.frame_preview_end = last
            message += f" The preview range now ends at frame {last}."
        _log(message)
        self.report({"INFO"}, message)
        if hidden:
            _log(hidden)
            self.report({"WARNING"}, hidden)
        return {"FINISHED"}


class FSGAN_OT_cancel_job(bpy.types.Operator):
    """Stop the running job; training saves a checkpoint at its last completed step"""

    bl_idname = "fsgan.cancel_job"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        job = worker_client.current()
        if _decoding is None and (job is None or job.finished):
            cls.poll_message_set("No job is running.")
            return False
        return True

    def execute(self, context):
        if _decoding is not None:  # the operator's modal sees it at its next event
            _decoding.cancelled = True
            self.report({"INFO"}, "Cancelling: decoding stops after the current frames.")
            return {"FINISHED"}
        worker_client.current().cancel()
        self.report({"INFO"}, "Cancelling: the worker saves its work and stops.")
        return {"FINISHED"}


class FSGAN_OT_clear_decoded_frames(bpy.types.Operator):
    """Delete the frames Blender decoded from movie and OpenEXR strips (made again when needed)"""

    bl_idname = "fsgan.clear_decoded_frames"
    bl_label = "Clear Decoded Frames"

    @classmethod
    def poll(cls, context):
        problem = _running_problem()  # a job may be reading them
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def execute(self, context):
        freed = decode.clear_cache()
        self.report({"INFO"}, f"Cleared {freed / 2**20:.1f} MB of decoded frames.")
        return {"FINISHED"}


class FSGAN_OT_set_checkpoint(bpy.types.Operator):
    """Use a checkpoint file (.safetensors) as the active strip's model"""

    bl_idname = "fsgan.set_checkpoint"
    bl_label = "Use Checkpoint"
    bl_options = {"UNDO"}

    filepath: StringProperty(
        name="File Path",
        description="The checkpoint file (.safetensors) to use for the active strip",
        subtype="FILE_PATH",
    )
    filter_glob: StringProperty(
        name="Filter",
        description="Files shown in the file browser",
        default="*.safetensors",
        options={"HIDDEN"},
    )

    @classmethod
    def poll(cls, context):
        problem = strips.strip_problem(strips.active_strip(context), min_frames=1)
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = paths.abspath(self.filepath)
        if not os.path.isfile(path):
            self.report({"ERROR"}, f"The checkpoint {path or '(none)'} does not exist.")
            return {"CANCELLED"}
        if not path.lower().endswith(".safetensors"):
            self.report({"ERROR"}, "A checkpoint must be a .safetensors file.")
            return {"CANCELLED"}
        about, problem = checkpoints.summary(path)
        if problem:  # the strip keeps the model it had
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        strip = strips.active_strip(context)
        strips.set_checkpoint(strip, path)
        self.report({"INFO"}, f"'{strip.name}' now uses {os.path.basename(path)} ({about}).")
        return {"FINISHED"}


classes = (
    FSGAN_OT_train_on_strip,
    FSGAN_OT_extend_animation,
    FSGAN_OT_cancel_job,
    FSGAN_OT_set_checkpoint,
    FSGAN_OT_clear_decoded_frames,
)


def stop_jobs() -> None:
    """End the running job because Blender ends it (a file load, quit, the add-on disabled,
    its window closed). A training run saves its last step; that checkpoint is recorded for its
    strip (``interrupted``), which gets it when its .blend is opened again."""
    job = worker_client.stop_all()
    if job is None or not job.record_id:
        return
    try:
        done = job.state.done or {}
        checkpoint = done.get("checkpoint") or job.state.checkpoint
        if not checkpoint or not os.path.isfile(checkpoint):
            checkpoint = None
            copy = job.job["checkpoint"] if job.job.get("resume") else ""
            if copy and os.path.isfile(copy):
                # Continue Training's copy, and no event said it was saved: a worker killed
                # after its save but before the event holds new steps, else nothing new.
                started = interrupted.started_from(job.record_id)
                if started and checkpoints.summary(copy) == checkpoints.summary(started):
                    os.remove(copy)
                else:
                    checkpoint = copy
        step = done.get("step", job.state.step)
        message = interrupted.stopped(job.record_id, job.state.label, checkpoint, step)
        _log(message)
        _set_outcome("train", job.state.label, "WARNING", message)
    except Exception as exc:  # noqa: BLE001 - handlers, unregister and atexit must go on
        _log(f"after stopping training: {exc!r}")


@bpy.app.handlers.persistent
def _on_load_pre(*_args):
    # A file (re)load frees the data a running job would write into: stop the job first.
    _drop_decode(remove_timer=False)  # Blender cancels the modal operator, which removes it
    stop_jobs()


@bpy.app.handlers.persistent
def _on_load_post(*_args):
    # Training that a file load or quit stopped: its strip gets the model it saved.
    for name, message in interrupted.reattach():
        _log(message)
        _set_outcome("train", name, "INFO", message)


_remapped: list[tuple[str, str, str]] = []


@bpy.app.handlers.persistent
def _on_save_pre(filepath=None, *_args):
    # Save As elsewhere: relative checkpoint paths must follow (bpy.data.filepath is still the
    # old file's here; 4.2+ pass the new one).
    global _remapped
    _remapped = strips.remap_checkpoints(bpy.data.filepath, filepath or "")


@bpy.app.handlers.persistent
def _on_save_post_fail(*_args):
    # The file was not written: this one's paths go back to what they were.
    global _remapped
    strips.restore_checkpoints(_remapped)
    _remapped = []


@bpy.app.handlers.persistent
def _on_save_post(filepath=None, *_args):
    global _remapped
    copy = bool(filepath) and os.path.normcase(os.path.abspath(filepath)) != os.path.normcase(
        os.path.abspath(bpy.data.filepath)
    )  # Save Copy: the file written is elsewhere, this one stays where it was
    if _remapped and copy:
        strips.restore_checkpoints(_remapped)
    _remapped = []
    if not copy:
        job = worker_client.current()
        if job is not None and job.record_id:  # Save As: the strip now lives in this file
            interrupted.moved(job.record_id, bpy.data.filepath)
        interrupted.forget_saved()


_HANDLERS = (
    ("load_pre", _on_load_pre),
    ("load_post", _on_load_post),
    ("save_pre", _on_save_pre),
    ("save_post", _on_save_post),
    ("save_post_fail", _on_save_post_fail),
)


def register_handlers() -> None:
    for name, handler in _HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if handler not in handlers:
            handlers.append(handler)
    atexit.register(stop_jobs)


def _drop_decode(remove_timer: bool) -> None:
    """Forget a decode in progress: its operator is being cancelled (file load) or is gone
    without a cancel() call (the add-on was disabled: then its timer is removed here)."""
    global _decoding, _decode_timer
    if _decoding is not None:
        _decoding.cancelled = True
    if remove_timer and _decode_timer is not None:
        wm, timer = _decode_timer
        try:
            wm.event_timer_remove(timer)
        except (ReferenceError, ValueError, RuntimeError):  # already freed with its window
            pass
    _decoding = _decode_timer = None


def unregister_handlers() -> None:
    for name, handler in _HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if handler in handlers:
            handlers.remove(handler)
    atexit.unregister(stop_jobs)
    _drop_decode(remove_timer=True)  # unregister frees a modal handler without cancel()
    stop_jobs()
