"""Pixel art keeps its palette: find_palette and FullSizePredictor's snapping."""

from __future__ import annotations

import torch

from core.data import Letterbox
from core.device import pick_device
from core.generate import FullSizePredictor, find_palette, snap_to_palette
from core.models import ModelConfig, build_models


def _pixel_art(n: int, h: int, w: int, colours: torch.Tensor, gen: torch.Generator):
    """n frames of 4x4-pixel blocks in the given colours, scrolled 1 block per frame."""
    idx = torch.randint(0, colours.shape[0], (h // 4, w // 4 + n), generator=gen)
    frames = []
    for t in range(n):
        block = idx[:, t : t + w // 4]
        img = colours[block].permute(2, 0, 1)  # (C, h/4, w/4)
        frames.append(img.repeat_interleave(4, 1).repeat_interleave(4, 2))
    return torch.stack(frames)


def test_find_palette_tells_pixel_art_from_footage():
    gen = torch.Generator().manual_seed(0)
    colours = torch.rand(12, 4, generator=gen) * 2 - 1  # RGBA
    art = _pixel_art(2, 64, 96, colours, gen)
    found = find_palette(art)
    assert found is not None and found.shape == (12, 4)
    assert torch.equal(torch.sort(found, 0).values, torch.sort(colours, 0).values)
    photo = torch.rand(2, 3, 64, 96, generator=gen) * 2 - 1
    assert find_palette(photo) is None
    assert find_palette(art, limit=8) is None  # more colours than the limit
    assert find_palette(torch.full((2, 3, 64, 96), -1.0)) is None  # a flat frame: no palette
    # a few hundred colours in a small image are too many per pixel to be a palette
    assert find_palette(_pixel_art(1, 16, 16, torch.rand(200, 3, generator=gen), gen)) is None


def test_snap_to_palette_takes_the_nearest_colour():
    pal = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1.0, -1.0, -1.0]])
    x = torch.tensor([[-0.9, -0.8, -1.0], [0.2, 0.9, 0.9], [0.7, -0.2, -0.6]]).T.reshape(1, 3, 1, 3)
    out = snap_to_palette(x, pal, chunk=2)  # chunked like a large frame
    assert torch.equal(out[0, :, 0].T, pal)


def test_pixel_art_continuation_stays_on_its_palette():
    """A warp model moving a pixel-art picture by a fraction of a pixel: bicubic sampling
    blends colours; the predictor snaps every generated pixel back onto the real palette, and
    with palette=False it does not (so the assertion can fail)."""
    mcfg = ModelConfig(width=48, height=32, width_mult=0.125, context=2)
    g, _, _ = build_models(mcfg)
    with torch.no_grad():
        g.head.bias.zero_()
        g.head.bias[2] = 0.37  # a fractional shift per step
        g.head.bias[5] = 20.0
    g.eval()
    gen = torch.Generator().manual_seed(1)
    colours = torch.rand(10, 3, generator=gen) * 2 - 1
    full = _pixel_art(2, 64, 96, colours, gen)
    box = Letterbox(96, 64, 48, 32)
    rt = pick_device("cpu", "fp32")
    kept = FullSizePredictor(g, mcfg, box, rt).rollout(full, 4)
    free = FullSizePredictor(g, mcfg, box, rt, palette=False).rollout(full, 4)

    def off_palette(frames):
        px = frames.movedim(1, -1).reshape(-1, 3)
        d = torch.cdist(px, colours, compute_mode="donot_use_mm_for_euclid_dist")
        return float((d.min(1).values > 1e-6).float().mean())

    assert off_palette(kept) == 0.0
    assert off_palette(free) > 0.2, off_palette(free)
    # the snapped continuation still follows the motion: close to the blended one
    assert float((kept - free).abs().mean()) < 0.25
