import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Options of a quick CPU training run (32x32, narrow networks), for `run_cli("train", ...)`.
TINY_ARGS = [
    "--width",
    32,
    "--height",
    32,
    "--width-mult",
    0.125,
    "--batch-size",
    2,
    "--device",
    "cpu",
    "--preview-every",
    0,
]


def run_cli(*args, timeout=300, **kw):
    """Run `python -m core ...` from the repository root; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.fixture
def clip_dir(tmp_path):
    """A 16-frame 32x32 procedural clip as PNG files."""
    from core.procedural import make_clip, write_frames

    folder = tmp_path / "clip"
    write_frames(make_clip("bouncing_ball", 16, 32, 32), str(folder))
    return folder


TINY = {"width_mult": 0.125, "base": 32}


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny test models gain nothing from threads, and oversubscribed OpenMP threads (pytest
    plus a worker subprocess on 2 cores) make CPU steps 10-20x slower."""
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
