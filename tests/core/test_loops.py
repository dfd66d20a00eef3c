"""Loops: find_loop tells a repeating cycle from footage, and extend continues it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from core import loops
from core.data import list_frames, load_clip
from core.loops import find_loop, loop_index
from core.models import ModelConfig
from core.procedural import write_frames
from core.train import TrainConfig, Trainer

from .conftest import ROOT, TINY, run_cli

CLIPS = os.environ.get("FSGAN_CLIPS") or os.path.join(os.path.dirname(ROOT), "shared", "clips")


def _cycle(period: int, n: int, h: int = 32, w: int = 48, seed: int = 0,
           walk: float = 0.0) -> np.ndarray:  # fmt: skip
    """(n, h, w, 4) uint8: a sprite-like blob on a transparent background that goes round a
    cycle of ``period`` drawings (a shape that moves and changes size), repeated; ``walk``:
    pixels it moves to the right per frame besides (a character walking across)."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(40, 255, 3)
    yy, xx = np.mgrid[:h, :w]
    frames = np.zeros((n, h, w, 4), np.uint8)
    for t in range(n):
        a = 2 * np.pi * (t % period) / period
        cy, cx = h / 2 + 6 * np.sin(a), w / 2 + 10 * np.cos(a) + walk * t - walk * n / 2
        r = 5 + 2 * np.sin(2 * a)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        frames[t][inside, :3] = colour
        frames[t][inside, 3] = 255
    return frames


def _u8(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def test_find_loop_finds_the_period_of_a_cycle():
    assert find_loop(_u8(_cycle(7, 24))) == 7
    assert find_loop(_u8(_cycle(12, 30))) == 12  # 2.5 cycles: a full period matches
    # as floats in [-1, 1] (what the bench and the predictor use)
    assert find_loop(_u8(_cycle(7, 24)).float() / 127.5 - 1.0) == 7
    # compression-like noise on top of the cycle still reads as the cycle
    rng = np.random.default_rng(1)
    noisy = np.clip(_cycle(9, 30).astype(np.int16) + rng.integers(-1, 2, (30, 32, 48, 4)), 0, 255)
    assert find_loop(_u8(noisy.astype(np.uint8))) == 9
    # a cycle that only starts after a non-repeating stretch: found from the end
    lead = _cycle(50, 20, seed=3)[:, ::-1]  # a different, slow motion first
    tail = _cycle(6, 20)
    assert find_loop(_u8(np.concatenate([lead, tail]))) == 6


def test_find_loop_says_none_where_nothing_repeats():
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (32, 120, 3), dtype=np.uint8)
    pan = np.stack([texture[:, t : t + 48] for t in range(40)])  # a camera pan: never repeats
    assert find_loop(_u8(pan)) is None
    assert find_loop(_u8(np.repeat(pan[:1], 30, 0))) is None  # still frames are not a loop
    assert find_loop(_u8(_cycle(7, 12))) is None  # under two periods (and 8 frames) seen
    # a walk cycle that also walks across: repeating its frames would jump back
    assert find_loop(_u8(_cycle(8, 32, walk=0.25))) is None
    assert find_loop(_u8(_cycle(60, 120))) is None  # longer than MAX_PERIOD


def test_the_addon_hands_extend_the_history_find_loop_needs():
    """fsgan_blender cannot import core (torch): its LOOP_HISTORY is a copy of HISTORY."""
    with open(os.path.join(ROOT, "fsgan_blender", "strips.py"), encoding="utf-8") as f:
        assert f"LOOP_HISTORY = {loops.HISTORY} " in f.read()
    assert loops.HISTORY >= 2 * loops.MAX_PERIOD


def test_loop_index_repeats_the_last_period():
    n, p = 20, 6
    assert [loop_index(n, p, i) for i in range(8)] == [14, 15, 16, 17, 18, 19, 14, 15]


