"""build.py: the zip's layout and manifest, validated by Blender's own extension tooling."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import tomllib
import zipfile

import pytest

from .conftest import ROOT, bpy_params, bpy_version

sys.path.insert(0, str(ROOT))
import build  # noqa: E402


def test_zip_layout_and_manifest(built_zip):
    with zipfile.ZipFile(built_zip) as z:
        names = set(z.namelist())
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
    # The add-on at the zip's root, the worker package beside it, nothing else.
    for name in ("__init__.py", "operators.py", "panels.py", "properties.py", "preferences.py",
                 "strips.py", "worker_client.py", "core/__main__.py", "core/protocol.py"):  # fmt: skip
        assert name in names, name
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "dist/"))]
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "fsgan_blender"
    assert manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["permissions"]["files"]
    # The add-on downloads PyTorch on request (only with Allow Online Access: test_install.py).
    assert "PyTorch" in manifest["permissions"]["network"]
    assert "blender_version_max" not in manifest  # nothing known to break
    assert built_zip.name == f"fsgan_blender-{manifest['version']}.zip"


def test_blender_tooling_rejects_a_bad_manifest(tmp_path):
    good = (ROOT / "blender_manifest.toml").read_text()
    tagline = tomllib.loads(good)["tagline"]
    bad = good.replace(
        tagline, "A tagline far longer than the sixty-four characters Blender allows"
    )
    assert bad != good
    with pytest.raises(build.BuildError, match="tagline"):
        build.build(tmp_path, manifest_text=bad)
    assert not list(tmp_path.glob("*.zip"))


def _blender_ext_of(python: str) -> str:
    """The blender_ext.py inside the bpy package of ``python`` (without importing bpy)."""
    code = (
        "import glob, importlib.util, os; s = importlib.util.find_spec('bpy'); "
        "print(*[p for loc in s.submodule_search_locations for p in sorted(glob.glob(os.path.join("
        "loc, '*', 'scripts', 'addons_core', 'bl_pkg', 'cli', 'blender_ext.py')))][:1])"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    path = out.stdout.strip()
    assert out.returncode == 0 and os.path.isfile(path), (python, out.stdout, out.stderr)
    return path


@pytest.mark.parametrize("python", bpy_params())
def test_each_blender_validates_the_zip(python, built_zip, tmp_path):
    """Blender's own `extension validate` (what the extensions platform runs) of every tested
    version accepts the built zip, and refuses one with a bad manifest."""
    version = bpy_version(python)
    tool = _blender_ext_of(python)
    good = subprocess.run([python, tool, "validate", str(built_zip)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    output = good.stdout + good.stderr
    assert good.returncode == 0 and "FATAL" not in output, (version, output)
    text = (ROOT / "blender_manifest.toml").read_text()
    tagline = tomllib.loads(text)["tagline"]
    bad_text = text.replace(tagline, "A tagline " + "far too long " * 8)
    bad_zip = build.build(tmp_path, validate=False, manifest_text=bad_text)
    bad = subprocess.run([python, tool, "validate", str(bad_zip)], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode != 0 or "FATAL" in bad.stdout + bad.stderr, (version, bad.stdout)


def test_tooling_is_found_without_importing_bpy():
    path = build.find_blender_ext()
    assert path is not None and path.name == "blender_ext.py" and path.is_file()
    assert "bpy" not in sys.modules


def test_addon_never_imports_torch_or_core():
    """Blender's process must not load torch: the add-on imports neither torch nor core."""
    for path in (ROOT / "fsgan_blender").glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [("." * node.level) + (node.module or "")]
            else:
                continue
            for module in modules:
                root = module.lstrip(".").split(".")[0]
                assert root not in {"torch", "numpy", "core", "safetensors", "PIL"}, (path, module)
                assert not module.startswith(".."), (path, module)


def _load_worker_client():
    spec = importlib.util.spec_from_file_location(
        "fsgan_worker_client", ROOT / "fsgan_blender" / "worker_client.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_addon_protocol_copy_matches_core():
    from core import protocol

    wc = _load_worker_client()
    assert wc.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    assert tuple(wc.EVENTS) == tuple(protocol.EVENTS)
    assert (wc.EXIT_OK, wc.EXIT_INTERNAL, wc.EXIT_BAD_INPUT, wc.EXIT_OOM) == (
        protocol.EXIT_OK, protocol.EXIT_INTERNAL, protocol.EXIT_BAD_INPUT, protocol.EXIT_OOM,
    )  # fmt: skip
    lines = ['{"event": "progress", "step": 1}', "noise", '{"event": "nope"}', "[1]",
             '{"event": "done", "cancelled": false}', "{broken", ""]  # fmt: skip
    assert [wc.parse_event(x) for x in lines] == [protocol.parse_event(x) for x in lines]
    # A job the add-on writes is one the worker accepts.
    job = wc.make_job("extend", ["/a.png"], "/m.safetensors",
                      extend={"count": 2, "out_dir": "/o"}, cancel_file="/c")  # fmt: skip
    assert protocol.parse_job(job).extend == {"count": 2, "out_dir": "/o"}
    assert protocol.parse_job(job).orientation == "stored"  # as Blender shows JPEGs


def test_addon_decodes_what_the_worker_cannot_read():
    """The add-on sends the worker only frames core.data reads; Blender decodes the rest."""
    from core.data import IMAGE_EXTS

    tree = ast.parse((ROOT / "fsgan_blender" / "decode.py").read_text())
    exts = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "WORKER_IMAGE_EXTS"
    )
    assert tuple(exts) == tuple(IMAGE_EXTS)


def test_addon_checkpoint_summary_matches_core(tmp_path, addon_module):
    """The panel's reading of a checkpoint header (no torch in Blender) agrees with core's."""
    from dataclasses import asdict

    import torch

    from core import checkpoint
    from core.models import ModelConfig

    cp = addon_module("checkpoints")
    assert (cp.FORMAT, cp.FORMAT_VERSION) == (checkpoint.FORMAT, checkpoint.FORMAT_VERSION)

    path = str(tmp_path / "walk.safetensors")
    config = asdict(ModelConfig(preset="paper", width=256, height=144, channels=4))
    weights = {"g": {"w": torch.zeros(2)}}
    checkpoint.save_checkpoint(path, checkpoint.Checkpoint(config, {}, 12345, weights))
    assert checkpoint.read_metadata(path)["step"] == 12345
    assert cp.summary(path) == ("paper preset, 256 x 144, RGBA, 12,345 steps", None)

    # Each file the panel can't use says why in one sentence, and never raises.
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(other))
    pickle = tmp_path / "old.pt"
    torch.save({"x": 1}, str(pickle))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    assert cp.summary(str(other))[1] == (
        "other.safetensors is a safetensors file but not a FrameSequenceGAN checkpoint."
    )
    assert cp.summary(str(pickle))[1] == (
        "old.pt is not a FrameSequenceGAN checkpoint (not a safetensors file)."
    )
    assert "not a safetensors file" in cp.summary(str(empty))[1]
    assert cp.summary(str(tmp_path / "gone.safetensors"))[1].endswith(
        "gone.safetensors is missing."
    )
    # A newer checkpoint (the file changed): read again, not the remembered answer.
    checkpoint.save_checkpoint(path, checkpoint.Checkpoint(config, {}, 20000, weights))
    os.utime(path, ns=(1, 2))
    assert cp.summary(path)[0].endswith("20,000 steps")
