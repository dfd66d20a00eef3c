"""DiffAugment (Zhao et al., 2020): differentiable augmentations applied to real and fake alike
before a discriminator, so a discriminator cannot memorise one small clip.

``diff_augment(xs, policy, gen)`` applies one random transform per sample, the *same* one to
every tensor in ``xs`` (a frame and the frame before it move together, so their difference map
stays a true difference map). Tensors are (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch

POLICIES = ("color", "translation", "cutout")


def _rand(b: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(b, 1, 1, 1, generator=gen, device=gen.device).to(device)


def _color(xs, gen):
    b, dev = xs[0].shape[0], xs[0].device
    bright = _rand(b, gen, dev) - 0.5  # +-0.5 in [-1, 1] units
    sat = _rand(b, gen, dev) * 2.0
    con = _rand(b, gen, dev) + 0.5
    out = []
    for x in xs:
        rgb, alpha = x[:, :3], x[:, 3:]
        rgb = rgb + bright
        mean = rgb.mean(1, keepdim=True)
        rgb = (rgb - mean) * sat + mean
        mean = rgb.mean((1, 2, 3), keepdim=True)
        rgb = (rgb - mean) * con + mean
        out.append(torch.cat([rgb, alpha], 1))
    return out


def _translation(xs, gen, ratio: float = 0.125):
    b, _, h, w = xs[0].shape
    dev = xs[0].device
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    ty = torch.randint(-sh, sh + 1, (b,), generator=gen, device=gen.device).to(dev)
    tx = torch.randint(-sw, sw + 1, (b,), generator=gen, device=gen.device).to(dev)
    gy = torch.arange(h, device=dev)[None, :, None] + ty[:, None, None]  # (B, H, 1)
    gx = torch.arange(w, device=dev)[None, None, :] + tx[:, None, None]  # (B, 1, W)
    gy, gx = gy.expand(b, h, w), gx.expand(b, h, w)
    valid = ((gy >= 0) & (gy < h) & (gx >= 0) & (gx < w))[:, None]
    idx = (gy.clamp(0, h - 1) * w + gx.clamp(0, w - 1)).reshape(b, 1, h * w)
    out = []
    for x in xs:
        c = x.shape[1]
        moved = x.reshape(b, c, h * w).gather(2, idx.expand(b, c, h * w)).reshape(b, c, h, w)
        out.append(torch.where(valid, moved, torch.full_like(moved, -1.0)))
    return out


def _cutout(xs, gen, ratio: float = 0.5):
    b, _, h, w = xs[0].shape
    dev = xs[0].device
    ch, cw = max(1, int(h * ratio / 2)), max(1, int(w * ratio / 2))
    cy = torch.randint(0, h, (b,), generator=gen, device=gen.device).to(dev)
    cx = torch.randint(0, w, (b,), generator=gen, device=gen.device).to(dev)
    yy = torch.arange(h, device=dev)[None, :, None]
    xx = torch.arange(w, device=dev)[None, None, :]
    hole = ((yy - cy[:, None, None]).abs() < ch) & ((xx - cx[:, None, None]).abs() < cw)
    return [x.masked_fill(hole[:, None], 0.0) for x in xs]


def diff_augment(xs: list[torch.Tensor], policy: str, gen: torch.Generator) -> list[torch.Tensor]:
    for name in [p.strip() for p in policy.split(",") if p.strip()]:
        if name not in POLICIES:
            raise ValueError(f"Unknown DiffAugment policy {name!r}; use {', '.join(POLICIES)}.")
        xs = {"color": _color, "translation": _translation, "cutout": _cutout}[name](xs, gen)
    return xs
