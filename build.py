"""Build the Blender extension zip: dist/fsgan_blender-<version>.zip.

    python build.py [--out-dir dist] [--blender-ext PATH | --blender PATH] [--no-validate]
    python build.py --with-wheels --platform linux-x64 [--variant cpu|cuda] [--python 3.11|3.13]
                    [--wheels-dir DIR]

The zip holds the root manifest, the add-on package (fsgan_blender/*, at the zip's root, as
Blender expects) and a copy of core/ (the worker, started as ``python -m core worker``). It is
built and then validated by Blender's own extension tooling: the ``blender_ext.py`` CLI that ships
inside Blender and inside the ``bpy`` package from PyPI (found without importing bpy), or a
Blender executable's ``--command extension build|validate``.

With ``--with-wheels`` the zip also carries PyTorch and the worker's other requirements as wheels
for one platform and one Blender Python (``--python``: 3.11 for Blender 4.2-5.0, the default;
3.13 for Blender 5.1 and later), downloaded with ``pip download`` and listed in the staged
manifest's ``wheels = [...]`` with ``platforms = [<platform>]`` and the Blender versions that run
that Python (``blender_version_min``/``max``): Blender installs them with the extension, with no
network. The zip is then named ``fsgan_blender-<version>-<platform>-<cp311|cp313>.zip``, the
platform's hyphen an underscore (``linux_x64``).
Markers in requirements are evaluated for the machine running pip, so build each platform's
bundle on that platform (or check the wheel list) when dependencies differ per platform.

Only the standard library is used, so this runs with any Python 3.11+ (with pip for wheels).
"""

from __future__ import annotations

import argparse
import ast
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

# Bundled builds: pip's platform tags and the PyTorch index of each (platform, variant).
# Blender's Python per bundle: the Blender versions that ship it ([min, max), as the manifest's
# blender_version_min/max). Blender 4.2 LTS to 5.0 ship Python 3.11; 5.1 and later 3.13.
BLENDER_PYTHONS = {"3.11": ("4.2.0", "5.1.0"), "3.13": ("5.1.0", None)}
BLENDER_PYTHON = "3.11"  # the default bundle
WHEEL_PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64", "macosx_11_0_arm64"],
}
PYPI = "https://pypi.org/simple"
# PyTorch's index per variant, as in fsgan_blender/installer.py; except that on Linux the CUDA
# (13.0) build is PyPI's own torch wheel.
TORCH_INDEX = {
    "cpu": "https://download.pytorch.org/whl/cpu",
    "cuda": "https://download.pytorch.org/whl/cu130",
    "cuda12": "https://download.pytorch.org/whl/cu128",
}

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


