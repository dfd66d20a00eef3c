"""Fixtures for tests that run real Blender (the ``bpy`` module from PyPI) in a subprocess.

Interpreters with bpy:
- the Python running pytest (bpy 4.5 LTS in the project's test environment) always;
- each interpreter in ``FSGAN_BPY_PYTHONS`` (os.pathsep-separated: scripts/test.sh sets it to
  venvs with bpy 4.2 and 5.0 on Python 3.11, and 5.2 LTS and 5.3 on Python 3.13). When it is set,
  a broken entry fails the tests rather than skipping them.
Those extra interpreters need no torch: their worker runs in the Python running pytest, through
the add-on's ``FSGAN_PYTHON`` variable.

Every Blender process gets a temporary HOME (its user preferences, extensions and their user
folders live there) and a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "bl_scripts"
ENV_PYTHONS = "FSGAN_BPY_PYTHONS"
TIMEOUT_S = float(os.environ.get("FSGAN_BLENDER_TEST_TIMEOUT", "900"))


def _extra_pythons() -> list[str]:
    raw = os.environ.get(ENV_PYTHONS, "")
    return [p for p in raw.split(os.pathsep) if p.strip()]


def bpy_params(extra: bool = True):
    """pytest params: the main interpreter, then the ones named in FSGAN_BPY_PYTHONS."""
    params = [pytest.param(sys.executable, id="bpy-main")]
    if not extra:
        return params
    extras = _extra_pythons()
    if extras:
        for i, python in enumerate(extras):
            # The id names the venv (e.g. bpy-.venv-bpy53), so a failure says which Blender.
            name = Path(python).parent.parent.name or f"extra{i + 1}"
            params.append(pytest.param(python, id=f"bpy-{name}"))
    else:
        params.append(
            pytest.param(
                None,
                id="bpy-extra",
                marks=pytest.mark.skip(
                    reason=f"{ENV_PYTHONS} is not set (scripts/test.sh sets it to Pythons with "
                    "bpy 4.2, 5.0, 5.2 and 5.3 installed)"
                ),
            )
        )
    return params


def bpy_version(python: str) -> str:
    """The bpy version string of ``python``; fails (never skips) when bpy is not there."""
    assert python and os.path.isfile(python), f"{python!r} is not a Python interpreter"
    code = "import importlib.metadata as m; print(m.version('bpy'))"  # no bpy import: fast
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{python} has no bpy package:\n{proc.stderr}"
    return proc.stdout.strip()


class BlenderRun:
    def __init__(self, proc: subprocess.CompletedProcess, seconds: float):
        self.proc = proc
        self.seconds = seconds
        self.output = proc.stdout + proc.stderr
        self.results = [
            json.loads(line[len("RESULT ") :])
            for line in proc.stdout.splitlines()
            if line.startswith("RESULT ")
        ]

    def stage(self, name: str) -> dict:
        for r in self.results:
            if r.get("stage") == name:
                return r
        raise AssertionError(f"no result for stage {name!r}; output:\n{self.output[-6000:]}")


@pytest.fixture
def blender(tmp_path):
    """Run a script from bl_scripts/ in real bpy: ``blender(python, "x.py", args...)``."""
    import time

    home = tmp_path / "home"
    home.mkdir()

    def run(python: str, script: str, *args: str, env: dict | None = None, check=True):
        """``env``: variables to set on top of ours (a value of None removes one)."""
        version = bpy_version(python)
        full_env = dict(os.environ)
        full_env["HOME"] = str(home)
        full_env.pop("BLENDER_USER_RESOURCES", None)
        full_env.pop("FSGAN_PYTHON", None)
        # A DeprecationWarning from the add-on's code (Blender 5.2+ deprecates RNA properties)
        # is an error in every run (bl_scripts/_bl_common.py), and checked below.
        full_env["FSGAN_ADDON_DEPRECATIONS"] = "error"
        if python != sys.executable:
            # The extra interpreters have bpy but no torch: the worker runs in pytest's Python.
            full_env["FSGAN_PYTHON"] = sys.executable
        for key, value in (env or {}).items():  # None removes a variable
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        cmd = [python, str(SCRIPTS / script), "--", *[str(a) for a in args]]
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=full_env, cwd=tmp_path
        )
        run_ = BlenderRun(proc, time.monotonic() - t0)
        print(f"[bpy {version}] {script}: {run_.seconds:.1f} s")
        if check:
            assert proc.returncode == 0, (
                f"{script} failed in bpy {version} (exit {proc.returncode}):\n{run_.output[-8000:]}"
            )
        run_.version = version
        for r in run_.results:
            if r.get("stage") == "addon_deprecations":
                assert r["warnings"] == [], (
                    f"{script} in bpy {version}: the add-on used deprecated API:\n"
                    + "\n".join(r["warnings"])
                )
        return run_

    return run


@pytest.fixture(scope="session")
def built_zip(tmp_path_factory) -> Path:
    """The extension zip, built and validated by build.py with Blender's own tooling."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    zips = list(out.glob("fsgan_blender-*.zip"))
    assert len(zips) == 1, zips
    return zips[0]


def write_frames(folder: Path, count: int = 16, width: int = 64, height: int = 36) -> Path:
    """A small procedural animation: a square moving right over a gradient, as PNGs."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = Image.new("RGB", (width, height))
        draw = ImageDraw.Draw(img)
        for y in range(height):
            draw.line([(0, y), (width, y)], fill=(30, 40 + y * 2, 90))
        x = 2 + i * (width - 14) // max(1, count - 1)
        draw.rectangle([x, height // 2 - 5, x + 10, height // 2 + 5], fill=(240, 200, 40))
        img.save(folder / f"frame_{i + 1:04d}.png")
    return folder


@pytest.fixture(scope="session")
def frames16(tmp_path_factory) -> Path:
    return write_frames(tmp_path_factory.mktemp("frames") / "walk cycle é")
