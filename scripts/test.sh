#!/usr/bin/env bash
# The test suite on a fresh machine: lint, the engine's tests, and the add-on's tests in real
# Blender 4.5 LTS (bpy from PyPI), plus the install/train/extend tests on Blender 4.2, 5.0,
# 5.2 LTS and 5.3. bpy 5.2/5.3 are Python 3.13 wheels: scripts/python313.sh builds that Python
# once (about 4 minutes on 2 cores, as root) and caches it in ~/.cache/fsgan-python3.13.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup_env.sh .venv "dev,blender"
py313=$(bash scripts/python313.sh)
# Other Blender versions: bpy only (the worker runs in .venv, which has torch). bpy 4.5/5.0
# require numpy < 2 and 5.x on Python 3.13 numpy >= 2.2: one venv each.
bpy_venv() {  # VERSION PYTHON NUMPY
  local venv=".venv-bpy${1/./}"
  [ -x "$venv/bin/python" ] || "$2" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "bpy==$1.*" "$3"
  echo "$root/$venv/bin/python"
}
pythons=()
for v in 4.2 5.0; do pythons+=("$(bpy_venv "$v" python3 "numpy>=1.26,<2")"); done
for v in 5.2 5.3; do pythons+=("$(bpy_venv "$v" "$py313" "numpy>=2.2,<3")"); done
FSGAN_BPY_PYTHONS=$(IFS=:; echo "${pythons[*]}")
export FSGAN_BPY_PYTHONS
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest tests -q "$@"
