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


# --- the quality benchmark's clips (bench/quality.py); smooth, anti-aliased edges throughout ---


def _to_u8(frames) -> np.ndarray:
    return (np.clip(np.stack(frames), 0, 1) * 255 + 0.5).astype(np.uint8)


def _soft(d: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance in pixels (negative inside): a one-pixel soft edge."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _segment_dist(xs, ys, ax, ay, bx, by):
    vx, vy = bx - ax, by - ay
    t = np.clip(((xs - ax) * vx + (ys - ay) * vy) / max(vx * vx + vy * vy, 1e-6), 0, 1)
    return np.hypot(xs - (ax + t * vx), ys - (ay + t * vy))


def make_rotating_polygon(n=80, w=64, h=48, seed=0, sides=5, period=37.3) -> np.ndarray:
    """A regular polygon spinning at constant speed, its fill shaded along a rotating axis."""
    xs, ys = _grid(w, h)
    cx, cy, r = w / 2, h / 2, 0.38 * min(w, h)
    apothem = r * math.cos(math.pi / sides)
    bg = np.stack([0.9 - 0.2 * ys / h, 0.88 - 0.1 * ys / h, 0.8 + 0 * ys], -1)
    frames = []
    for t in range(n):
        a0 = 2 * math.pi * (t + seed) / period
        d = np.full(xs.shape, -1e9, np.float32)
        for i in range(sides):
            a = a0 + (i + 0.5) * 2 * math.pi / sides
            d = np.maximum(d, (xs - cx) * math.cos(a) + (ys - cy) * math.sin(a) - apothem)
        cover = _soft(d)[..., None]
        u = ((xs - cx) * math.cos(a0) + (ys - cy) * math.sin(a0)) / r  # rotating shade axis
        fill = np.stack([0.55 + 0.35 * u, 0.25 + 0.15 * u, 0.6 - 0.3 * u], -1)
        frames.append(bg * (1 - cover) + fill * cover)
    return _to_u8(frames)


def make_walk_cycle(n=80, w=64, h=48, seed=0, period=13.3) -> np.ndarray:
    """A stick figure walking in place: swinging legs and arms, a bobbing body (a cycle of
    13.3 frames: no frame repeats exactly, so a held-out frame is never a training frame)."""
    xs, ys = _grid(w, h)
    s = h / 48.0
    bg = np.stack([0.75 + 0.1 * ys / h, 0.85 + 0 * ys, 0.95 - 0.1 * ys / h], -1)
    bg[ys > h * 0.88] = (0.35, 0.55, 0.3)
    frames = []
    for t in range(n):
        ph = 2 * math.pi * (t + seed) / period
        bob = 1.2 * s * abs(math.sin(ph))
        hx, hy = w / 2, h * 0.56 - bob  # hip
        sx, sy = w / 2, h * 0.3 - bob  # shoulder
        dist = _segment_dist(xs, ys, hx, hy, sx, sy) - 2.2 * s
        for sign in (1, -1):
            a = 0.55 * math.sin(ph) * sign
            kx, ky = hx + 9 * s * math.sin(a), hy + 9 * s * math.cos(a)
            b = a - 0.35 * (1 + math.sin(ph + sign * math.pi / 2))
            fx, fy = kx + 9 * s * math.sin(b), ky + 9 * s * math.cos(b)
            dist = np.minimum(dist, _segment_dist(xs, ys, hx, hy, kx, ky) - 1.6 * s)
            dist = np.minimum(dist, _segment_dist(xs, ys, kx, ky, fx, fy) - 1.6 * s)
            e = -0.6 * math.sin(ph) * sign
            ax, ay = sx + 10 * s * math.sin(e), sy + 10 * s * math.cos(e)
            dist = np.minimum(dist, _segment_dist(xs, ys, sx, sy, ax, ay) - 1.3 * s)
        body = _soft(dist)[..., None]
        head = _soft(np.hypot(xs - sx, ys - (sy - 5.5 * s)) - 4.0 * s)[..., None]
        img = bg * (1 - body) + np.array([0.2, 0.25, 0.55]) * body
        frames.append(img * (1 - head) + np.array([0.95, 0.75, 0.6]) * head)
    return _to_u8(frames)


def make_pulsing_blob(n=80, w=64, h=48, seed=0, period=17.3) -> np.ndarray:
    """A wobbling, breathing blob whose colour pulses: shape and colour change, nothing moves."""
    xs, ys = _grid(w, h)
    cx, cy = w / 2, h / 2
    ang = np.arctan2(ys - cy, xs - cx)
    rad = np.hypot(xs - cx, ys - cy)
    base = 0.3 * min(w, h)
    frames = []
    for t in range(n):
        ph = 2 * math.pi * (t + seed) / period
        r = base * (1 + 0.15 * math.sin(ph) + 0.12 * np.sin(3 * ang + ph) + 0.06 * np.cos(5 * ang))
        cover = _soft(rad - r)[..., None]
        glow = np.clip(1 - rad / (r + 1e-3), 0, 1)[..., None]
        col = np.array([0.55 + 0.35 * math.sin(ph), 0.35, 0.55 - 0.3 * math.sin(ph)])
        fill = col * (0.5 + 0.5 * glow)
        frames.append(np.full((h, w, 3), 0.12, np.float32) * (1 - cover) + fill * cover)
    return _to_u8(frames)


def make_scrolling_background(n=80, w=64, h=48, seed=0) -> np.ndarray:
    """A smooth texture scrolling left at constant speed while a soft ball drifts right: the
    constant-velocity clip (linear extrapolation is nearly exact on it)."""
    xs, ys = _grid(w, h)
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * math.pi, 3)
    v_bg, v_ball = 0.05 * w / 4, 0.6 * w / 80  # pixels per frame
    r = 0.18 * min(w, h)
    frames = []
    for t in range(n):
        u = 2 * math.pi * (xs + v_bg * t) / w
        tex = (
            0.5
            + 0.18 * np.sin(2 * u + phases[0])
            + 0.12 * np.sin(3 * u + 2 * math.pi * ys / h + phases[1])
        )
        img = np.stack([tex * 0.6 + 0.2, tex * 0.7 + 0.15, tex * 0.4 + 0.4], -1)
        bx = w * 0.15 + v_ball * t
        cover = np.clip(1.5 * (1 - np.hypot(xs - bx, ys - h * 0.55) / r), 0, 1)[..., None]
        frames.append(img * (1 - cover) + np.array([0.95, 0.8, 0.2]) * cover)
    return _to_u8(frames)


