import copy

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.data import list_frames, load_clip
from core.models import ModelConfig
from core.train import TrainConfig, Trainer, fit, resume_trainer, should_report

from .conftest import TINY


def _trainer(clip_dir, preset="paper", **tkw):
    clip = load_clip(list_frames(str(clip_dir)), 32, 32)
    mcfg = ModelConfig(preset=preset, width=32, height=32, channels=clip.channels, **TINY)
    tcfg = TrainConfig(steps=4, batch_size=4, device="cpu", seed=3, **tkw)
    return clip, mcfg, tcfg, Trainer(clip, mcfg, tcfg)


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_one_step_updates_all_three_networks_in_order(clip_dir, preset):
    _, _, _, tr = _trainer(clip_dir, preset)
    before = {n: copy.deepcopy(getattr(tr, n).state_dict()) for n in ("g", "d", "s")}
    seen = []
    tr.on_phase = seen.append
    out = tr.step()
    assert seen == ["D", "S", "G_D", "G_S"]
    for n in ("g", "d", "s"):
        after = getattr(tr, n).state_dict()
        changed = [
            k
            for k in after
            if after[k].is_floating_point() and not torch.equal(after[k], before[n][k])
        ]
        assert changed, f"{n} did not change"
    assert all(torch.isfinite(v) for v in out.values())
    assert 0 <= float(out["d_real"]) <= 1


def test_generator_updates_are_separate(clip_dir):
    """G's optimizer steps twice per training step (against D, then against S)."""
    _, _, _, tr = _trainer(clip_dir)
    tr.step()
    state = tr.opt_g.state_dict()["state"]
    assert float(next(iter(state.values()))["step"]) == 2
    assert float(next(iter(tr.opt_d.state_dict()["state"].values()))["step"]) == 1


def _scrolling(tmp_path):
    """A picture scrolling 0.4 pixels a frame (16 frames, 32x32) and a tiny default model."""
    from core.procedural import make_clip, write_frames

    folder = tmp_path / "scroll"
    write_frames(make_clip("scrolling_background", 16, 32, 32), str(folder))
    clip = load_clip(list_frames(str(folder)), 32, 32)
    return clip, ModelConfig(preset="default", width=32, height=32, channels=clip.channels, **TINY)


def test_the_flow_term_pulls_g_s_flow_toward_the_real_motion(tmp_path):
    """On a picture scrolling 0.4 pixels a frame, 20 steps (at a learning rate raised for a
    quick test) with the flow term bring G's flow for the last context frame nearer the
    Lucas-Kanade flow of the real next frame than the same steps without it. Off by default."""
    from core.models import estimate_flow

    clip, mcfg = _scrolling(tmp_path)
    errors = {}
    for weight in (0.0, 1.0):
        tcfg = TrainConfig(
            steps=20, batch_size=4, device="cpu", seed=3, flow_weight=weight, lr_g=5e-3
        )
        tr = Trainer(clip, mcfg, tcfg)
        seq = tr._batch(torch.Generator().manual_seed(0))
        teacher = estimate_flow(seq[:, tr.context - 1], seq[:, tr.context])
        assert float(teacher[:, 0].abs().mean()) > 0.2  # the scroll is seen

        @torch.no_grad()
        def error(tr=tr, seq=seq, teacher=teacher):
            return float((tr.g(seq[:, : tr.context], with_flow=True)[1] - teacher).abs().mean())

        before = error()
        fit(tr)
        errors[weight] = error()
    assert errors[1.0] < 0.85 * errors[0.0] and errors[1.0] < 0.85 * before, errors
    assert TrainConfig().resolved("paper").flow_weight == 0.0
    assert TrainConfig().resolved("default").flow_weight == 0.0  # opt-in (docs/QUALITY.md)


def test_the_warp_term_makes_g_s_flow_alone_carry_the_picture(tmp_path):
    """On a picture scrolling 0.4 pixels a frame, 20 steps with the warp term (and no flow
    term) leave the last context frame warped by G's own flow nearer the real next frame than
    the same steps without it, and nearer than before training. Off by default."""
    from core.models import warp

    clip, mcfg = _scrolling(tmp_path)
    errors = {}
    for weight in (0.0, 10.0):
        tcfg = TrainConfig(
            steps=20, batch_size=4, device="cpu", seed=3, warp_weight=weight, lr_g=5e-3
        )
        tr = Trainer(clip, mcfg, tcfg)
        assert tr.tcfg.flow_weight == 0.0 and tr.tcfg.warp_weight == weight
        seq = tr._batch(torch.Generator().manual_seed(0))
        last, nxt = seq[:, tr.context - 1], seq[:, tr.context]

        @torch.no_grad()
        def error(tr=tr, seq=seq, last=last, nxt=nxt):
            flow = tr.g(seq[:, : tr.context], with_flow=True)[1]
            return float((warp(last, flow) - nxt).abs().mean())

        before = error()
        fit(tr)
        errors[weight] = error()
    assert errors[10.0] < 0.85 * errors[0.0] and errors[10.0] < 0.85 * before, errors
    assert TrainConfig().resolved("paper").warp_weight == 0.0  # the paper's recipe
    assert TrainConfig().resolved("default").warp_weight == 0.0  # opt-in (docs/QUALITY.md)