def _installer_constant(name: str):
    tree = ast.parse((ADDON_DIR / "installer.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise BuildError(f"fsgan_blender/installer.py defines no {name}.")


def worker_requirements(python: str = BLENDER_PYTHON) -> list[str]:
    """The pinned worker requirements for Blender's Python ``python``, read from
    fsgan_blender/installer.py (one source; its ``requirements()`` does the same)."""
    reqs = list(_installer_constant("REQUIREMENTS"))
    if tuple(int(x) for x in python.split(".")) >= (3, 13):
        numpy = _installer_constant("NUMPY_PY313")
        reqs = [numpy if r.startswith("numpy") else r for r in reqs]
    return reqs


def download_command(
    platform: str,
    variant: str,
    dest: Path,
    torch_index: str | None = "auto",
    python: str = BLENDER_PYTHON,
    requirements: list[str] | None = None,
) -> list[str]:
    """``pip download`` of the worker's requirements as wheels for ``platform`` and Blender's
    Python ``python``.

    ``torch_index``: "auto" (PyTorch's index of the variant, PyPI for the rest; PyPI alone on
    macOS), a URL, or None for pip's own configuration (a mirror, or a local wheel store).
    """
    if platform not in WHEEL_PLATFORMS:
        raise BuildError(f"Unknown platform {platform!r}; choose one of {sorted(WHEEL_PLATFORMS)}.")
    if variant not in TORCH_INDEX:
        raise BuildError(f"Unknown variant {variant!r}; choose one of {sorted(TORCH_INDEX)}.")
    if platform == "macos-arm64" and variant.startswith("cuda"):
        raise BuildError("There is no CUDA build of PyTorch for macOS; use --variant cpu (MPS).")
    if python not in BLENDER_PYTHONS:
        raise BuildError(f"Unknown Python {python!r}; choose one of {sorted(BLENDER_PYTHONS)}.")
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(dest)]
    cmd += ["--python-version", python, "--implementation", "cp"]
    for tag in WHEEL_PLATFORMS[platform]:
        cmd += ["--platform", tag]
    if torch_index == "auto":
        # PyPI's macOS torch is the MPS build and its Linux torch the CUDA 13.0 build; PyTorch's
        # index serves the +cpu / +cu130 / +cu128 builds.
        pypi = platform == "macos-arm64" or (platform == "linux-x64" and variant == "cuda")
        torch_index = None if pypi else TORCH_INDEX[variant]
        if torch_index is None:
            cmd += ["--index-url", PYPI]
    if torch_index:
        cmd += ["--index-url", torch_index, "--extra-index-url", PYPI]
    return cmd + (requirements or worker_requirements(python))


def manifest_with_wheels(
    text: str, wheels: list[str], platform: str, python: str = BLENDER_PYTHON
) -> str:
    """The manifest text plus ``platforms`` and ``wheels`` (top-level keys, before any table),
    with the range of Blender versions that run ``python`` (the wheels' Python)."""
    low, high = BLENDER_PYTHONS[python]
    lines = [
        line
        for line in text.splitlines()
        if not line.startswith(("blender_version_min", "blender_version_max"))
    ]
    at = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    listed = ",\n".join(f'  "./wheels/{name}"' for name in wheels)
    own_min = read_manifest()["blender_version_min"]
    low = max(low, own_min, key=lambda v: tuple(int(x) for x in v.split(".")))
    added = [
        f"# The wheels are for Python {python}: the Blender versions that run it.",
        f'blender_version_min = "{low}"',
        *([f'blender_version_max = "{high}"'] if high else []),
        f'platforms = ["{platform}"]',
        "# Installed by Blender with the extension; the worker finds them (preferences.py).",
        f"wheels = [\n{listed},\n]",
        "",
    ]
    return "\n".join(lines[:at] + added + lines[at:]) + "\n"


def build_with_wheels(
    platform: str,
    variant: str = "cpu",
    out_dir: Path = ROOT / "dist",
    *,
    wheels_dir: Path | None = None,
    torch_index: str | None = "auto",
    python: str = BLENDER_PYTHON,
    requirements: list[str] | None = None,
    **kwargs,
) -> Path:
    """Download the wheels for ``platform`` and Blender's Python ``python`` and build
    ``<id>-<version>-<platform>-<cp3xx>.zip``. ``requirements``: other than the worker's (tests
    build a bundle of small wheels)."""
    with tempfile.TemporaryDirectory(prefix="fsgan_wheels_") as tmp:
        dest = Path(wheels_dir) if wheels_dir else Path(tmp)
        dest.mkdir(parents=True, exist_ok=True)
        requirements = requirements or worker_requirements(python)
        cmd = download_command(platform, variant, dest, torch_index, python, requirements)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(
                "pip download failed:\n$ "
                + subprocess.list2cmdline(cmd)
                + "\n"
                + (proc.stdout + proc.stderr)[-4000:]
            )
        wanted = {_dist_name(r) for r in requirements}
        # Only what pip chose for this Python: a reused --wheels-dir may hold another's.
        tag = "cp" + python.replace(".", "")
        wheels = sorted(p.name for p in dest.glob("*.whl") if _wheel_fits(p.name, tag))
        if not wanted <= {_dist_name(w.split("-")[0]) for w in wheels}:
            raise BuildError(f"pip download did not produce wheels for all of {sorted(wanted)}.")
        manifest = read_manifest()
        text = manifest_with_wheels(MANIFEST.read_text(encoding="utf-8"), wheels, platform, python)
        name = f"{manifest['id']}-{manifest['version']}-{platform.replace('-', '_')}-{tag}.zip"
        extra = {f"wheels/{w}": dest / w for w in wheels}
        return build(out_dir, manifest_text=text, extra_files=extra, out_name=name, **kwargs)


def _wheel_fits(filename: str, cp_tag: str) -> bool:
    """A wheel's Python tags (``cp313``, ``cp38.abi3``, ``py3``) admit CPython ``cp_tag``."""
    parts = filename[: -len(".whl")].split("-")
    python_tags, abi = parts[-3].split("."), parts[-2]
    if cp_tag in python_tags:
        return True
    if any(t.startswith("py3") for t in python_tags):
        return True
    # The stable ABI: a cp38-abi3 wheel runs on CPython 3.8 and later.
    return abi == "abi3" and any(
        t.startswith("cp3") and int(t[3:]) <= int(cp_tag[3:]) for t in python_tags
    )


def _dist_name(requirement: str) -> str:
    import re

    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("-", "_")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--blender-ext", type=Path, default=None, help="path to blender_ext.py")
    parser.add_argument("--blender", default=None, help="a Blender executable to build with")
    parser.add_argument(
        "--no-validate", action="store_true", help="zip without Blender's tooling (not for release)"
    )
    parser.add_argument(
        "--with-wheels", action="store_true", help="bundle PyTorch & co. as wheels (one platform)"
    )
    parser.add_argument("--platform", choices=sorted(WHEEL_PLATFORMS), help="for --with-wheels")
    parser.add_argument(
        "--variant", choices=sorted(TORCH_INDEX), default="cpu", help="PyTorch build (default cpu)"
    )
    parser.add_argument(
        "--python",
        choices=sorted(BLENDER_PYTHONS),
        default=BLENDER_PYTHON,
        help="Blender's Python for --with-wheels: 3.11 (Blender 4.2-5.0, the default) or 3.13 "
        "(Blender 5.1 and later)",
    )
    parser.add_argument(
        "--wheels-dir", type=Path, default=None, help="keep (and reuse) downloaded wheels here"
    )
    parser.add_argument(
        "--torch-index",
        default="auto",
        help="PyTorch index URL; 'auto' = the variant's index at download.pytorch.org; 'none' = "
        "pip's own configuration (a mirror or local wheel store)",
    )
    args = parser.parse_args(argv)
    common = dict(validate=not args.no_validate, blender=args.blender, blender_ext=args.blender_ext)
    try:
        if args.with_wheels:
            if not args.platform:
                parser.error("--with-wheels needs --platform")
            index = None if args.torch_index == "none" else args.torch_index
            path = build_with_wheels(
                args.platform,
                args.variant,
                args.out_dir,
                wheels_dir=args.wheels_dir,
                torch_index=index,
                python=args.python,
                **common,
            )
        else:
            path = build(args.out_dir, **common)
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
