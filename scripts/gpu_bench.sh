#!/usr/bin/env bash
# The GPU measurements of docs/PERFORMANCE.md, as one prepared run for a lent H100/H200
# (Python 3.12, torch with CUDA, no internet). From the repository root:
#
#   bash scripts/gpu_bench.sh [OUT_DIR]        # default OUT_DIR: $OUT, else ./gpu_out
#   CLIPS=.clips bash scripts/gpu_bench.sh     # + the real-clip quality run, 1 minute a model
#
# CLIPS names a copy of ../shared/clips inside the repository (with the 720p flower shot as one
# more folder): ../shared does not travel to the lent machine, so copy it into an ignored folder
# and carry it. The quality run trains 3 models at a time on the one GPU (3 processes, the clips
# split between them), so each model's minute is shared: a conservative "within 60 seconds".
#
# Each part has its own time limit, so a slow one (torch.compile warm-up) cannot eat the rest;
# every JSON lands in OUT_DIR as soon as its part ends. If core's small dependencies (numpy,
# pillow, safetensors, tqdm) are missing there, carry a folder of their cp312 wheels as
# .gpu_wheels/ (pip download --only-binary=:all: --python-version 3.12 --platform
# manylinux2014_x86_64 -d .gpu_wheels numpy pillow safetensors tqdm) and they are installed
# from it into a scratch folder first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_out}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"

if ! "$PY" -c "import numpy, PIL, safetensors, tqdm" 2>/dev/null; then
    if [ -d .gpu_wheels ]; then
        "$PY" -m pip install --quiet --no-index --find-links .gpu_wheels --target .gpu_site \
            numpy pillow safetensors tqdm
        export PYTHONPATH="$PWD/.gpu_site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "missing: numpy/pillow/safetensors/tqdm and no .gpu_wheels folder" >&2
    fi
fi

run() {  # run LIMIT_S NAME ARGS...: one part, its log and exit status kept
    local limit=$1 name=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$PY" -m core "$@" > "$OUT_DIR/$name.log" 2>&1
    echo "   exit $? after ${SECONDS}s total"
    tail -n 40 "$OUT_DIR/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT_DIR/gpu.csv" 2>&1
run 60 doctor doctor --json
# The CUDA path end to end first (a generated clip, train, extend): a failure shows in seconds.
run 90 demo demo --out "$OUT_DIR/demo" --steps 200 --device cuda
# The speed targets: paper preset at 144x256 (naive vs optimized, batch 1/8/32, rollout).
run 200 speed_paper bench speed --full --configs paper:256x144:1 --variants naive,optimized \
    --json "$OUT_DIR/speed_paper.json" --markdown
run 120 speed_default bench speed --full --configs default:128x72:1 --variants naive,optimized \
    --json "$OUT_DIR/speed_default.json" --markdown
if [ -n "${CLIPS:-}" ]; then
    # Real clips at 1 minute a model, seed 0 (the issue's GPU target), 3 processes at a time.
    mapfile -t names < <(ls "$CLIPS" | grep -v '\.md$')
    for part in 0 1 2; do
        only=$(printf '%s\n' "${names[@]}" | awk -v p=$part 'NR % 3 == p' | paste -sd, -)
        [ -n "$only" ] || continue
        timeout "${QUALITY_LIMIT:-330}" "$PY" bench/quality.py --real --clips "$CLIPS" \
            --only "$only" --seeds 0 --minutes 1 --out "$OUT_DIR/quality$part" \
            > "$OUT_DIR/quality$part.log" 2>&1 &
    done
    wait
    echo "   quality done after ${SECONDS}s total"
    tail -n 30 "$OUT_DIR"/quality*.log
    # Issue 14: does the paper preset (its recipe as the paper gives it, full width) learn?
    # 1-step SSIM against steps on the flower shot, as on the CPU in docs/QUALITY.md.
    echo "== curve_paper (limit 150s)"
    timeout 150 "$PY" bench/learning_curve.py --clip "$CLIPS/camera_flower_handheld" \
        --preset paper --minutes 2 --device cuda --out "$OUT_DIR/curve_paper_flower.json" \
        > "$OUT_DIR/curve_paper.log" 2>&1
    echo "   exit $? after ${SECONDS}s total"
    tail -n 25 "$OUT_DIR/curve_paper.log"
fi
# Whether torch.compile pays (compile time included in the limit, not in the timings).
run 200 speed_compiled bench speed --full --configs paper:256x144:1 --batches 8 \
    --variants naive,compiled --check-steps 0 --json "$OUT_DIR/speed_compiled.json" --markdown
echo "done in ${SECONDS}s; results in $OUT_DIR"