def test_callback_reports_progress_and_cancel_saves(clip_dir, tmp_path):
    _, _, _, tr = _trainer(clip_dir)
    events = []
    ckpt = tmp_path / "m.safetensors"
    result = fit(tr, str(ckpt), events.append, should_stop=lambda: tr.step_num >= 2)
    assert {k: result[k] for k in ("step", "cancelled", "checkpoint")} == {
        "step": 2,
        "cancelled": True,
        "checkpoint": str(ckpt),
    }
    assert result["validation"]["step"] == 2 and result["recoveries"] == 0
    prog = [e for e in events if e["event"] == "progress"]
    assert [e["step"] for e in prog] == [1, 2]
    assert set(prog[0]["losses"]) == {"loss_d", "loss_s", "loss_g_d", "loss_g_s", "l1"}
    assert set(prog[0]["outputs"]) == {"d_real", "d_fake", "s_real", "s_fake"}
    assert prog[0]["phases"] == ["D", "S", "G_D", "G_S"]
    assert load_checkpoint(str(ckpt)).step == 2


def test_when_progress_is_read_back():
    # log_every=0 (auto): every step on the CPU; on CUDA by time, under torchrun by step.
    cpu = [should_report(s, 50, 0, True, False, 0.0) for s in range(1, 51)]
    assert all(cpu)
    cuda = [s for s in range(1, 51) if should_report(s, 50, 0, False, False, 0.1)]
    assert cuda == [50]  # 0.1 s since the last report: only the final step
    assert should_report(7, 50, 0, False, False, 0.3)
    ranks = [s for s in range(1, 51) if should_report(s, 50, 0, False, True, 99.0)]
    assert ranks == [10, 20, 30, 40, 50]  # the same steps on every rank, whatever the clocks
    assert [s for s in range(1, 51) if should_report(s, 50, 20, False, False, 99.0)] == [20, 40, 50]


def _diverging(trainer, nan_from: int):
    """Trainer.step replaced by one whose losses turn NaN from step ``nan_from`` on; the
    runtime claims to be a GPU, where fit reads losses back only now and then."""
    import types

    def step():
        trainer.step_num += 1
        trainer.last_phases = ["D", "S", "G_D", "G_S"]
        value = float("nan") if trainer.step_num >= nan_from else 0.5
        names = ("loss_d", "loss_s", "loss_g_d", "loss_g_s", "l1")
        names += ("d_real", "d_fake", "s_real", "s_fake")
        return {k: torch.tensor(value) for k in names}

    trainer.step = step
    trainer.rt = types.SimpleNamespace(type="cuda", device=torch.device("cpu"))
    return trainer


def test_a_diverged_model_is_never_saved(clip_dir, tmp_path, monkeypatch):
    import core.train as train_mod

    monkeypatch.setattr(train_mod, "REPORT_INTERVAL_S", 1e9)  # no time-based report
    # A checkpoint is due at step 4, after the losses went NaN at step 3: it is checked first.
    # (guard off: the unguarded path's own check; tests/core/test_guard.py covers rollbacks)
    _, _, _, tr = _trainer(clip_dir, checkpoint_every=4, guard="off")
    tr.tcfg.steps = 10
    ckpt = tmp_path / "a.safetensors"
    with pytest.raises(FloatingPointError, match="diverged at step 4"):
        fit(_diverging(tr, nan_from=3), str(ckpt))
    assert not ckpt.exists()
    # Cancelled between two reports: the last step is checked before the final save.
    _, _, _, tr = _trainer(clip_dir, checkpoint_every=1000, guard="off")
    tr.tcfg.steps = 10
    ckpt = tmp_path / "b.safetensors"
    with pytest.raises(FloatingPointError, match="diverged at step 5"):
        fit(_diverging(tr, nan_from=2), str(ckpt), should_stop=lambda: tr.step_num >= 5)
    assert not ckpt.exists()
    # Healthy losses on the same path: saved, and reported only at checkpoints and the end.
    _, _, _, tr = _trainer(clip_dir, checkpoint_every=4, guard="off")
    tr.tcfg.steps = 10
    events = []
    fit(_diverging(tr, nan_from=99), str(tmp_path / "c.safetensors"), events.append)
    assert [e["step"] for e in events if e["event"] == "progress"] == [4, 8, 10]


