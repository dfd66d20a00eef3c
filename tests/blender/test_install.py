"""The worker's environment: doctor status, bad interpreters, offline install, bundled builds.

The offline install is proven with a worker Python that has no packages at all (a bare venv):
after the install, `import torch` (and numpy, Pillow, safetensors) can only come from the
extension's site-packages folder, so a training job that ends with a checkpoint shows the
folder is on the worker's path. The wheel folder holds PyTorch's CPU wheel and its dependencies,
fetched with `pip download` (from this machine's local wheel store when pip is configured with
one, as here; from PyPI and PyTorch's CPU index elsewhere).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, bpy_params

sys.path.insert(0, str(ROOT))
import build  # noqa: E402

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"


def _local_torch_store() -> bool:
    """pip here is configured with a local wheel store that holds the CPU build of torch."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    for line in proc.stdout.splitlines():
        if "find-links" in line:
            folder = line.split("=", 1)[1].strip().strip("'\"")
            if list(Path(folder).glob("torch-*+cpu-cp311-*.whl")):
                return True
    return False


LOCAL_STORE = _local_torch_store()


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A venv without any package (not even pip): a worker Python where every import fails."""
    folder = tmp_path_factory.mktemp("bare")
    venv.create(folder, with_pip=False, symlinks=sys.platform != "win32")
    return folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


@pytest.fixture(scope="module")
def wheel_folder(tmp_path_factory) -> Path:
    """PyTorch (CPU) and the worker's other requirements as wheels for this Python."""
    folder = tmp_path_factory.mktemp("wheels")
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(folder)]
    if not LOCAL_STORE:
        cmd += ["--index-url", CPU_INDEX, "--extra-index-url", PYPI]
    proc = subprocess.run(cmd + build.worker_requirements(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder


@pytest.fixture(scope="module")
def package_index(tmp_path_factory, wheel_folder):
    """A package index over HTTP on localhost (PEP 503 "simple" pages) serving the wheel
    folder, as a studio's PyPI mirror would: the online install's code path with no internet.
    Yields (url, the list of requested paths)."""
    root = tmp_path_factory.mktemp("index")
    (root / "files").mkdir()
    projects: dict[str, list[str]] = {}
    for wheel in sorted(wheel_folder.glob("*.whl")):
        (root / "files" / wheel.name).symlink_to(wheel)
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(name, []).append(wheel.name)
    for name, files in projects.items():
        page = root / "simple" / name
        page.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{f}">{f}</a><br>' for f in files)
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>{links}</body></html>")
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            requested.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple", requested
    server.shutdown()


def _no_pip_config() -> dict[str, str]:
    """pip in the Blender run sees only what the add-on passes: no pip.conf, no PIP_* vars."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def test_requirements_match_pyproject():
    """One pin set: the add-on's installer, build.py and pyproject.toml agree, for Blender's
    Python 3.11 and for 3.13 (pyproject picks numpy by environment marker)."""
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for version in ("3.11", "3.13"):
        deps = []
        for dep in pyproject["project"]["dependencies"]:
            req = Requirement(dep)
            if req.marker is None or req.marker.evaluate({"python_version": version}):
                deps.append(dep.split(";")[0].strip())
        assert build.worker_requirements(version) == deps, version


def test_download_commands_per_platform(tmp_path):
    """The bundled-build commands (the CUDA ones are multi-GB: checked here, not run)."""
    linux_cuda = build.download_command("linux-x64", "cuda", tmp_path)
    assert linux_cuda[1:4] == ["-m", "pip", "download"]
    assert "--only-binary=:all:" in linux_cuda
    assert linux_cuda[linux_cuda.index("--python-version") + 1] == "3.11"
    assert "manylinux_2_28_x86_64" in linux_cuda
    # PyPI's Linux torch is the CUDA 13 build; Windows and CUDA 12.8 come from PyTorch's index
    assert linux_cuda[linux_cuda.index("--index-url") + 1] == PYPI
    assert "--extra-index-url" not in linux_cuda
    win_cuda = build.download_command("windows-x64", "cuda", tmp_path)
    assert win_cuda[win_cuda.index("--index-url") + 1] == "https://download.pytorch.org/whl/cu130"
    assert win_cuda[win_cuda.index("--extra-index-url") + 1] == PYPI
    linux_cu12 = build.download_command("linux-x64", "cuda12", tmp_path)
    assert linux_cu12[linux_cu12.index("--index-url") + 1].endswith("/whl/cu128")
    assert "torch==2.13.0" in linux_cuda
    windows = build.download_command("windows-x64", "cpu", tmp_path)
    assert "win_amd64" in windows and CPU_INDEX in windows
    mac = build.download_command("macos-arm64", "cpu", tmp_path)
    assert "macosx_14_0_arm64" in mac and mac[mac.index("--index-url") + 1] == PYPI
    with pytest.raises(build.BuildError, match="no CUDA build"):
        build.download_command("macos-arm64", "cuda", tmp_path)


def _check_status_and_bad_interpreters(run) -> None:
    # 1. The doctor of the default worker Python (Blender's own here) reports a working torch.
    status = run.stage("status")
    assert status["op"] == {"ret": ["FINISHED"], "error": None}, status
    prefs = status["prefs"]
    assert prefs["ready"] is True, prefs
    assert prefs["info"]["torch"].startswith("2.13.0"), prefs
    assert prefs["info"]["build"] == "cpu" and prefs["info"]["device"] == "cpu", prefs
    assert "PyTorch 2.13.0" in prefs["message"] and "on CPU" in prefs["message"]
    assert prefs["key"][0] == status["python"]

    # 3. Broken custom interpreters: one clear sentence each, no traceback.
    for stage, fragments in (
        ("bad_python", ["does not exist", "Preferences > Add-ons > FrameSequenceGAN"]),
        ("not_python", ["cannot run the worker", "this is not python"]),
        ("no_torch", ["PyTorch is not installed", "Install PyTorch"]),
    ):
        result = run.stage(stage)
        assert result["op"]["ret"] == ["CANCELLED"], result
        message = result["op"]["error"]
        assert message.startswith("Error: ") and "Traceback" not in message, message
        assert result["prefs"]["ready"] is False
        assert "Traceback" not in result["prefs"]["message"]
        for fragment in fragments:
            assert fragment in message, (stage, message)

    # Online access off (the script turns it off): the download is refused before pip starts.
    refused = run.stage("online_refused")
    assert refused["online"] is False, refused
    assert refused["op"]["ret"] == ["CANCELLED"], refused
    assert "Allow Online Access" in refused["op"]["error"], refused
    assert refused["job"] is None, refused  # no pip was started


@pytest.mark.parametrize("python", bpy_params()[1:])
def test_status_and_bad_interpreters_other_blenders(python, blender, built_zip, tmp_path,
                                                    bare_python):  # fmt: skip
    """Blender 4.2 and 5.0 (the installs themselves run on 4.5 LTS, the main target)."""
    run = blender(python, "bl_install.py", "--zip", built_zip, "--work", tmp_path,
                  "--no-torch-python", bare_python)  # fmt: skip
    _check_status_and_bad_interpreters(run)
    drawn = run.stage("prefs_draw")["log"]
    assert {"python_path", "install_variant", "index_url", "wheel_dir"} <= {
        e.get("prop") for e in drawn
    }


@pytest.mark.parametrize("python", bpy_params(extra=False))
def test_status_bad_interpreters_and_installs(
    python, blender, built_zip, frames16, tmp_path, bare_python, wheel_folder, package_index
):
    index_url, requested = package_index
    run = blender(python, "bl_install.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path, "--no-torch-python", bare_python,
                  "--wheels", wheel_folder, "--bare-python", bare_python,
                  "--index-url", index_url, env=_no_pip_config())  # fmt: skip

    _check_status_and_bad_interpreters(run)

    # 2. Offline install into the extension's user folder, for a worker Python without packages.
    offline = run.stage("offline")
    print(f"offline install: {offline['seconds']:.1f} s")
    assert offline["op"]["ret"] == ["FINISHED"], (offline, _log(offline))
    assert offline["torch_in_target"]
    assert os.path.join("fsgan_blender", "site-packages") in offline["target"]
    assert offline["worker_paths"] == [offline["target"]]
    assert offline["prefs"]["ready"] is True, offline["prefs"]
    assert offline["prefs"]["info"]["executable"] == str(bare_python)
    assert offline["train"]["ret"] == ["FINISHED"], offline["train"]
    assert offline["train"]["checkpoint"] and os.path.isfile(offline["train"]["checkpoint"])

    # 4. The online install, run as the UI runs it (background pip, timer), from a mirror.
    bad_index = run.stage("bad_index")["op"]
    assert bad_index["ret"] == ["CANCELLED"] and "is not a URL" in bad_index["error"], bad_index
    mirror = run.stage("mirror")
    print(
        f"online install from the local index: {mirror['seconds']:.1f} s, {mirror['polls']} polls"
    )
    assert mirror["op"]["ret"] == ["FINISHED"] and mirror["registered"], mirror["op"]
    assert mirror["ended"]["finished"] and mirror["ended"]["error"] is None, (
        mirror["ended"],
        _log(mirror),
    )
    assert mirror["ended"]["install_message"].startswith("Installed."), mirror["ended"]
    assert mirror["polls"] >= 3  # it ran in the background, not inside the operator
    fractions = mirror["fractions"]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.98, fractions
    assert mirror["marker"]["variant"] == "cpu" and mirror["marker"]["index_url"] == index_url
    assert mirror["check"]["ret"] == ["FINISHED"] and mirror["prefs"]["ready"], mirror
    assert mirror["prefs"]["info"]["executable"] == str(bare_python)
    assert mirror["worker_paths"] == [mirror["target"]]
    wheels_fetched = {p.rsplit("/", 1)[-1].split("-")[0].lower() for p in requested
                      if p.startswith("/files/")}  # fmt: skip
    assert {"torch", "numpy", "pillow", "tqdm", "safetensors"} <= wheels_fetched, requested
    assert "/simple/torch/" in requested
    mid = mirror["mid_draw"]
    assert mid is not None
    assert any(e["call"] == "progress" for e in mid), mid
    assert "'fsgan.cancel_install'" in {e["args"][0] for e in mid if e["call"] == "operator"}

    drawn = run.stage("prefs_draw")["log"]
    props = {e.get("prop") for e in drawn}
    assert {"python_path", "install_variant", "index_url", "wheel_dir", "keep_job_files"} <= props
    operators = {e["args"][0] for e in drawn if e["call"] == "operator"}
    assert {
        "'fsgan.check_worker'",
        "'fsgan.install_torch'",
        "'fsgan.open_install_log'",
    } <= operators
    labels = " ".join(str(e.get("text", "")) for e in drawn if e["call"] == "label")
    assert "PyTorch 2.13.0" in labels, labels

    # 5. Disabling the add-on while pip runs stops pip; the installed packages stay as they were.
    gone = run.stage("disable")
    assert gone["op"]["ret"] == ["FINISHED"] and gone["running_before"], gone
    assert not gone["enabled"] and gone["cancelled"], gone
    assert not gone["alive_after"] and not gone["timers"], gone
    assert gone["unchanged"] and gone["marker_same"], gone


def _log(result) -> str:
    path = result["prefs"].get("install_log")
    try:
        return Path(path).read_text()[-3000:]
    except (OSError, TypeError):
        return ""


@pytest.mark.slow
def test_bundled_build_linux_cpu(tmp_path, blender, bare_python):
    """build.py --with-wheels: Blender's tooling validates the zip; every listed wheel is in it;
    installed into Blender, its torch is what the worker imports."""
    cmd = [sys.executable, str(ROOT / "build.py"), "--with-wheels", "--platform", "linux-x64",
           "--variant", "cpu", "--out-dir", str(tmp_path / "dist")]  # fmt: skip
    if LOCAL_STORE:
        cmd += ["--torch-index", "none"]  # pip's configured local store holds torch+cpu
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    zip_path = Path(proc.stdout.strip().splitlines()[-1])
    assert zip_path.name == "fsgan_blender-0.1.0-linux_x64-cp311.zip"
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
    assert manifest["platforms"] == ["linux-x64"]
    # Python 3.11 wheels: the Blender versions that run Python 3.11.
    assert (manifest["blender_version_min"], manifest["blender_version_max"]) == ("4.2.0", "5.1.0")
    wheels = manifest["wheels"]
    assert all(w.startswith("./wheels/") and w.endswith(".whl") for w in wheels)
    assert {w[2:] for w in wheels} <= names
    listed = {w.split("/")[-1].split("-")[0].lower() for w in wheels}
    assert {"torch", "numpy", "pillow", "tqdm", "safetensors"} <= listed
    torch_wheel = next(w for w in wheels if "/torch-" in w)
    assert "+cpu" in torch_wheel and "cp311" in torch_wheel, torch_wheel
    # Validated once more, independently of build.py.
    tool = build.find_blender_ext()
    check = subprocess.run([sys.executable, str(tool), "validate", str(zip_path)],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0 and "FATAL" not in check.stdout + check.stderr, check.stdout
    print(f"bundled zip: {zip_path.stat().st_size / 2**20:.0f} MiB")

    # Installed the way a user does (Preferences > Get Extensions > Install from Disk).
    run = blender(sys.executable, "bl_bundled.py", "--zip", zip_path, "--bare-python",
                  bare_python, env={"PIP_CONFIG_FILE": os.devnull})  # fmt: skip
    bundled = run.stage("bundled")
    print(f"bundled install in Blender: {bundled['seconds']:.1f} s")
    assert bundled["torch_in_wheels"], bundled
    assert bundled["worker_paths"] == [bundled["wheels"]], bundled
    assert bundled["op"]["ret"] == ["FINISHED"] and bundled["ready"], bundled
    bare = bundled["bare"]
    assert bare["ready"], bare
    assert bare["info"]["torch"] == "2.13.0+cpu", bare
    assert bare["info"]["torch_path"].startswith(bundled["wheels"]), bare


def test_bundled_build_for_python_313(tmp_path):
    """build.py --python 3.13 makes a bundle for Blender 5.1 and later: real cp313 wheels (numpy
    and a pure-Python one here, not PyTorch's gigabyte), listed in a manifest that only Blender
    5.1+ accepts, validated by every tested Blender's own tooling (build.py validates with this
    Python's bpy; test_build.py checks 5.3's tool accepts what build.py writes)."""
    zip_path = build.build_with_wheels(
        "linux-x64", "cpu", tmp_path / "dist", torch_index=None, python="3.13",
        requirements=["numpy>=2.2,<3", "tqdm>=4.66"], wheels_dir=tmp_path / "wheels",
    )  # fmt: skip
    assert zip_path.name == "fsgan_blender-0.1.0-linux_x64-cp313.zip"
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
    assert manifest["blender_version_min"] == "5.1.0" and "blender_version_max" not in manifest
    assert manifest["platforms"] == ["linux-x64"]
    wheels = [w.split("/")[-1] for w in manifest["wheels"]]
    assert {f"wheels/{w}" for w in wheels} <= names
    numpy = next(w for w in wheels if w.startswith("numpy-"))
    assert numpy.split("-")[1].startswith("2.") and "-cp313-cp313-" in numpy, numpy
    assert "manylinux" in numpy and "x86_64" in numpy, numpy
    assert any(w.startswith("tqdm-") and "-py3-" in w for w in wheels), wheels
    # The download command of the real bundle asks for Python 3.13 and numpy 2.
    cmd = build.download_command("linux-x64", "cpu", tmp_path, python="3.13")
    assert cmd[cmd.index("--python-version") + 1] == "3.13"
    assert "numpy>=2.2,<3" in cmd and "torch==2.13.0" in cmd
    # A wheel folder reused across Pythons: only the wheels for this one are bundled.
    assert not build._wheel_fits("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", "cp313")
    assert build._wheel_fits("safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.whl", "cp313")
