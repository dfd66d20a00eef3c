"""The worker's Python environment: its status (``doctor``) and installing PyTorch with pip.

Standard library only, and no bpy (like worker_client.py): preferences.py turns what is here into
buttons and labels. Blender never imports torch; both jobs run in subprocesses:

- the status is ``<worker python> -m core doctor --json``, run in a thread with a timeout;
- the install is ``pip install --target <extension user folder>/site-packages ...``, run in the
  background with its output in a log file, a rough progress value and cancel (pip installs
  into a temporary folder and moves the files at the end, so a cancelled install leaves the
  target as it was).

Which pip: the pip of Blender's Python (or pip's own wheel bundled with ``ensurepip`` when that
Python has no pip), with ``--python <worker python>`` when the worker runs another interpreter,
so the wheels match the Python that will import them.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

from . import worker_client

# The worker's pinned requirements for Python 3.11 (Blender 4.2 to 5.0): the same as
# [project.dependencies] in pyproject.toml (a test checks it). build.py reads them from here for
# bundled builds.
REQUIREMENTS = (
    "torch==2.13.0",
    "numpy>=1.26,<2",  # Blender 4.5/5.0 bundle numpy 1.26 and their bpy requires <2
    "pillow>=10",
    "tqdm>=4.66",
    "safetensors>=0.4",
)
# Python 3.13 (Blender 5.1 and later): numpy 1.26 has no wheels for it, and Blender bundles
# numpy 2 there (bpy 5.x requires >=2.2). Not an environment marker in REQUIREMENTS: pip
# evaluates markers for the Python running pip, even with --python-version (bundled builds).
NUMPY_PY313 = "numpy>=2.2,<3"


def requirements(python: tuple[int, int]) -> tuple[str, ...]:
    """The worker's requirements for a Python of version ``python`` (major, minor)."""
    if tuple(python) >= (3, 13):
        return tuple(NUMPY_PY313 if r.startswith("numpy") else r for r in REQUIREMENTS)
    return REQUIREMENTS


