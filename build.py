"""Build the Blender extension zip: dist/fsgan_blender-<version>.zip.

    python build.py [--out-dir dist] [--blender-ext PATH | --blender PATH] [--no-validate]

The zip holds the root manifest, the add-on package (fsgan_blender/*, at the zip's root, as
Blender expects) and a copy of core/ (the worker, started as ``python -m core worker``). It is
built and then validated by Blender's own extension tooling: the ``blender_ext.py`` CLI that ships
inside Blender and inside the ``bpy`` package from PyPI (found without importing bpy), or a
Blender executable's ``--command extension build|validate``.

Only the standard library is used, so this runs with any Python 3.11+.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "blender_manifest.toml"
ADDON_DIR = ROOT / "fsgan_blender"
CORE_DIR = ROOT / "core"

# Never shipped: caches, tests, editor and build leftovers.
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "tests", ".*", "*.zip")


class BuildError(RuntimeError):
    """A build that cannot go on; the message says what to do."""


def read_manifest(path: Path = MANIFEST) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def find_blender_ext() -> Path | None:
    """Blender's extension CLI inside an installed ``bpy`` package (PyPI), or None.

    The spec lookup does not import bpy (importing it is slow and can hang at exit).
    """
    env = os.environ.get("FSGAN_BLENDER_EXT")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        pattern = os.path.join(location, "*", "scripts", "addons_core", "bl_pkg", "cli")
        for cli_dir in sorted(glob.glob(pattern)):
            candidate = Path(cli_dir) / "blender_ext.py"
            if candidate.is_file():
                return candidate
    return None


def stage(dest: Path, manifest_text: str | None = None, extra_files: dict | None = None) -> Path:
    """Lay out the extension's files in ``dest`` (the future zip root) and return it.

    ``manifest_text`` replaces the root manifest (for builds that add ``wheels = [...]``);
    ``extra_files`` maps paths inside the zip to source files (wheels, for instance).
    """
    if not (ADDON_DIR / "__init__.py").is_file():
        raise BuildError(f"The add-on package {ADDON_DIR} is missing its __init__.py.")
    if not (CORE_DIR / "__main__.py").is_file():
        raise BuildError(
            f"The worker package {CORE_DIR} has no __main__.py; the extension needs core/ "
            "to run `python -m core worker`."
        )
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(ADDON_DIR.iterdir()):
        if item.name.startswith(".") or item.name == "__pycache__":
            continue
        target = dest / item.name
        if item.is_dir():
            shutil.copytree(item, target, ignore=IGNORE)
        else:
            shutil.copy2(item, target)
    shutil.copytree(CORE_DIR, dest / "core", ignore=IGNORE)
    (dest / "blender_manifest.toml").write_text(
        manifest_text if manifest_text is not None else MANIFEST.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    for inner, source in (extra_files or {}).items():
        target = dest / inner
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "FATAL_ERROR" in output:
        raise BuildError(f"Blender's extension {what} failed:\n{output}")
    return output


def blender_tool_cmd(subcommand: str, blender: str | None, blender_ext: Path | None) -> list[str]:
    if blender:
        return [blender, "--factory-startup", "--command", "extension", subcommand]
    if blender_ext:
        return [sys.executable, str(blender_ext), subcommand]
    raise BuildError(
        "Blender's extension tooling was not found: install the `bpy` package from PyPI in this "
        "Python, or pass --blender-ext PATH/blender_ext.py or --blender PATH/blender "
        "(or use --no-validate to zip without Blender's checks)."
    )


def build(
    out_dir: Path = ROOT / "dist",
    *,
    validate: bool = True,
    blender: str | None = None,
    blender_ext: Path | None = None,
    manifest_text: str | None = None,
    extra_files: dict | None = None,
    out_name: str | None = None,
) -> Path:
    """Build (and by default validate) the zip; return its path."""
    out_dir = Path(out_dir)
    manifest = read_manifest()
    if manifest_text is not None:
        manifest = tomllib.loads(manifest_text)
    name = out_name or f"{manifest['id']}-{manifest['version']}.zip"
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / name
    if validate and not blender and blender_ext is None:
        blender_ext = find_blender_ext()
    with tempfile.TemporaryDirectory(prefix="fsgan_build_") as tmp:
        src = stage(Path(tmp) / manifest["id"], manifest_text, extra_files)
        if zip_path.exists():
            zip_path.unlink()
        if validate:
            _run(blender_tool_cmd("validate", blender, blender_ext) + [str(src)], "validate")
            _run(
                blender_tool_cmd("build", blender, blender_ext)
                + ["--source-dir", str(src), "--output-filepath", str(zip_path)],
                "build",
            )
            _run(blender_tool_cmd("validate", blender, blender_ext) + [str(zip_path)], "validate")
        else:
            base = shutil.make_archive(str(zip_path.with_suffix("")), "zip", root_dir=src)
            os.replace(base, zip_path)
    if not zip_path.is_file():
        raise BuildError(f"The build reported success but {zip_path} was not written.")
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--blender-ext", type=Path, default=None, help="path to blender_ext.py")
    parser.add_argument("--blender", default=None, help="a Blender executable to build with")
    parser.add_argument(
        "--no-validate", action="store_true", help="zip without Blender's tooling (not for release)"
    )
    args = parser.parse_args(argv)
    try:
        path = build(
            args.out_dir,
            validate=not args.no_validate,
            blender=args.blender,
            blender_ext=args.blender_ext,
        )
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
