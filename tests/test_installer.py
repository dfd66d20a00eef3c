"""fsgan_blender/installer.py's pure parts (no bpy, no pip run): which PyTorch build and index a
machine gets, the pip command lines, and the status sentences. The installs themselves run in
real Blender in tests/blender/test_install.py."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installer(addon_module):
    return addon_module("installer")


def test_automatic_variant_follows_the_driver(installer, monkeypatch):
    monkeypatch.setattr(installer.shutil, "which", lambda name: None)  # no GPU tools here
    assert installer.default_variant("darwin") == "default"
    assert installer.default_variant("linux", driver=None) == "cpu"
    assert installer.default_variant("win32", driver=None) == "cpu"
    assert installer.default_variant("linux", driver=580) == "cuda"
    assert installer.default_variant("win32", driver=610) == "cuda"
    assert installer.default_variant("linux", driver=575) == "cuda12"  # CUDA 13 needs 580+
    monkeypatch.setattr(installer.shutil, "which", lambda name: name == "rocminfo" or None)
    assert installer.default_variant("linux", driver=None) == "rocm"
    assert installer.default_variant("win32", driver=None) == "cpu"


def test_indexes_per_platform(installer, monkeypatch):
    monkeypatch.delenv(installer.ENV_INDEX, raising=False)
    pypi = installer.PYPI
    # PyPI's Linux torch 2.13.0 is the CUDA 13.0 build; Windows needs PyTorch's cu130 index.
    assert installer.index_args("cuda", "linux") == ["--index-url", pypi]
    assert installer.index_args("cuda", "win32") == [
        "--index-url", "https://download.pytorch.org/whl/cu130", "--extra-index-url", pypi,
    ]  # fmt: skip
    assert installer.index_args("cuda12", "linux")[1].endswith("/whl/cu128")
    assert installer.index_args("cpu", "linux")[1].endswith("/whl/cpu")
    assert installer.index_args("default", "darwin") == ["--index-url", pypi]
    monkeypatch.setenv(installer.ENV_INDEX, "https://mirror.example/torch")
    assert installer.index_args("cuda", "linux")[:2] == [
        "--index-url",
        "https://mirror.example/torch",
    ]


def test_install_commands(installer):
    pip = ["python", "-m", "pip"]
    mirror = installer.install_command(pip, "/t", variant="cuda", index_url="https://m/simple")
    assert mirror[mirror.index("--index-url") + 1] == "https://m/simple"
    assert "--extra-index-url" not in mirror and "--no-index" not in mirror
    offline = installer.install_command(pip, "/t", wheel_dir="/w", index_url="https://m/simple")
    assert offline[offline.index("--find-links") + 1] == "/w"
    assert "--no-index" in offline and "--index-url" not in offline
    assert offline[-len(installer.REQUIREMENTS) :] == list(installer.REQUIREMENTS)
    other = installer.install_command(pip, "/t", worker_python="/env/bin/python")
    assert other[other.index("--python") + 1] == "/env/bin/python"
    assert other[other.index("--target") + 1] == "/t"


def test_index_url_must_be_a_url(installer):
    assert installer.check_index_url(" https://m.example/simple ") == "https://m.example/simple"
    assert installer.check_index_url("file:///srv/simple") == "file:///srv/simple"
    for bad in ("mirror.example.com", "https://", "ftp://x/simple", "https://a b"):
        with pytest.raises(installer.worker_client.WorkerError, match="is not a URL"):
            installer.check_index_url(bad)


def test_status_sentences(installer):
    cpu = {"torch": "2.13.0+cpu", "build": "cpu", "device": "cpu"}
    assert installer.describe(cpu) == "PyTorch 2.13.0+cpu (CPU build) on CPU"
    gpu = {"torch": "2.13.0", "build": "cuda", "cuda_build": "13.0", "device": "cuda",
           "gpu_name": "NVIDIA H100", "gpu_memory_gb": 79.2, "cuda_available": True}  # fmt: skip
    assert installer.describe(gpu) == "PyTorch 2.13.0 (CUDA 13.0 build) on NVIDIA H100 (79.2 GB)"
    old_driver = {**gpu, "device": "cpu", "cuda_available": False}
    text = installer.describe(old_driver)
    assert "no usable GPU found" in text and "driver 580" in text and "CUDA 12.8" in text


def test_pip_from_ensurepip_when_python_has_no_pip(installer, tmp_path):
    """Blender's Python may lack pip: then pip runs from the wheel ensurepip bundles."""
    import subprocess
    import venv

    venv.create(tmp_path / "v", with_pip=False)
    python = str(
        tmp_path / "v" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    )
    prefix = installer.pip_prefix(python)
    assert prefix[0] == python and prefix[1].endswith("pip") and ".whl" in prefix[1], prefix
    out = subprocess.run([*prefix, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("pip "), out.stderr
    with_pip = installer.pip_prefix(sys.executable)  # this Python has pip
    assert with_pip == [sys.executable, "-m", "pip"]


def test_requirements_per_python(installer):
    """numpy 1.26 has no wheels for Python 3.13 (Blender 5.1+): numpy 2 there."""
    sys.path.insert(0, ROOT)
    import build

    assert installer.requirements((3, 11)) == installer.REQUIREMENTS
    py313 = installer.requirements((3, 13))
    assert "numpy>=2.2,<3" in py313 and not any(r.startswith("numpy>=1.26") for r in py313)
    assert [r for r in py313 if not r.startswith("numpy")] == [
        r for r in installer.REQUIREMENTS if not r.startswith("numpy")
    ]
    assert build.worker_requirements("3.13") == list(py313)
    assert build.worker_requirements("3.11") == list(installer.REQUIREMENTS)
    assert installer.python_version(sys.executable) == sys.version_info[:2]


def _resolve_for_py313(installer, tmp_path, requirements):
    """The one-click install's pip command (PyPI's Linux build: the CUDA one), resolved for
    Blender's Python 3.13 with --dry-run: PyPI's metadata only, no wheel downloaded."""
    import json
    import subprocess

    cmd = installer.install_command([sys.executable, "-m", "pip"], str(tmp_path / "target"),
                                    variant="default", requirements=requirements)  # fmt: skip
    at = cmd.index("install") + 1
    report = tmp_path / "report.json"
    cmd[at:at] = ["--dry-run", "--ignore-installed", "--report", str(report),
                  "--python-version", "3.13", "--implementation", "cp",
                  # what a glibc 2.28 Linux (Blender's minimum) runs: manylinux 2.17 to 2.28
                  *[a for n in range(17, 29) for a in ("--platform", f"manylinux_2_{n}_x86_64")],
                  "--platform", "manylinux2014_x86_64"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    files = []
    if proc.returncode == 0:
        files = [i["download_info"]["url"].rsplit("/", 1)[-1] for i in
                 json.loads(report.read_text())["install"]]  # fmt: skip
    return proc, files


def test_install_resolves_for_python_313(installer, tmp_path, monkeypatch):
    monkeypatch.delenv(installer.ENV_INDEX, raising=False)
    proc, files = _resolve_for_py313(installer, tmp_path, installer.requirements((3, 13)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    by_name = {f.split("-")[0].lower(): f for f in files}
    assert {"torch", "numpy", "pillow", "tqdm", "safetensors"} <= set(by_name), files
    assert by_name["torch"].startswith("torch-2.13.0-cp313-cp313-"), by_name["torch"]
    assert by_name["numpy"].split("-")[1].startswith("2.") and "-cp313-" in by_name["numpy"]
    assert "-cp313-" in by_name["pillow"], by_name["pillow"]
    # The Python 3.11 pins cannot install there: numpy 1.26 has no cp313 wheel.
    old, _ = _resolve_for_py313(installer, tmp_path, installer.REQUIREMENTS)
    assert old.returncode != 0 and "numpy" in old.stdout + old.stderr