def test_the_shared_sprite_cycles_are_loops_and_the_footage_is_not():
    """On ../shared/clips (present in CI), at the add-on's training size, as extend sees them:
    the two sprite cycles (SOURCES.md: 10- and 16-frame cycles) are found, nothing else is."""
    assert os.path.isdir(CLIPS), f"{CLIPS} is missing (shared/ beside the checkout)"
    want = {"pixel_robot_run_rgba": 10, "cartoon_goblin_walk_rgba": 16}
    for name in sorted(os.listdir(CLIPS)):
        folder = os.path.join(CLIPS, name)
        if not os.path.isdir(folder):
            continue
        paths = list_frames(folder)[-10 - loops.HISTORY : -10]  # the benchmark's training part
        got = find_loop(load_clip(paths, 128, 72, exif=False).frames)
        assert got == want.get(name), (name, got)


@pytest.fixture
def loop_strip(tmp_path):
    """A 3-cycle RGBA strip (period 7) and an untrained tiny model for it."""
    folder = tmp_path / "cycle"
    paths = write_frames(_cycle(7, 21, 32, 48), str(folder))
    clip = load_clip(paths, 48, 32)
    mcfg = ModelConfig(width=48, height=32, channels=clip.channels, **TINY)
    tr = Trainer(clip, mcfg, TrainConfig(batch_size=2, device="cpu", preview_every=0))
    ckpt = str(tmp_path / "m.safetensors")
    tr.save(ckpt)
    return paths, ckpt


def _pixels(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGBA"))


def test_extend_continues_a_loop_with_the_strips_own_frames(loop_strip, tmp_path):
    from core.generate import extend

    paths, ckpt = loop_strip
    told = []
    out = extend(ckpt, paths, 9, str(tmp_path / "o"), device="cpu", on_loop=told.append)
    assert told == [7] and len(out) == 9
    for i, p in enumerate(out):  # frame i is the frame one period before it, pixel for pixel
        assert np.array_equal(_pixels(p), _pixels(paths[21 - 7 + i % 7])), i
    # loop=False: the model generates (an untrained model does not redraw the cycle)
    model = extend(ckpt, paths, 3, str(tmp_path / "m"), device="cpu", loop=False,
                   on_loop=told.append)  # fmt: skip
    assert told == [7] and len(model) == 3
    assert not np.array_equal(_pixels(model[1]), _pixels(paths[15]))
    # older frames of another size: no loop is looked for there, the model generates
    from PIL import Image

    odd = str(tmp_path / "odd.png")
    Image.new("RGBA", (20, 20)).save(odd)
    mixed = extend(ckpt, [odd, *paths], 1, str(tmp_path / "x"), device="cpu",
                   on_loop=told.append)  # fmt: skip
    assert told == [7] and len(mixed) == 1
    # only the last frames: too few to see a cycle, the model generates
    short = extend(ckpt, paths[-8:], 2, str(tmp_path / "s"), device="cpu", on_loop=told.append)
    assert told == [7] and len(short) == 2


def test_cli_and_worker_say_when_they_continue_a_loop(loop_strip, tmp_path):
    paths, ckpt = loop_strip
    r = run_cli("extend", "--checkpoint", ckpt, "--from", paths[-1], "--count", 3, "--out",
                tmp_path / "a", "--device", "cpu")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "repeat a 7-frame cycle" in r.stdout, r.stdout
    assert np.array_equal(_pixels(tmp_path / "a" / "frame_0001.png"), _pixels(paths[14]))
    r = run_cli("extend", "--checkpoint", ckpt, "--from", paths[-1], "--count", 2, "--out",
                tmp_path / "b", "--device", "cpu", "--no-loop")  # fmt: skip
    assert r.returncode == 0 and "cycle" not in r.stdout, r.stdout
    for loop in (True, False):
        job = {"version": 1, "kind": "extend", "frames": paths, "checkpoint": ckpt,
               "extend": {"count": 2, "out_dir": str(tmp_path / f"w{loop}"), "loop": loop,
                          "device": "cpu"}}  # fmt: skip
        jf = tmp_path / f"job{loop}.json"
        jf.write_text(json.dumps(job))
        r = run_cli("worker", "--job", jf)
        assert r.returncode == 0, r.stdout + r.stderr
        done = [json.loads(line) for line in r.stdout.splitlines() if '"done"' in line][-1]
        assert done["loop"] == (7 if loop else None) and len(done["frames"]) == 2, done
