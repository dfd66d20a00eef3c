"""The worker protocol: a job file in, one JSON object per line out.

This module is the single place the protocol is defined. The Blender add-on reads the same
events with the standard library only, so everything here is plain JSON (no tensors, no numpy).

Job file (``python -m core worker --job job.json``)::

    {
      "version": 1,
      "kind": "train" | "extend",
      "frames": ["/abs/frame_0001.png", ...],   # train: the clip in order;
                                                 # extend: the frames up to the start frame,
                                                 # the LAST one is it (the model reads the last
                                                 # few, a loop is looked for in up to 96)
      "checkpoint": "/abs/model.safetensors",    # train: written here; extend: read from here
      "resume": false,                           # train: continue from `checkpoint` if it exists
      "train": {"preset": "default", "steps": 500, "width": 128, "height": 72,
                "device": "auto", "seed": 0, ...},   # any ModelConfig/TrainConfig field
      "extend": {"count": 16, "out_dir": "/abs/out", "prefix": "frame_",
                 "start_number": 1, "size": "source" | "train", "device": "auto",
                 "loop": true,                   # false: generate even where frames loop
                 "motion_gain": null},           # null: calibrated on the frames before the
                                                 # start; a number: the factor on the flows
      "orientation": "exif" | "stored",          # optional: "exif" (default) turns JPEGs
                                                 # upright by their EXIF tag; "stored" reads
                                                 # pixels as stored, as Blender shows them
      "preview_dir": "/abs/previews",            # optional: sample rollouts are written here
      "cancel_file": "/abs/job.cancel"           # optional: its appearance cancels the job
    }

Events, one JSON object per line on stdout, each with an ``"event"`` key:

    started     {"kind", "device", "pid"}; train also "memory": the estimate the worker checked
                 (as `core estimate --json`: "total_bytes", "frames_bytes", ...,
                 "available_bytes" (free on the device, or null), "device")
    progress    {"step", "total", "losses": {name: float}, "outputs": {"d_real", "d_fake",
                 "s_real", "s_fake"}, "eta_s", "elapsed_s", "steps_per_s", "time_limit_s"
                 (the train job's "minutes" x 60, or null: training ends at whichever of
                 "total" steps and the time limit comes first)}
    sample      {"step", "path"}                 a preview PNG of a fixed-seed rollout
    checkpoint  {"step", "path"}                 a complete checkpoint is on disk
    frame       {"index", "total", "path"}       extend: one generated frame is on disk
    done        {"kind", "cancelled", "checkpoint", "frames", "step"}; extend also "loop": the
                 period of the cycle it continued instead of generating (core/loops.py), or null,
                 and "motion_gain": the factor the model's flows were multiplied by (calibrated
                 or as given; core/generate.py calibrate_motion_gain), or null where no model
                 moved pixels at the source's size, and "motion_gain_calibrated": whether it
                 was calibrated (false: given, or too few frames before the start)
    error       {"message", "code": "bad_input" | "out_of_memory" | "io" |
                 "missing_dependency" | "internal", "hint"}
    log         {"message"}                      e.g. an automatic retry at a smaller batch, a
                                                 rollback after a collapse (core/guard.py)

Exit status: 0 done (also after a cancel, with ``"cancelled": true``), 2 bad input (or a missing
requirement), 3 out of memory, 1 any other failure. SIGTERM, SIGINT or the cancel file make a
training job save a valid checkpoint at the last completed step and finish with ``done``; an
extend job stops after the frame it is writing. ``--parent-watch``: EOF on stdin (the parent
died) counts as a cancel.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any

PROTOCOL_VERSION = 1
JOB_KINDS = ("train", "extend")
ORIENTATIONS = ("exif", "stored")
EVENTS = ("started", "progress", "sample", "checkpoint", "frame", "done", "error", "log")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_OOM = 3


class JobError(ValueError):
    """A job file that cannot be run; the message is one sentence for the user."""


@dataclass
class Job:
    kind: str
    frames: list[str]
    checkpoint: str
    resume: bool = False
    train: dict[str, Any] = field(default_factory=dict)
    extend: dict[str, Any] = field(default_factory=dict)
    preview_dir: str | None = None
    cancel_file: str | None = None
    orientation: str = "exif"
    version: int = PROTOCOL_VERSION


def parse_job(data: dict[str, Any]) -> Job:
    """Validate a job dict (types, kinds, paths) and return a Job, or raise JobError."""
    if not isinstance(data, dict):
        raise JobError("The job file must hold a JSON object.")
    version = data.get("version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise JobError(
            f"The job file has protocol version {version!r}; this worker speaks version "
            f"{PROTOCOL_VERSION}. Update the add-on and its worker together."
        )
    kind = data.get("kind")
    if kind not in JOB_KINDS:
        raise JobError(f"The job kind must be one of {', '.join(JOB_KINDS)}, not {kind!r}.")
    frames = data.get("frames")
    if not isinstance(frames, list) or not all(isinstance(f, str) and f for f in frames):
        raise JobError("The job's 'frames' must be a list of file paths.")
    if not frames:
        raise JobError("The job lists no frames.")
    checkpoint = data.get("checkpoint")
    if not isinstance(checkpoint, str) or not checkpoint:
        raise JobError("The job's 'checkpoint' must be a file path.")
    for key in ("train", "extend"):
        if not isinstance(data.get(key, {}), dict):
            raise JobError(f"The job's '{key}' settings must be a JSON object.")
    for key in ("preview_dir", "cancel_file"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise JobError(f"The job's '{key}' must be a path or null.")
    orientation = data.get("orientation", "exif")
    if orientation not in ORIENTATIONS:
        raise JobError(
            f"The job's 'orientation' must be one of {', '.join(ORIENTATIONS)}, not "
            f"{orientation!r}."
        )
    unknown = set(data) - {f for f in Job.__dataclass_fields__}
    if unknown:
        raise JobError(f"The job has unknown keys: {', '.join(sorted(unknown))}.")
    return Job(
        kind=kind,
        frames=list(frames),
        checkpoint=checkpoint,
        resume=bool(data.get("resume", False)),
        train=dict(data.get("train", {})),
        extend=dict(data.get("extend", {})),
        preview_dir=data.get("preview_dir"),
        cancel_file=data.get("cancel_file"),
        orientation=orientation,
    )


def read_job(path: str) -> Job:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise JobError(f"The job file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JobError(f"The job file {path} cannot be read: {exc}.") from None
    return parse_job(data)


def emit(event: str, stream: IO[str] | None = None, **fields: Any) -> None:
    """Print one event as one JSON line and flush, so the reader sees it at once."""
    assert event in EVENTS, event
    stream = stream or sys.stdout
    try:
        stream.write(json.dumps(_finite({"event": event, **fields}), default=str) + "\n")
        stream.flush()
    except BrokenPipeError:
        # The reader (Blender) is gone: keep working so a cancelled job can still save its
        # checkpoint, and send further output nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: send them as null so any JSON reader can parse every line."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def parse_event(line: str) -> dict[str, Any] | None:
    """Parse one line of worker output; None for lines that are not events (stray prints)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("event") not in EVENTS:
        return None
    return obj