def python_version(python: str) -> tuple[int, int]:
    """(major, minor) of the interpreter ``python``: this one's without starting it."""
    if same_file(python, sys.executable):
        return sys.version_info[0], sys.version_info[1]
    proc = subprocess.run(
        [python, "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True, text=True, timeout=60, env=_clean_env(), **_no_window(),
    )  # fmt: skip
    try:
        major, minor = proc.stdout.split()
        return int(major), int(minor)
    except ValueError:
        raise worker_client.WorkerError(
            f"The Python '{python}' did not say its version ({proc.stderr.strip()[-200:]}); "
            "choose a Python 3.11 or newer in the add-on's preferences."
        ) from None


PYPI = "https://pypi.org/simple"
# Where each build of torch 2.13.0 comes from (https://pytorch.org/get-started/locally/):
# - Linux + NVIDIA: PyPI. PyPI's Linux x86_64 wheel *is* the CUDA build: its metadata requires
#   cuda-toolkit 13.0.3 and nvidia-cudnn-cu13 (checked against PyPI's files for 2.13.0), so it
#   needs an NVIDIA driver >= 580;
# - Windows + NVIDIA: PyTorch's index of the same CUDA version (PyPI's Windows wheel is CPU-only);
# - "cuda12": CUDA 12.8 from PyTorch's index, for drivers older than 580 (Automatic picks it);
# - ROCm and CPU-only: PyTorch's indexes. Their builds carry a local version label
#   (2.13.0+cpu ...), which pip prefers over PyPI's plain 2.13.0; PyPI stays an extra index for
#   the other requirements;
# - macOS: PyPI's build (MPS).
TORCH_INDEXES = {
    "cuda": "https://download.pytorch.org/whl/cu130",
    "cuda12": "https://download.pytorch.org/whl/cu128",
    "rocm": "https://download.pytorch.org/whl/rocm6.4",
    "cpu": "https://download.pytorch.org/whl/cpu",
    "default": None,
}
CUDA13_MIN_DRIVER = 580  # NVIDIA's minimum Linux/Windows driver branch for CUDA 13.0
VARIANTS = (
    ("AUTO", "Automatic", "CUDA with an NVIDIA GPU (CUDA 12.8 for drivers older than 580), ROCm "
     "with AMD's ROCm, PyPI's build on macOS, else CPU"),
    ("cuda", "CUDA 13 (NVIDIA)", "PyTorch for NVIDIA GPUs, driver 580 or newer (about 3 GB to "
     "download)"),
    ("cuda12", "CUDA 12.8 (older NVIDIA drivers)", "PyTorch for NVIDIA GPUs with a driver older "
     "than 580 (about 3 GB to download)"),
    ("rocm", "ROCm (AMD, Linux)", "PyTorch for AMD GPUs on Linux (about 3 GB to download)"),
    ("cpu", "CPU only", "Small PyTorch without GPU support (about 200 MB to download)"),
    ("default", "PyPI default", "The build PyPI serves: MPS on Apple Silicon Macs, CUDA 13 on "
     "Linux, CPU on Windows"),
)  # fmt: skip
ENV_INDEX = "FSGAN_TORCH_INDEX_URL"  # a studio mirror of the chosen PyTorch index
MARKER = "fsgan_install.json"
DOCTOR_TIMEOUT_S = 90.0  # the first `import torch` after an install can take a while (Windows)


def nvidia_driver_major() -> int | None:
    """The NVIDIA driver's major version from nvidia-smi, or None (no nvidia-smi, no answer)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, **_no_window(),
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"\s*(\d+)\.", out or "")
    return int(m.group(1)) if m else None


def default_variant(platform: str = sys.platform, driver: int | None = None) -> str:
    """What AUTO means on this machine; ``driver`` is nvidia_driver_major() (None: unknown)."""
    if platform == "darwin":
        return "default"
    if driver is not None or shutil.which("nvidia-smi"):
        return "cuda12" if driver is not None and driver < CUDA13_MIN_DRIVER else "cuda"
    if platform.startswith("linux") and (shutil.which("rocminfo") or shutil.which("rocm-smi")):
        return "rocm"
    return "cpu"


def torch_index(variant: str, platform: str = sys.platform) -> str | None:
    """PyTorch's index for ``variant`` on ``platform``; None means PyPI (see TORCH_INDEXES)."""
    if variant == "cuda" and platform.startswith("linux"):
        return None
    return TORCH_INDEXES.get(variant)


def index_args(variant: str, platform: str = sys.platform) -> list[str]:
    url = os.environ.get(ENV_INDEX) or torch_index(variant, platform)
    return ["--index-url", url, "--extra-index-url", PYPI] if url else ["--index-url", PYPI]


def pip_prefix(runner: str) -> list[str]:
    """How to start pip with ``runner``: ``-m pip``, or pip's wheel from ensurepip."""
    probe = subprocess.run(
        [runner, "-c", "import pip"], capture_output=True, timeout=60, env=_clean_env()
    )
    if probe.returncode == 0:
        return [runner, "-m", "pip"]
    probe = subprocess.run(
        [runner, "-c", "import ensurepip, os; print(os.path.dirname(ensurepip.__file__))"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
    )
    wheels = sorted(glob.glob(os.path.join(probe.stdout.strip(), "_bundled", "pip-*.whl")))
    if probe.returncode != 0 or not wheels:
        raise worker_client.WorkerError(
            f"The Python '{runner}' has neither pip nor ensurepip, so nothing can be installed "
            "with it; choose a Python that has PyTorch in the add-on's preferences."
        )
    return [runner, os.path.join(wheels[-1], "pip")]  # pip runs from its own wheel


def install_command(
    pip: list[str],
    target: str,
    *,
    variant: str = "cpu",
    wheel_dir: str | None = None,
    worker_python: str | None = None,
    index_url: str | None = None,
    requirements: tuple[str, ...] = REQUIREMENTS,
) -> list[str]:
    """The pip command line (a list, never a shell string). ``index_url``: a mirror that serves
    everything (PyTorch's build and the other requirements) in place of PyTorch's index + PyPI."""
    cmd = list(pip)
    if worker_python:
        cmd += ["--python", worker_python]
    cmd += ["install", "--target", target, "--upgrade", "--no-warn-script-location"]
    cmd += ["--disable-pip-version-check", "--progress-bar", "off", "--only-binary", ":all:"]
    if wheel_dir:
        # --isolated: only this folder counts, not a pip.conf's indexes or find-links.
        cmd += ["--isolated", "--no-index", "--find-links", wheel_dir]
    elif index_url:
        cmd += ["--index-url", index_url]
    else:
        cmd += index_args(variant)
    return cmd + list(requirements)


def check_index_url(url: str) -> str:
    """A package index the user typed: an http(s) or file URL, else a clear error."""
    url = url.strip()
    if not re.match(r"(?i)^(https?|file)://\S+$", url):
        raise worker_client.WorkerError(
            f"The package index '{url}' is not a URL; enter the address of a simple index "
            "(e.g. https://mirror.example.com/simple), or leave it empty for pytorch.org and PyPI."
        )
    return url


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)  # Blender's own must not leak into another interpreter
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_marker(target: str) -> dict[str, Any] | None:
    """What was installed into ``target`` and for which Python, or None."""
    try:
        with open(os.path.join(target, MARKER), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


# -- install --------------------------------------------------------------------------------

_STEPS = (
    # (pattern of a pip output line, progress it marks, what the user sees)
    (re.compile(r"^(Collecting|Processing|Looking in)"), None, "Collecting packages"),
    (re.compile(r"^\s*Downloading "), None, "Downloading"),
    (re.compile(r"^Installing collected packages"), 0.8, "Installing (unpacking PyTorch)"),
    (re.compile(r"^Successfully installed"), 0.98, "Installed"),
)


class PipInstall:
    """One background pip run: ``start()``, then ``poll()`` from a timer (or ``wait()``)."""

    def __init__(
        self,
        cmd_factory,
        target: str,
        log_path: str,
        marker: dict[str, Any],
    ):
        # cmd_factory() builds the command in the thread: finding pip starts a Python too.
        self.cmd_factory = cmd_factory
        self.target = target
        self.log_path = log_path
        self.marker = marker
        self.fraction = 0.0
        self.phase = "Starting pip"
        self.line = ""
        self.error: str | None = None
        self.done = False
        self.cancelled = False
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._collected = 0

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="fsgan-pip", daemon=True)
        self._thread.start()

    @property
    def finished(self) -> bool:
        return self.done

    def _run(self) -> None:
        with open(self.log_path, "w", encoding="utf-8", errors="replace") as log:
            try:
                cmd = self.cmd_factory()
                log.write("$ " + subprocess.list2cmdline(cmd) + "\n")
                log.flush()
                with self._lock:
                    if self.cancelled:
                        raise worker_client.WorkerError("The install was cancelled.")
                    self.proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        encoding="utf-8",
                        errors="replace",
                        env=_clean_env(),
                        **_no_window(),
                    )
                assert self.proc.stdout is not None
                tail: list[str] = []
                for line in self.proc.stdout:
                    log.write(line)
                    log.flush()
                    if line.strip():
                        tail = (tail + [line.strip()])[-8:]
                        self._progress(line.rstrip())
                code = self.proc.wait()
                if self.cancelled:
                    raise worker_client.WorkerError("The install was cancelled.")
                if code != 0:
                    raise worker_client.WorkerError(_pip_failure(tail, self.log_path))
                with open(os.path.join(self.target, MARKER), "w", encoding="utf-8") as f:
                    json.dump(self.marker, f, indent=2)
                self.fraction, self.phase = 1.0, "Installed"
            except (OSError, subprocess.SubprocessError, worker_client.WorkerError) as exc:
                message = str(exc)
                if isinstance(exc, (OSError, subprocess.SubprocessError)):
                    message = f"pip could not be started: {exc}."
                self.error = message
                log.write(f"\n{message}\n")
            finally:
                self.done = True

    def _progress(self, line: str) -> None:
        self.line = line[:120]
        for pattern, fraction, phase in _STEPS:
            if pattern.search(line):
                self.phase = phase
                if fraction is None:
                    if line.startswith(("Collecting", "Processing")):
                        self._collected += 1
                    # Unknown total: creep towards 0.75 as packages are found.
                    fraction = 0.75 * (1 - 0.85**self._collected)
                self.fraction = max(self.fraction, fraction)
                break

    def cancel(self, kill: bool = False) -> None:
        """Ask pip to stop (SIGTERM); ``kill`` when it did not."""
        with self._lock:
            self.cancelled = True
            if self.proc is not None and self.proc.poll() is None:
                if kill:
                    self.proc.kill()
                else:
                    self.proc.terminate()

    def wait(self, on_progress=None, timeout: float | None = None) -> None:
        """Block until pip ends (background mode), calling ``on_progress(self)`` now and then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while not self.done:
            if on_progress is not None and (self.phase, self._collected) != last:
                last = (self.phase, self._collected)
                on_progress(self)
            if deadline is not None and time.monotonic() > deadline:
                self.cancel(kill=time.monotonic() > deadline + 5.0)
            time.sleep(0.2)
        if self._thread is not None:
            self._thread.join(timeout=30)


def _no_window() -> dict[str, Any]:
    if sys.platform == "win32":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {}


def _pip_failure(tail: list[str], log_path: str) -> str:
    text = "\n".join(tail)
    if "No matching distribution" in text or "Could not find a version" in text:
        hint = (
            "pip found no matching wheels: check the variant (or that the wheel folder holds "
            "wheels for this Python and platform)"
        )
    elif re.search(r"(?i)connection|network|resolve|proxy|SSL|timed out", text):
        hint = "pip could not reach the package index: check the network or use offline wheels"
    elif re.search(r"(?i)no space left", text):
        hint = "the disk is full (PyTorch needs about 1 GB for CPU, 5 GB for CUDA)"
    else:
        hint = tail[-1] if tail else "pip failed"
    return f"Installing PyTorch failed: {hint}. The full log is {log_path}."


# -- status (doctor) ------------------------------------------------------------------------


def doctor(
    python: str,
    source: str,
    core_parent: str,
    extra_paths: tuple[str, ...] = (),
    timeout: float = DOCTOR_TIMEOUT_S,
) -> dict[str, Any]:
    """Run ``python -m core doctor --json``; {"ready", "message", "info", "python", "checked"}.

    Never raises: every failure becomes ``ready=False`` and a message that says what to do.
    """
    result: dict[str, Any] = {"ready": False, "python": python, "source": source, "info": {}}
    result["checked"] = time.time()
    where = "Preferences > Add-ons > FrameSequenceGAN"
    try:
        python = worker_client.check_python(python, source)
        proc = subprocess.run(
            [python, "-m", "core", "doctor", "--json"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=worker_client.worker_env(core_parent, extra_paths),
            stdin=subprocess.DEVNULL,
            **_no_window(),
        )
    except worker_client.WorkerError as exc:
        result["message"] = str(exc)
        return result
    except subprocess.TimeoutExpired:
        result["message"] = (
            f"The worker Python '{python}' did not answer within {timeout:.0f} s; try Refresh, "
            f"or choose another Python in {where}."
        )
        return result
    except OSError as exc:
        result["message"] = (
            f"The worker Python '{python}' could not be started ({exc.strerror or exc}); "
            f"choose a Python interpreter in {where}."
        )
        return result
    err = (proc.stderr or "").strip()
    if re.search(r"No module named '?torch'?\b|cannot import torch", err):
        result["message"] = (
            f"PyTorch is not installed for the worker Python '{python}'; click Install PyTorch "
            f"in {where}, or choose a Python that has it."
        )
        return result
    missing = re.search(r"No module named '?(?!core)([\w.]+)'?", err)
    if missing:
        result["message"] = (
            f"The worker Python '{python}' lacks the package '{missing.group(1)}'; click "
            f"Install PyTorch in {where} (it installs all the worker needs)."
        )
        return result
    info = None
    for line in reversed((proc.stdout or "").strip().splitlines()):
        try:
            info = json.loads(line)
            break
        except ValueError:
            continue
    if proc.returncode != 0 or not isinstance(info, dict) or "torch" not in info:
        last = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
        last = last.removeprefix("error: ")
        if "No module named core" in err or "No module named 'core'" in err:
            last = "it cannot find the worker code (core/); reinstall the extension"
        elif "SyntaxError" in err or "invalid syntax" in err:
            last = "it looks like a Python older than 3.10"
        result["message"] = (
            f"The worker Python '{python}' cannot run the worker: {last[:300].rstrip('.')}. Choose a Python "
            f"3.10+ with PyTorch in {where}."
        )
        return result
    result["info"] = info
    result["ready"] = True
    result["message"] = describe(info)
    return result


def describe(info: dict[str, Any]) -> str:
    """One line: torch version, build and the device the worker would use."""
    build = str(info.get("build") or "cpu")
    build_text = {
        "cuda": f"CUDA {info.get('cuda_build')}",
        "rocm": f"ROCm {info.get('rocm_build')}",
    }
    text = f"PyTorch {info.get('torch')} ({build_text.get(build, build.upper())} build)"
    device = info.get("device")
    if device == "cuda":
        text += f" on {info.get('gpu_name', 'GPU')}"
        if info.get("gpu_memory_gb"):
            text += f" ({info['gpu_memory_gb']} GB)"
    elif device == "mps":
        text += " on Apple GPU (MPS)"
    else:
        text += " on CPU"
        if info.get("precision") == "bf16":
            text += " (bf16 hardware: faster)"
        if build in ("cuda", "rocm") and not info.get("cuda_available"):
            text += " (no usable GPU found"
            if build == "cuda" and str(info.get("cuda_build") or "").startswith("13"):
                text += (
                    f": CUDA 13 needs NVIDIA driver {CUDA13_MIN_DRIVER} or newer; update the "
                    "driver or install the CUDA 12.8 build"
                )
            text += ")"
    return text


class StatusCache:
    """The latest doctor result per (python, paths), computed in a thread on request."""

    def __init__(self):
        self.result: dict[str, Any] | None = None
        self.key: str | None = None
        self._thread: threading.Thread | None = None
        self._pending: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, key: str, func) -> bool:
        """Run ``func()`` (a doctor call) in a thread unless one is running; True if started."""
        if self.running:
            return False
        self.key = key

        def work():
            self._pending = func()

        self._thread = threading.Thread(target=work, name="fsgan-doctor", daemon=True)
        self._thread.start()
        return True

    def take(self) -> dict[str, Any] | None:
        """The result of a finished thread, once (main thread), else None."""
        if self.running or self._pending is None:
            return None
        self.result, self._pending = self._pending, None
        return self.result
