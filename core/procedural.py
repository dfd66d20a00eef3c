"""Procedural animations generated in code: the built-in demo clip and test data (no downloads).

Each ``make_*`` returns (N, H, W, C) uint8 frames. ``CLIPS`` names them for the CLI and the
quality benchmark.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from .checkpoint import atomic_write_bytes
from .generate import png_bytes


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs + 0.5, ys + 0.5


def _shaded_disc(xs, ys, cx, cy, r, color, light=(-0.4, -0.5)):
    """A lit sphere: colour times a Lambert-ish term, with a soft (anti-aliased) edge."""
    dx, dy = (xs - cx) / r, (ys - cy) / r
    d2 = dx * dx + dy * dy
    cover = np.clip((1.0 - np.sqrt(d2)) * r, 0.0, 1.0)
    z = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
    lx, ly = light
    lz = math.sqrt(max(0.0, 1 - lx * lx - ly * ly))
    shade = np.clip(dx * lx + dy * ly + z * lz, 0.0, 1.0) * 0.8 + 0.2
    rgb = np.stack([shade * c for c in color], -1)
    return rgb, cover[..., None]


def make_bouncing_ball(n=64, w=128, h=72, seed=0, balls=1) -> np.ndarray:
    """Shaded ball(s) bouncing off the walls under gravity, over a vertical gradient."""
    rng = np.random.default_rng(seed)
    xs, ys = _grid(w, h)
    bg = np.stack([0.15 + 0.25 * ys / h, 0.2 + 0.2 * ys / h, 0.35 + 0.1 * ys / h], -1)
    r = 0.14 * min(w, h) + 2
    state = []
    for _ in range(balls):
        state.append(
            [rng.uniform(r, w - r), rng.uniform(r, h * 0.5), rng.uniform(-1, 1) * w / 40 + w / 60,
             0.0, rng.uniform(0.4, 1.0, 3)]
        )  # fmt: skip
    g = h / 300.0
    frames = []
    for _ in range(n):
        img = bg.copy()
        for s in state:
            rgb, cover = _shaded_disc(xs, ys, s[0], s[1], r, s[4])
            img = img * (1 - cover) + rgb * cover
            s[3] += g
            s[0] += s[2]
            s[1] += s[3]
            if s[0] < r or s[0] > w - r:
                s[2] = -s[2]
                s[0] = min(max(s[0], r), w - r)
            if s[1] > h - r:
                s[1] = h - r
                s[3] = -abs(s[3])
        frames.append(img)
    return (np.clip(np.stack(frames), 0, 1) * 255 + 0.5).astype(np.uint8)


def make_pendulum(n=64, w=64, h=48, seed=0, period=24.0) -> np.ndarray:
    """A swinging pendulum: one frame alone cannot tell which way it swings."""
    xs, ys = _grid(w, h)
    px, py, length = w / 2, h * 0.1, h * 0.7
    frames = []
    for t in range(n):
        a = 0.8 * math.sin(2 * math.pi * (t + seed) / period)
        bx, by = px + length * math.sin(a), py + length * math.cos(a)
        img = np.full((h, w, 3), 0.92, np.float32)
        # rod: distance from the segment (pivot, bob)
        vx, vy = bx - px, by - py
        tt = np.clip(((xs - px) * vx + (ys - py) * vy) / (vx * vx + vy * vy), 0, 1)
        dist = np.hypot(xs - (px + tt * vx), ys - (py + tt * vy))
        rod = np.clip(1.2 - dist, 0, 1)[..., None]
        img = img * (1 - rod) + 0.2 * rod
        rgb, cover = _shaded_disc(xs, ys, bx, by, 0.1 * h + 1, (0.9, 0.3, 0.2))
        frames.append(img * (1 - cover) + rgb * cover)
    return (np.clip(np.stack(frames), 0, 1) * 255 + 0.5).astype(np.uint8)


CLIPS = {
    "bouncing_ball": make_bouncing_ball,
    "pendulum": make_pendulum,
}


def make_clip(name: str, n: int = 64, w: int = 128, h: int = 72, seed: int = 0) -> np.ndarray:
    if name not in CLIPS:
        raise ValueError(f"Unknown clip {name!r}; choose one of {', '.join(CLIPS)}.")
    return CLIPS[name](n=n, w=w, h=h, seed=seed)


def write_frames(frames: np.ndarray, folder: str, prefix: str = "frame_") -> list[str]:
    """Write (N, H, W, C) uint8 frames as numbered PNGs (atomically); returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        mode = "RGBA" if f.shape[-1] == 4 else "RGB"
        path = os.path.join(folder, f"{prefix}{i + 1:04d}.png")
        atomic_write_bytes(path, png_bytes(Image.fromarray(f, mode)))
        paths.append(path)
    return paths


def contact_sheet(rows: list[list[str]], path: str, cell: int = 128, labels=None) -> str:
    """A PNG grid: one row per list of image files (e.g. source frames above, generated below)."""
    from PIL import ImageDraw

    ims = [[Image.open(p).convert("RGBA") for p in row] for row in rows if row]
    w0, h0 = ims[0][0].size
    scale = cell / max(w0, h0)
    cw, ch = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    lab = 70 if labels else 0
    cols = max(len(r) for r in ims)
    sheet = Image.new("RGB", (lab + cols * (cw + 2), len(ims) * (ch + 2)), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(ims):
        if labels:
            draw.text((4, r * (ch + 2) + ch // 2 - 5), labels[r], fill=(230, 230, 230))
        for c, im in enumerate(row):
            tile = Image.new("RGBA", im.size, (128, 128, 128, 255))
            tile.alpha_composite(im)
            sheet.paste(tile.convert("RGB").resize((cw, ch)), (lab + c * (cw + 2), r * (ch + 2)))
    atomic_write_bytes(path, png_bytes(sheet))
    return path