def make_rgba_sprite(n=80, w=64, h=48, seed=0, period=29.7) -> np.ndarray:
    """A shaded sprite circling on a transparent background: (N, H, W, 4) RGBA."""
    xs, ys = _grid(w, h)
    r = 0.16 * min(w, h) + 1
    frames = []
    for t in range(n):
        a = 2 * math.pi * (t + seed) / period
        cx, cy = w / 2 + 0.28 * w * math.cos(a), h / 2 + 0.25 * h * math.sin(a)
        rgb, cover = _shaded_disc(xs, ys, cx, cy, r, (0.3, 0.8, 0.4))
        frames.append(np.concatenate([rgb * (cover > 0), cover], -1))
    return _to_u8(frames)


def make_static(n=80, w=64, h=48, seed=0) -> np.ndarray:
    """One still picture repeated: the sanity clip (nothing should move)."""
    xs, ys = _grid(w, h)
    img = np.stack([0.3 + 0.4 * xs / w, 0.5 + 0 * xs, 0.7 - 0.4 * ys / h], -1)
    rgb, cover = _shaded_disc(xs, ys, w * 0.35, h * 0.5, 0.22 * min(w, h), (0.9, 0.6, 0.2))
    img = img * (1 - cover) + rgb * cover
    sq = _soft(np.maximum(np.abs(xs - w * 0.72), np.abs(ys - h * 0.4)) - 0.12 * min(w, h))
    img = img * (1 - sq[..., None]) + np.array([0.15, 0.2, 0.5]) * sq[..., None]
    return _to_u8([img] * n)


CLIPS = {
    "bouncing_ball": make_bouncing_ball,
    "pendulum": make_pendulum,
    "rotating_polygon": make_rotating_polygon,
    "walk_cycle": make_walk_cycle,
    "pulsing_blob": make_pulsing_blob,
    "scrolling_background": make_scrolling_background,
    "rgba_sprite": make_rgba_sprite,
    "static": make_static,
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
