"""Starting the worker process and reading its JSON-line events into a queue.

Standard library only, and no bpy: Blender never imports torch, and this module can be used (and
tested) from plain Python. The protocol itself is defined in core/protocol.py; the few constants
and the line parser are repeated here because the add-on must not import core (a test checks that
the two copies agree).

Threads: one reader thread per job turns stdout lines into events on a ``queue.Queue``; the
caller (a modal operator's timer in the UI, a blocking loop in background mode) drains it on the
main thread and is the only one to touch Blender data.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
EVENTS = ("started", "progress", "sample", "checkpoint", "frame", "done", "error", "log")
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_OOM = 0, 1, 2, 3

# How long a cancelled worker may take to save its checkpoint before it is killed.
CANCEL_GRACE_S = 60.0


class WorkerError(RuntimeError):
    """The worker could not be started or failed; the message is one sentence for the user."""


def parse_event(line: str) -> dict[str, Any] | None:
    """One worker output line as an event dict; None for lines that are not events."""
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


def find_core_parent(addon_dir: str) -> str:
    """The folder that holds the worker package ``core/``.

    Installed extension: build.py put ``core/`` inside the add-on folder. Source tree: ``core/``
    sits beside ``fsgan_blender/``.
    """
    for candidate in (addon_dir, os.path.dirname(addon_dir)):
        if os.path.isfile(os.path.join(candidate, "core", "__main__.py")):
            return candidate
    raise WorkerError(
        f"The worker code (core/) was not found next to the add-on in {addon_dir}; "
        "reinstall the extension from a zip made by build.py."
    )


def check_python(path: str, source: str = "preference") -> str:
    """Return ``path`` if it looks like a runnable interpreter, else raise WorkerError.

    ``source`` says where the path came from, so the message names what to fix.
    """
    where = (
        f"the {source}"
        if source.endswith("environment variable")
        else "Preferences > Add-ons > FrameSequenceGAN"
    )
    if not path:
        raise WorkerError(f"No Python interpreter is set for the worker; set one in {where}.")
    if not os.path.isabs(path):
        found = shutil.which(path)
        if found:
            path = found
    if not os.path.isfile(path):
        raise WorkerError(f"The worker Python '{path}' does not exist; fix the path in {where}.")
    if not os.access(path, os.X_OK):
        raise WorkerError(
            f"The worker Python '{path}' is not an executable file; fix the path in {where}."
        )
    return path


def worker_command(python: str, job_path: str) -> list[str]:
    # An argument list, never a shell string: paths with spaces or quotes stay one argument.
    # --parent-watch: the worker ends (saving its checkpoint) when Blender's end of the stdin
    # pipe closes, so a Blender that dies leaves no orphan worker behind.
    return [python, "-u", "-m", "core", "worker", "--job", job_path, "--parent-watch"]


def worker_env(core_parent: str, extra_paths: tuple[str, ...] = ()) -> dict[str, str]:
    env = dict(os.environ)
    paths = [core_parent, *extra_paths]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONHOME", None)  # Blender's own PYTHONHOME must not leak into another Python.
    return env


def write_json_atomic(data: dict[str, Any], path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def make_job(
    kind: str,
    frames: list[str],
    checkpoint: str,
    *,
    train: dict[str, Any] | None = None,
    extend: dict[str, Any] | None = None,
    resume: bool = False,
    preview_dir: str | None = None,
    cancel_file: str | None = None,
) -> dict[str, Any]:
    """A job dict in the format of core/protocol.py. Frames are read as stored, as Blender
    shows them (it ignores a JPEG's EXIF orientation)."""
    return {
        "version": PROTOCOL_VERSION,
        "kind": kind,
        "frames": list(frames),
        "checkpoint": checkpoint,
        "resume": bool(resume),
        "train": dict(train or {}),
        "extend": dict(extend or {}),
        "preview_dir": preview_dir,
        "cancel_file": cancel_file,
        "orientation": "stored",
    }


@dataclass
class JobState:
    """What the UI shows about a job; updated only on the main thread by ``WorkerJob.apply``."""

    kind: str
    label: str = ""
    device: str = ""
    memory: dict[str, Any] | None = None  # train: the worker's memory estimate
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    time_limit_s: float | None = None  # train: the job's time limit (minutes x 60), if any
    losses: dict[str, float] = field(default_factory=dict)
    sample_path: str = ""
    checkpoint: str = ""
    frames: list[str] = field(default_factory=list)
    frames_total: int = 0
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False

    @property
    def fraction(self) -> float:
        if self.kind == "extend":
            return len(self.frames) / self.frames_total if self.frames_total else 0.0
        by_steps = self.step / self.total if self.total else 0.0
        if self.time_limit_s:  # training ends at whichever comes first
            return min(1.0, max(by_steps, self.elapsed_s / self.time_limit_s))
        return by_steps


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def format_progress(state: JobState) -> str:
    """One line for the panel, the status bar and background-mode logs."""
    if state.kind == "extend":
        return f"frame {len(state.frames)}/{state.frames_total or '?'}"
    text = f"step {state.step}/{state.total or '?'}, ETA {format_eta(state.eta_s)}"
    if state.losses:
        text += ", " + " ".join(f"{k} {v:.3f}" for k, v in state.losses.items() if v is not None)
    return text


class WorkerJob:
    """One running ``python -m core worker`` process."""

    def __init__(
        self,
        job: dict[str, Any],
        job_dir: str,
        python: str,
        core_parent: str,
        extra_paths: tuple[str, ...] = (),
        label: str = "",
    ):
        self.job = job
        self.job_dir = job_dir
        self.python = python
        self.core_parent = core_parent
        self.extra_paths = extra_paths
        self.job_path = os.path.join(job_dir, "job.json")
        self.log_path = os.path.join(job_dir, "worker.log")
        self.state = JobState(kind=job["kind"], label=label)
        if job["kind"] == "extend":
            self.state.frames_total = int(job["extend"].get("count", 0))
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._log = None
        self._cancel_time: float | None = None
        # Train: its record in interrupted.json (``interrupted.begin``), should the job end
        # without the operator that attaches its checkpoint to the strip.
        self.record_id: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        os.makedirs(self.job_dir, exist_ok=True)
        write_json_atomic(self.job, self.job_path)
        cmd = worker_command(check_python(self.python), self.job_path)
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        self._log = open(self.log_path, "w", encoding="utf-8", errors="replace")
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.job_dir,
                env=worker_env(self.core_parent, self.extra_paths),
                # A pipe nobody writes to: it closes when Blender exits, even when Blender is
                # killed, so a worker that watches stdin for EOF can stop instead of orphaning.
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                **kwargs,
            )
        except OSError as exc:
            self._log.close()
            raise WorkerError(
                f"The worker could not be started with '{self.python}': {exc}."
            ) from None
        self._reader = threading.Thread(target=self._read, name="fsgan-worker-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            event = parse_event(line)
            if event is not None:
                self.events.put(event)
            elif line.strip() and self._log is not None:
                self._log.write(line)  # stray prints go to the log, not to the UI
        self.proc.stdout.close()

    @property
    def finished(self) -> bool:
        """The process has exited and every event it printed is in the queue."""
        if self.proc is None:
            return True
        if self.proc.poll() is None:
            return False
        return self._reader is None or not self._reader.is_alive()

    def poll(self) -> list[dict[str, Any]]:
        """Drain queued events (main thread), apply them to ``state`` and return them."""
        out = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self.apply(event)
            out.append(event)
        if self._cancel_time is not None and self.proc and self.proc.poll() is None:
            if time.monotonic() - self._cancel_time > CANCEL_GRACE_S:
                self.kill()
        return out

    def wait(self, on_event=None, timeout: float | None = None) -> None:
        """Block until the worker ends (background mode), calling ``on_event`` per event."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            finished = self.finished  # read before draining, so no event is left behind
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.kill()
                raise WorkerError("The worker did not finish in time and was stopped.")
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            self.apply(event)
            if on_event is not None:
                on_event(event)
        self.close()

    def apply(self, event: dict[str, Any]) -> None:
        s = self.state
        kind = event.get("event")
        if kind == "started":
            s.device = str(event.get("device", ""))
            memory = event.get("memory")
            if isinstance(memory, dict) and isinstance(memory.get("total_bytes"), (int, float)):
                s.memory = memory
        elif kind == "progress":
            s.step = int(event.get("step") or 0)
            s.total = int(event.get("total") or s.total)
            s.eta_s = event.get("eta_s")
            elapsed, limit = event.get("elapsed_s"), event.get("time_limit_s")
            s.elapsed_s = float(elapsed) if isinstance(elapsed, (int, float)) else s.elapsed_s
            s.time_limit_s = float(limit) if isinstance(limit, (int, float)) and limit else None
            s.losses = {
                k: v for k, v in (event.get("losses") or {}).items() if isinstance(v, (int, float))
            }
        elif kind == "sample":
            s.sample_path = str(event.get("path", ""))
        elif kind == "checkpoint":
            s.checkpoint = str(event.get("path", ""))
        elif kind == "frame":
            s.frames.append(str(event.get("path", "")))
            s.frames_total = int(event.get("total") or s.frames_total)
        elif kind == "done":
            s.done = event
        elif kind == "error":
            s.error = event

    def cancel(self) -> None:
        """Ask the worker to stop: the cancel file, then SIGTERM once its handler is set up.

        A training worker saves a checkpoint at the last completed step and ends with ``done``.
        """
        self.state.cancel_requested = True
        cancel_file = self.job.get("cancel_file")
        if cancel_file:
            try:
                with open(cancel_file, "w", encoding="utf-8") as f:
                    f.write("cancel\n")
            except OSError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            if sys.platform != "win32" and (self.state.device or not cancel_file):
                # Only after `started`: a SIGTERM during `import torch` would end the worker
                # before it can save anything; until then the cancel file does the job.
                try:
                    self.proc.send_signal(signal.SIGTERM)
                except OSError:
                    pass
            if self._cancel_time is None:
                self._cancel_time = time.monotonic()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log is not None and not self._log.closed:
            self._log.close()

    # -- results ---------------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        kept = [line for line in text.strip().splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    def failure_message(self) -> str | None:
        """None when the job ended with ``done``; else one sentence for the user."""
        s = self.state
        if s.done is not None and s.error is None:
            return None
        if s.error is not None and s.error.get("code") == "missing_dependency":
            return (
                f"PyTorch is not installed for the worker Python '{self.python}' (or another "
                "requirement is missing); install it there or choose another Python in "
                "Preferences > Add-ons > FrameSequenceGAN."
            )
        if s.error is not None:
            message = str(s.error.get("message") or "The worker reported an error.")
            hint = s.error.get("hint")
            return f"{message} {hint}" if hint else message
        code = self.returncode
        tail = self.log_tail(1)
        if code is not None and code < 0:
            reason = f"was stopped by signal {-code}"
        else:
            reason = f"ended with exit code {code}"
        if "No module named 'torch'" in self.log_tail(50):
            return (
                f"PyTorch is not installed for the worker Python '{self.python}'; install it "
                "there or choose another Python in Preferences > Add-ons > FrameSequenceGAN."
            )
        detail = f" Last log line: {tail}" if tail else ""
        return f"The worker {reason} without finishing (log: {self.log_path}).{detail}"


# One job at a time: the UI, the status bar and cancel all look here.
_current: WorkerJob | None = None


def current() -> WorkerJob | None:
    return _current


def set_current(job: WorkerJob | None) -> None:
    global _current
    _current = job


def stop_all() -> WorkerJob | None:
    """End the running worker (Blender quits or loads another file): no orphan processes.
    Returns the job it stopped, its last events applied (a training job's ``done`` names the
    checkpoint it saved), or None when none was running."""
    job = _current
    set_current(None)
    if job is None:
        return None
    if not job.finished:
        job.cancel()
        try:
            if job.proc is not None:
                job.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            job.kill()
    job.close()
    job.poll()
    return job
