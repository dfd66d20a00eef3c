"""Training that cannot die quietly (core/guard.py), the adversarial terms reaching G, the
full-size warp, and the refusal of a collapsed model."""

import glob
import os

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.data import list_frames, load_clip, load_full_size, to_float
from core.generate import FullSizePredictor, check_not_flat, extend
from core.guard import TrainingCollapsed
from core.models import ModelConfig, build_models
from core.train import TrainConfig, Trainer, fit

from .conftest import ROOT, TINY, run_cli

# The team's shared clips beside the checkout (CI has them there); FSGAN_CLIPS overrides.
CLIPS = os.environ.get("FSGAN_CLIPS") or os.path.join(os.path.dirname(ROOT), "shared", "clips")


def _trainer(clip_dir, head="residual", **tkw):
    clip = load_clip(list_frames(str(clip_dir)), 32, 32)
    mcfg = ModelConfig(width=32, height=32, channels=clip.channels, head=head, **TINY)
    tcfg = TrainConfig(batch_size=4, device="cpu", seed=3, preview_every=0, **tkw)
    return Trainer(clip, mcfg, tcfg)


def _sabotage(trainer, at_steps, once=False):
    """After the real step at each of ``at_steps``, the residual head (the generator before
    the warp head) is pushed to tanh = -1 everywhere: all-black frames, clamped, with no
    gradient left, the collapse issue 14 found. ``once``: only the first time (a rollback
    repeats step numbers). The warp head cannot be forced there by its weights: its output is
    real pixels moved around."""
    real_step = trainer.step
    done = set()

    def step():
        out = real_step()
        if trainer.step_num in at_steps and not (once and trainer.step_num in done):
            done.add(trainer.step_num)
            with torch.no_grad():
                trainer.g.head.bias.fill_(-10.0)
        return out

    trainer.step = step
    return trainer


def _flat(g, frames):
    """Whether G's next frame from the clip's last frames is flat (extend's own test)."""
    k = g.context
    ctx = to_float(frames[-k:])
    g.eval()
    with torch.no_grad():
        out = g(ctx[None])[0]
    try:
        check_not_flat(out, ctx, "m")
    except ValueError:
        return True
    return False


def test_a_forced_collapse_is_rolled_back_and_training_recovers(clip_dir, tmp_path):
    tr = _sabotage(_trainer(clip_dir, steps=30, val_every=5, checkpoint_every=0), {12}, once=True)
    events = []
    ckpt = tmp_path / "m.safetensors"
    result = fit(tr, str(ckpt), events.append)
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert result["recoveries"] == 1
    assert any("unstable at step 15" in m and "rolled back to step 10" in m for m in logs), logs
    assert tr.tcfg.lr_g == pytest.approx(2.5e-4) and tr.tcfg.adv_weight == pytest.approx(0.05)
    assert tr.opt_g.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert result["step"] == 30 and load_checkpoint(str(ckpt)).step == 30
    g, _, _ = build_models(tr.mcfg)
    g.load_state_dict(load_checkpoint(str(ckpt)).weights["g_ema"])
    assert not _flat(g, tr.frames)


def test_a_collapse_that_keeps_coming_back_stops_and_never_saves_it(clip_dir, tmp_path):
    tr = _sabotage(
        _trainer(clip_dir, steps=40, val_every=5, checkpoint_every=10), set(range(11, 41))
    )
    events = []
    ckpt = tmp_path / "m.safetensors"
    with pytest.raises(TrainingCollapsed, match="did not recover after 3 rollbacks"):
        fit(tr, str(ckpt), events.append)
    ck = load_checkpoint(str(ckpt))
    assert ck.step == 10  # the last state that passed; the collapsed one never reached disk
    g, _, _ = build_models(tr.mcfg)
    g.load_state_dict(ck.weights["g_ema"])
    assert not _flat(g, tr.frames)
    assert sum("rolled back" in e.get("message", "") for e in events) == 3


