"""Load benchmark: memory of a 1,000-frame training job, and 100 back-to-back Extend jobs.

    python bench/load.py                    # both, prints numbers and a JSON summary
    python bench/load.py --only frames      # the 1,000-frame peak only (about a minute)
    python bench/load.py --only extends --jobs 100

1. Peak RSS of the worker (``python -m core worker``, read with os.wait4) training on 1,000
   frames, against the same job on 10 frames: the difference is what the frames cost, compared
   with their size in uint8 at the training resolution.
2. ``tests/blender/bl_scripts/bl_rel_load.py`` in real bpy: the installed extension runs
   Extend ``--jobs`` times through the operator; the Blender process's RSS, open fds, threads
   and child processes are printed after the first job and at the end.
Numbers go to docs/RELIABILITY.md; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


def write_frames(folder: Path, count: int, width: int, height: int) -> list[str]:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img = Image.new("RGB", (width, height), (20, 30 + i % 50, 90))
        x = (i * 7) % (width - 20)
        ImageDraw.Draw(img).rectangle([x, height // 3, x + 20, height // 3 + 20], fill="gold")
        path = folder / f"frame_{i + 1:04d}.png"
        img.save(path, compress_level=1)
        paths.append(str(path))
    return paths


def worker_peak(frames: list[str], work: Path, width: int, height: int, steps: int) -> dict:
    job = {
        "kind": "train",
        "frames": frames,
        "checkpoint": str(work / "m.safetensors"),
        "train": {
            "steps": steps,
            "width": width,
            "height": height,
            "width_mult": 0.125,
            "batch_size": 2,
            "device": "cpu",
            "preview_every": 0,
        },  # fmt: skip
    }
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "core", "worker", "--job", str(job_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)  # fmt: skip
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, out[-2000:]
    return {"peak_rss_bytes": usage.ru_maxrss * 1024, "seconds": time.monotonic() - t0}


def bench_frames(n: int, width: int, height: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.monotonic()
        frames = write_frames(tmp / "frames", n, width, height)
        print(f"wrote {n} frames of {width}x{height} in {time.monotonic() - t0:.0f} s", flush=True)
        small = worker_peak(frames[:10], tmp, width, height, steps)
        big = worker_peak(frames, tmp, width, height, steps)
    uint8 = n * 3 * width * height
    extra = big["peak_rss_bytes"] - small["peak_rss_bytes"]
    result = {
        "frames": n,
        "resolution": f"{width}x{height}",
        "frames_uint8_bytes": uint8,
        "frames_float32_bytes": uint8 * 4,
        "peak_rss_10_frames_bytes": small["peak_rss_bytes"],
        "peak_rss_bytes": big["peak_rss_bytes"],
        "extra_for_frames_bytes": extra,
        "extra_over_uint8": round(extra / uint8, 2),
        "seconds": round(big["seconds"], 1),
    }
    print(f"1,000-frame job: peak RSS {big['peak_rss_bytes'] / MB:.0f} MB (10 frames: "
          f"{small['peak_rss_bytes'] / MB:.0f} MB); the frames add {extra / MB:.0f} MB = "
          f"{extra / uint8:.2f} x their uint8 size ({uint8 / MB:.0f} MB)", flush=True)  # fmt: skip
    return result


def bench_extends(jobs: int, python: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.blender.conftest import write_frames as write_clip

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dist = tmp / "dist"
        subprocess.run([sys.executable, str(ROOT / "build.py"), "--out-dir", str(dist)],
                       check=True, capture_output=True)  # fmt: skip
        zip_path = next(dist.glob("fsgan_blender-*.zip"))
        frames = write_clip(tmp / "frames", 16)
        env = dict(os.environ, HOME=str(tmp / "home"))
        (tmp / "home").mkdir()
        script = ROOT / "tests" / "blender" / "bl_scripts" / "bl_rel_load.py"
        cmd = [python, str(script), "--", "--zip", str(zip_path), "--frames", str(frames),
               "--work", str(tmp), "--jobs", str(jobs)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        results = [json.loads(x[7:]) for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    start = next(r for r in results if r["stage"] == "start")
    job_rows = [r for r in results if r["stage"] == "job"]
    end = next(r for r in results if r["stage"] == "end")
    first = job_rows[0]
    result = {
        "jobs": jobs,
        "seconds": round(end["seconds"], 1),
        "seconds_per_job": round(end["seconds"] / jobs, 2),
        "rss_before_bytes": start["rss"],
        "rss_after_first_bytes": first["rss"],
        "rss_end_bytes": end["rss"],
        "rss_growth_after_first_bytes": end["rss"] - first["rss"],
        "fds": [start["fds"], first["fds"], end["fds"]],
        "threads": [start["threads"], first["threads"], end["threads"]],
        "children_end": end["children"],
    }
    print(f"{jobs} Extend jobs in {end['seconds']:.0f} s ({end['seconds'] / jobs:.1f} s each): "
          f"Blender RSS {first['rss'] / MB:.0f} MB after the first, {end['rss'] / MB:.0f} MB "
          f"after the last; open fds {first['fds']} -> {end['fds']}; threads "
          f"{first['threads']} -> {end['threads']}; child processes left: "
          f"{len(end['children'])}", flush=True)  # fmt: skip
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("frames", "extends"), default=None)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--python", default=sys.executable, help="a Python with bpy")
    args = p.parse_args(argv)
    summary = {}
    if args.only in (None, "frames"):
        summary["frames"] = bench_frames(args.frames, args.width, args.height, args.steps)
    if args.only in (None, "extends"):
        summary["extends"] = bench_extends(args.jobs, args.python)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
