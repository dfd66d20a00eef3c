#!/usr/bin/env bash
# The test suite on a fresh machine: lint, the engine's tests, and the add-on's tests in real
# Blender 4.5 LTS (bpy from PyPI), plus the install/train/extend test on Blender 4.2 and 5.0.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup_env.sh .venv "dev,blender"
# Other Blender versions: bpy only (the worker runs in .venv, which has torch).
for v in 4.2 5.0; do
  venv=".venv-bpy${v/./}"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "bpy==$v.*" "numpy>=1.26,<2"
done
export FSGAN_BPY_PYTHONS="$root/.venv-bpy42/bin/python:$root/.venv-bpy50/bin/python"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest tests -q "$@"
