#!/usr/bin/env bash
# The main job on its built-in default, on a fresh machine:
# builds the extension, installs it into headless Blender (bpy 4.5 LTS from PyPI), creates a
# scene with a procedural animation strip, trains on it, extends it, and saves
# OUT/demo.blend, the generated frames and a contact sheet.   Usage: scripts/demo.sh [OUT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/fsgan_demo}
bash "$root/scripts/setup_env.sh" "$root/.venv" blender
exec "$root/.venv/bin/python" "$root/scripts/blender_demo.py" --out "$out"