def test_the_collapsed_state_is_what_the_guard_sees(clip_dir):
    """Without the guard the same sabotage trains on and ends flat: the test above can fail."""
    tr = _sabotage(_trainer(clip_dir, steps=14, guard="off", ema=0.0), {12})
    fit(tr, None)
    assert _flat(tr.g, tr.frames)


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_adversarial_terms_reach_the_generator(clip_dir, monkeypatch, preset):
    """Both of G's updates take a gradient from their critic: G vs D, then G vs S."""
    import core.train as train_mod

    clip = load_clip(list_frames(str(clip_dir)), 32, 32)
    mcfg = ModelConfig(preset=preset, width=32, height=32, channels=clip.channels, **TINY)
    tr = Trainer(clip, mcfg, TrainConfig(batch_size=4, device="cpu", adv_warmup=0))
    norms = []
    real = train_mod.g_loss_fn

    def g_loss(logits):
        loss = real(logits)
        grads = torch.autograd.grad(loss, list(tr.g.parameters()), retain_graph=True,
                                    allow_unused=True)  # fmt: skip
        norms.append(sum(float(g.norm()) for g in grads if g is not None))
        return loss

    monkeypatch.setattr(train_mod, "g_loss_fn", g_loss)
    tr.step()
    assert len(norms) == 2 and all(n > 0 for n in norms), norms


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_critics_learn(clip_dir, preset):
    """D and S each lower their own loss on a batch they train on (G held still): a critic
    whose update is lost, or whose loss has the wrong sign, fails here."""
    clip = load_clip(list_frames(str(clip_dir)), 32, 32)
    mcfg = ModelConfig(preset=preset, width=32, height=32, channels=clip.channels, **TINY)
    tcfg = TrainConfig(batch_size=4, device="cpu", lr_g=0.0, lr_d=1e-3, diffaug="",
                       precision="fp32", guard="off")  # fmt: skip
    tr = Trainer(clip, mcfg, tcfg)
    seq = tr._batch(torch.Generator().manual_seed(0))
    tr._batch = lambda gen: seq  # the same batch every step
    losses = [tr.step() for _ in range(25)]
    for name in ("loss_d", "loss_s"):
        first, last = float(losses[0][name]), float(losses[-1][name])
        assert last < first - 0.05, (name, first, last)


def test_warp_model_moves_full_size_detail(tmp_path):
    """A warp model trained at 32x18 moves a 256x144 frame by its flow scaled to the full size
    (8x): the result is the full-size frame shifted, with its detail, not a blown-up picture."""
    mcfg = ModelConfig(width=32, height=18, width_mult=0.125, context=2)
    g, _, _ = build_models(mcfg)
    with torch.no_grad():
        g.head.bias.zero_()
        g.head.bias[2] = 1.0  # flow of the last frame: x + 1 training pixel = 8 source pixels
        g.head.bias[5] = 20.0  # blend weight ~1 on the last frame; residual 0
    g.eval()
    torch.manual_seed(0)
    full = torch.rand(2, 3, 144, 256) * 2 - 1  # detail at every pixel
    from core.data import Letterbox

    pred = FullSizePredictor(g, mcfg, Letterbox(256, 144, 32, 18), _cpu())
    out = pred.step(full[None])[0]
    expect = full[1, :, :, 8:]  # out(x) = last(x + 8)
    inner = out[:, 4:-4, : 256 - 8 - 8]
    assert (inner - expect[:, 4:-4, : 256 - 16]).abs().mean() < 1e-3
    assert out.std() > 0.9 * full[1].std()  # no blur: a 32x18 picture blown up has ~none


def test_long_continuation_samples_the_detail_once():
    """Ten steps of a 1.2-pixel pan: every frame is the last real frame sampled once at the
    chained offset (12 px by frame 10), as crisp as it; warping each generated frame again
    (``track=False``) blurs it step by step, which the followed field exists to avoid."""
    from core.data import Letterbox

    mcfg = ModelConfig(width=64, height=36, width_mult=0.125, context=2)
    g, _, _ = build_models(mcfg)
    with torch.no_grad():
        g.head.bias.zero_()
        g.head.bias[2] = 0.3  # 0.3 training pixels = 1.2 source pixels of x per step
        g.head.bias[5] = 20.0  # blend weight ~1 on the last frame; residual 0
    g.eval()
    torch.manual_seed(0)
    full = torch.rand(2, 3, 144, 256) * 2 - 1  # detail at every pixel
    box = Letterbox(256, 144, 64, 36)
    tracked = FullSizePredictor(g, mcfg, box, _cpu()).rollout(full, 10)
    again = FullSizePredictor(g, mcfg, box, _cpu(), track=False).rollout(full, 10)
    expect = full[1, :, 8:-8, 12 : 256 - 16]  # frame 10(x) = last(x + 12)
    got = tracked[-1][:, 8:-8, : 256 - 28]
    assert (got - expect).abs().mean() < 0.05, float((got - expect).abs().mean())
    crisp = float(tracked[-1].std() / full[1].std())
    blurred = float(again[-1].std() / full[1].std())
    assert crisp > 0.9 and blurred < 0.8 * crisp, (crisp, blurred)
    # extend's frame-at-a-time use (step on the context it produced) follows the same field
    step = FullSizePredictor(g, mcfg, box, _cpu())
    ctx = full[None]
    for _ in range(10):
        nxt = step.step(ctx)
        ctx = torch.cat([ctx[:, 1:], nxt[:, None]], 1)
    assert torch.allclose(nxt[0], tracked[-1], atol=1e-5)


def _cpu():
    from core.device import pick_device

    return pick_device("cpu", "fp32")