def test_checkpoint_round_trip(clip_dir, tmp_path):
    _, _, _, tr = _trainer(clip_dir, "default")
    tr.step()
    path = str(tmp_path / "m.safetensors")
    tr.save(path)
    ck = load_checkpoint(path)
    for n in ("g", "d", "s", "g_ema"):
        ref = getattr(tr, n).state_dict()
        assert set(ck.weights[n]) == set(ref)
        for k, v in ref.items():
            assert torch.equal(ck.weights[n][k], v), (n, k)
    ref_opt = tr.opt_g.state_dict()
    for idx, st in ref_opt["state"].items():
        for k, v in st.items():
            assert torch.equal(ck.optim["opt_g"]["state"][idx][k], v)
    assert ck.optim["opt_g"]["param_groups"][0]["betas"] == ref_opt["param_groups"][0]["betas"]
    assert ck.step == 1 and ck.model_config["preset"] == "default"


@pytest.mark.parametrize("preset", ["paper", "default"])
def test_exact_resume(clip_dir, tmp_path, preset):
    clip, mcfg, tcfg, straight = _trainer(clip_dir, preset)
    fit(straight, None)
    first = Trainer(clip, mcfg, TrainConfig(**{**tcfg.to_dict(), "steps": 2}))
    path = str(tmp_path / "half.safetensors")
    fit(first, path)
    resumed = resume_trainer(clip, path, {"steps": 4})
    assert resumed.step_num == 2
    fit(resumed, None)
    names = ("g", "d", "s") + (("g_ema",) if preset == "default" else ())
    assert (straight.g_ema is not None) == (preset == "default")
    for n in names:
        a, b = getattr(straight, n).state_dict(), getattr(resumed, n).state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), (n, k)


def test_resume_with_other_model_is_refused(clip_dir, tmp_path):
    clip, mcfg, tcfg, tr = _trainer(clip_dir)
    path = str(tmp_path / "m.safetensors")
    tr.save(path)
    other = ModelConfig(**{**mcfg.to_dict(), "width": 64, "height": 64})
    with pytest.raises(ValueError, match="other model settings"):
        Trainer(load_clip(clip.paths, 64, 64), other, tcfg, resume=load_checkpoint(path))


def test_out_of_memory_retries_at_half_batch(clip_dir):
    _, _, _, tr = _trainer(clip_dir)
    real_step, calls = tr.step, []

    def step_that_fails_once():
        calls.append(tr.tcfg.batch_size)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step()

    tr.step = step_that_fails_once
    events = []
    result = fit(tr, None, events.append)
    assert result["step"] == 4 and calls[:2] == [4, 2]
    assert any(e["event"] == "log" and "batch size 2" in e["message"] for e in events)


def test_the_batch_size_is_chosen_for_the_device(clip_dir, tmp_path):
    """Unless given: 8, and 4 for the default preset on a CPU that trains in fp32 (a step of 8
    takes about a second there; 4 makes twice the steps in the same minutes). A given batch
    size, and a checkpoint's on resume, are kept."""
    import torch

    from core.device import Runtime
    from core.train import auto_batch_size

    fp32 = Runtime(torch.device("cpu"), None)
    bf16 = Runtime(torch.device("cpu"), torch.bfloat16)
    gpu = Runtime(torch.device("cuda"), torch.bfloat16)
    assert auto_batch_size("default", fp32) == 4
    assert auto_batch_size("default", bf16) == 8 and auto_batch_size("default", gpu) == 8
    assert auto_batch_size("paper", fp32) == 8  # the paper preset's recipe is one everywhere
    assert TrainConfig().batch_size is None
    assert TrainConfig().resolved("default", fp32).batch_size == 4
    assert TrainConfig(batch_size=6).resolved("default", fp32).batch_size == 6
    clip = load_clip(list_frames(str(clip_dir)), 32, 32)
    mcfg = ModelConfig(preset="default", width=32, height=32, channels=clip.channels, **TINY)
    tr = Trainer(clip, mcfg, TrainConfig(steps=1, device="cpu", precision="fp32"))
    assert tr.tcfg.batch_size == 4
    fit(tr, str(tmp_path / "m.safetensors"))
    saved = load_checkpoint(str(tmp_path / "m.safetensors")).train_config
    assert saved["batch_size"] == 4  # stored resolved: a resume on another machine keeps it
    assert resume_trainer(clip, str(tmp_path / "m.safetensors"), {"steps": 2}).tcfg.batch_size == 4
