"""The warp generator's motion prior: a Lucas-Kanade flow estimate it starts from."""

import torch
import torch.nn.functional as F

from core.models import ModelConfig, build_models, estimate_flow, warp


def _texture(h=72, w=128, seed=0) -> torch.Tensor:
    """A smooth random RGB picture in [-1, 1] (detail at several scales, like footage)."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(1, 3, h, w)
    for s in (4, 8, 16):
        n = torch.rand(1, 3, h // s + 2, w // s + 2, generator=gen) * 2 - 1
        out += F.interpolate(n, size=(h + 2 * s, w + 2 * s), mode="bicubic")[..., s:-s, s:-s]
    return (out / 2).clamp(-1, 1)


def _shifted(img: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """img with its content moved by (dx, dy) pixels: out(p) = img(p - d)."""
    flow = torch.tensor([-dx, -dy]).view(1, 2, 1, 1).expand(1, 2, *img.shape[-2:])
    return warp(img, flow.contiguous())


def test_estimate_flow_recovers_sub_pixel_and_larger_shifts():
    img = _texture()
    for dx, dy in ((0.3, -0.2), (2.5, 1.5)):
        moved = _shifted(img, dx, dy)
        f = estimate_flow(img, moved)  # moved ~ warp(img, f): f = -d
        inner = f[0, :, 8:-8, 8:-8].mean((1, 2))
        assert torch.allclose(inner, torch.tensor([-dx, -dy]), atol=0.1), (dx, dy, inner)
        # and it explains the second frame better than no motion does
        assert (warp(img, f) - moved).abs().mean() < 0.3 * (img - moved).abs().mean()


def test_estimate_flow_is_zero_without_motion_or_detail():
    img = _texture()
    assert estimate_flow(img, img).abs().max() < 1e-4
    flat = torch.full((2, 4, 32, 48), 0.3)
    assert estimate_flow(flat, flat.clone()).abs().max() == 0


def _prior_generator(gate: float):
    mcfg = ModelConfig(width=128, height=72, width_mult=0.125, context=2, motion_prior=True)
    g, _, _ = build_models(mcfg)
    with torch.no_grad():
        g.head.weight.zero_()
        g.head.bias.zero_()
        g.head.bias[5] = 20.0  # blend weight ~1 on the last frame; residual 0
        g.head.bias[-1] = gate  # the prior's gate logit
    return g.eval()


def test_a_fully_gated_prior_continues_at_constant_velocity():
    """Gate 1 and no correction: the next frame is the last one moved on by the motion
    between the last two (here 0.6 px right per frame); gate 0 copies the last frame."""
    img = _texture()
    ctx = torch.stack([img, _shifted(img, 0.6, 0.0)], 1)  # (1, K=2, C, H, W)
    expect = _shifted(img, 1.2, 0.0)
    with torch.no_grad():
        on = _prior_generator(20.0)(ctx)
        off = _prior_generator(-20.0)(ctx)
    err = lambda x: float((x - expect)[..., 8:-8, 8:-8].abs().mean())  # noqa: E731
    assert err(on) < 0.25 * err(off), (err(on), err(off))
    assert torch.allclose(off, ctx[:, -1], atol=1e-4)
    # the context frame before the last is warped by twice the field
    m = _prior_generator(20.0).motion(ctx)
    assert torch.allclose(m.flow[:, 0], 2 * m.flow[:, 1], atol=1e-5)


def test_a_precomputed_prior_gives_the_same_frame():
    """The trainer computes the real context's prior once per step and passes it in."""
    g = _prior_generator(0.0)
    torch.manual_seed(0)
    with torch.no_grad():
        g.head.weight.normal_(0, 0.01)
    ctx = torch.rand(2, 2, 3, 72, 128) * 2 - 1
    assert torch.equal(g(ctx), g(ctx, g.motion_prior(ctx)))


def test_checkpoints_from_before_the_prior_load_without_it():
    old = ModelConfig(motion_prior=False).to_dict()
    del old["motion_prior"]
    cfg = ModelConfig.from_dict(old)
    assert not cfg.motion_prior and not cfg.uses_prior
    g_old, _, _ = build_models(ModelConfig(motion_prior=False, width_mult=0.125))
    g, _, _ = build_models(ModelConfig.from_dict({**old, "width_mult": 0.125}))
    g.load_state_dict(g_old.state_dict())  # same layers: the stem has no prior channels
    assert ModelConfig(motion_prior=True).uses_prior
    assert not ModelConfig().uses_prior  # opt-in (docs/QUALITY.md)
    assert not ModelConfig(context=1, motion_prior=True).uses_prior  # no motion in one frame
    assert not ModelConfig(preset="paper", motion_prior=True).uses_prior
    assert not ModelConfig(head="residual", motion_prior=True).uses_prior