def test_extend_refuses_a_collapsed_model(clip_dir, tmp_path):
    tr = Trainer(
        load_clip(list_frames(str(clip_dir)), 32, 32),
        ModelConfig(width=32, height=32, head="residual", **TINY),
        TrainConfig(steps=1, batch_size=2, device="cpu", ema=0.0),
    )
    with torch.no_grad():
        tr.g.head.bias.fill_(-10.0)  # tanh -1: every pixel -1, an all-black frame
    path = str(tmp_path / "collapsed.safetensors")
    tr.save(path)
    frames = list_frames(str(clip_dir))
    with pytest.raises(ValueError, match="outputs a flat colour"):
        extend(path, frames, 3, str(tmp_path / "out"), device="cpu")
    assert not glob.glob(str(tmp_path / "out" / "*.png"))  # nothing written
    r = run_cli("extend", "--checkpoint", path, "--from", frames[-1], "--count", 2,
                "--out", tmp_path / "out2", "--device", "cpu")  # fmt: skip
    assert r.returncode == 2 and "flat colour" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "clip", ["camera_drive_red_trees", "camera_flower_handheld", "cartoon_goblin_walk_rgba"]
)
def test_real_footage_does_not_collapse(clip):
    """A few hundred steps on real footage (../shared/clips, present in CI), at a reduced size:
    the continuation at the clip's own size keeps its picture (issue 14 saw all-black frames)."""
    assert os.path.isdir(CLIPS), f"{CLIPS} is missing (shared/ beside the checkout)"
    paths = list_frames(os.path.join(CLIPS, clip))[:-10]
    c = load_clip(paths, 64, 36, exif=False)
    mcfg = ModelConfig(width=64, height=36, channels=c.channels, width_mult=0.25)
    tr = Trainer(c, mcfg, TrainConfig(steps=300, batch_size=8, device="cpu", seed=1))
    res = fit(tr, None)
    assert res["validation"]["std_ratio"] > 0.5, res
    full = to_float(load_full_size(paths[-2:], c.channels, exif=False))
    from core.data import Letterbox

    box = Letterbox(full.shape[-1], full.shape[-2], 64, 36)
    frames = FullSizePredictor(tr.inference_generator, mcfg, box, _cpu()).rollout(full, 10)
    ratio = frames.flatten(1).std(1).min() / full.flatten(1).std(1).mean()
    assert ratio > 0.5, float(ratio)
    # and it moves: not a frozen copy of the last frame
    assert (frames[-1] - full[-1]).abs().mean() > 1e-3


def test_extending_1080p_costs_a_fraction_of_training_at_1080p():
    """Generating at 1920x1080 never runs the network at that size: the estimate is a small
    part of training's at 1080p, and a real step at 1080p gives a 1080p frame."""
    from core.data import Letterbox
    from core.estimate import estimate_generation_memory, estimate_training_memory

    small = ModelConfig(width=128, height=72)
    gen = estimate_generation_memory(small, 1920, 1080)["total_bytes"]
    train_1080 = estimate_training_memory(ModelConfig(width=1920, height=1080), 8, 1, 48, True)
    assert gen < 0.05 * train_1080["total_bytes"], (gen, train_1080["total_bytes"])
    assert gen < 2**30  # under a GB
    mcfg = ModelConfig(width=64, height=36, width_mult=0.25)
    g, _, _ = build_models(mcfg)
    pred = FullSizePredictor(g.eval(), mcfg, Letterbox(1920, 1080, 64, 36), _cpu())
    out = pred.step(torch.zeros(1, 2, 3, 1080, 1920))
    assert out.shape == (1, 3, 1080, 1920)


def test_a_shrinking_field_samples_the_frame_filtered():
    """Where the followed field packs 2x2 pixels of the last real frame into one, a point
    sample aliases: a one-pixel checkerboard comes out one solid colour. Filtered (``mip``) it
    is the checkerboard's mean grey; where the field only moves the frame it is untouched."""
    from core.data import Letterbox

    mcfg = ModelConfig(width=32, height=32, width_mult=0.125, context=2)
    g, _, _ = build_models(mcfg)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    checker = ((xs + ys) % 2) * 2 - 1  # +-1, period 2 pixels
    ctx = checker.expand(1, 2, 3, 64, 64).clone()
    box = Letterbox(64, 64, 32, 32)
    shrink = torch.stack([xs, ys])[None] * 1.0  # out(p) = frame(2p) for the upper-left quarter
    shift = torch.full((1, 2, 64, 64), 3.0)  # out(p) = frame(p + 3): no shrinking
    outs = {}
    for mip in (False, True):
        pred = FullSizePredictor(g, mcfg, box, _cpu(), mip=mip)
        pred.begin(ctx)
        outs[mip] = (pred._sample_anchor(shrink), pred._sample_anchor(shift))
        if mip:  # the filtered copies are made once per continuation, for its own anchor
            kept = pred._filtered()
            assert kept is pred._filtered() and len(kept) == 2
            pred.begin(-ctx)
            assert pred._mips is None
            assert torch.equal(pred._filtered()[0], -kept[0])
    aliased = float(outs[False][0][..., 4:28, 4:28].mean())
    filtered = float(outs[True][0][..., 4:28, 4:28].abs().mean())
    assert abs(aliased) > 0.95, aliased  # every sample hits the same colour
    assert filtered < 0.1, filtered
    assert torch.equal(outs[True][1], outs[False][1])
