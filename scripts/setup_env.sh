#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install the project into it.
#   scripts/setup_env.sh VENV EXTRAS [PYTHON]
# torch is pinned in pyproject.toml (2.13.0: the CPU wheel on these machines; a bare "torch"
# would pull a multi-GB CUDA build).
set -euo pipefail
venv=${1:?venv folder}
extras=${2:-}
py=${3:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ -n "$extras" ]; then
  "$venv/bin/python" -m pip install -q -e "$root[$extras]"
else
  "$venv/bin/python" -m pip install -q -e "$root"
fi
