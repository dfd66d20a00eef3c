"""Multi-process training (core/distributed.py): two gloo processes on the CPU must train like one
process with the same global batch.

The setup is deterministic: fp32 (bf16 autocast, the default on CPUs with bf16 hardware, rounds
a batch of 2 and a batch of 4 differently), dropout 0 and no DiffAugment, since those draw per-rank random numbers
(independent across ranks by design, so not the numbers one process draws). What remains differs
only in floating-point summation order (a batch of 2 + an all-reduce instead of a batch of 4):
observed, losses agree to ~1e-6 relative, and each weight tensor's 3-step update (its distance
from the initial weights) to ~1e-4 of its size. The tolerances (1e-4 and 1e-3) leave a margin.
Adam divides by the gradient's running RMS, so where a gradient is nearly zero its rounding noise
becomes a full-size step: hence updates are compared norm-wise, relative to their size, and conv
biases that feed a BatchNorm (true gradient exactly zero) are left out.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from core import distributed
from core.data import Clip, Letterbox
from core.models import ModelConfig
from core.procedural import make_clip, write_frames
from core.train import TrainConfig, Trainer, fit

W = H = 32
STEPS, BATCH = 3, 4
LOSS_RTOL, UPDATE_RTOL = 1e-4, 1e-3
# unroll 2 chains two warps of the default generator (bilinear grid_sample): the rounding of a
# half-batch mean then differs more, 1.8e-3 of how far three steps moved one critic weight
UPDATE_RTOL_CASE = {"unroll2": 3e-3}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clip() -> Clip:
    arr = make_clip("bouncing_ball", 12, W, H)  # (N, H, W, C) uint8
    frames = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    return Clip(frames=frames, paths=[], letterbox=Letterbox(W, H, W, H))


# name -> (preset, TrainConfig overrides); unroll 2 calls G's DDP wrapper twice per backward
CASES = {"paper": ("paper", {}), "default": ("default", {}), "unroll2": ("default", {"unroll": 2})}


def _configs(case: str, steps: int = STEPS) -> tuple[ModelConfig, TrainConfig]:
    preset, overrides = CASES[case]
    mcfg = ModelConfig(preset=preset, width=W, height=H, width_mult=0.125, dropout=0.0)
    tcfg = TrainConfig(
        steps=steps, batch_size=BATCH, seed=3, device="cpu", precision="fp32", diffaug="",
        preview_every=0, checkpoint_every=0, **overrides,
    )  # fmt: skip
    return mcfg, tcfg


def _train(preset: str) -> dict:
    """Three steps; the global-batch losses of each and the final weights and BN statistics."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like each rank; also spares a busy CI machine OpenMP spin-waits
    try:
        return _train_steps(preset)
    finally:
        torch.set_num_threads(threads)


def _train_steps(preset: str) -> dict:
    mcfg, tcfg = _configs(preset)
    trainer = Trainer(_clip(), mcfg, tcfg)
    init = {n: {k: v.clone() for k, v in getattr(trainer, n).state_dict().items()} for n in "gds"}
    ctx = distributed.current()
    ddp = torch.nn.parallel.DistributedDataParallel
    wrapped = [isinstance(m, ddp) for m in (trainer._g, trainer._d, trainer._s)]
    frozen = [isinstance(m, ddp) for m in (trainer._g_frozen, trainer._d_frozen, trainer._s_frozen)]
    losses = []
    for _ in range(STEPS):
        out = distributed.mean_over_ranks(trainer.step(), ctx)
        losses.append({k: float(v) for k, v in out.items()})
    states = {n: getattr(trainer, n).state_dict() for n in ("g", "d", "s")}
    states = {n: {k: v.clone() for k, v in s.items()} for n, s in states.items()}
    return {
        "losses": losses,
        "init": init,
        "states": states,
        "skip": _bias_before_batchnorm(trainer),
        "ddp": (wrapped, frozen),
    }


def _bias_before_batchnorm(trainer) -> set[str]:
    """Conv biases that feed a BatchNorm, and that BatchNorm's running mean (which tracks the
    bias): BN removes the bias, so its true gradient is exactly zero and Adam turns the float
    noise left in it into steps of +-lr that no two summation orders share. Not compared."""
    skip = set()
    for net in ("g", "d", "s"):
        mods = dict(getattr(trainer, net).named_modules())
        for name, m in mods.items():
            head, _, idx = name.rpartition(".")
            if not (idx.isdigit() and isinstance(m, torch.nn.Conv2d)):
                continue
            bn = f"{head}.{int(idx) + 1}" if head else str(int(idx) + 1)
            if isinstance(mods.get(bn), torch.nn.BatchNorm2d):
                skip |= {f"{net}.{name}.bias", f"{net}.{bn}.running_mean"}
    return skip


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)  # two processes on two cores
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    ok = False
    try:
        results = {c: _train(c) for c in CASES}
        # fit(): only rank 0 reports and writes its checkpoint.
        mcfg, tcfg = _configs("default", steps=2)
        events: list[dict] = []
        ck = os.path.join(out_dir, f"rank{rank}.safetensors")
        fit(Trainer(_clip(), mcfg, tcfg), ck, events.append)
        results["fit"] = {"events": [e["event"] for e in events], "wrote": os.path.exists(ck)}
        torch.save(results, os.path.join(out_dir, f"result{rank}.pt"))
        ok = True
    finally:
        distributed.shutdown(ok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    out = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    return {r: torch.load(os.path.join(out, f"result{r}.pt")) for r in (0, 1)}


@pytest.mark.parametrize("preset", list(CASES))
def test_two_processes_match_one(two_ranks, preset):
    single = _train(preset)
    assert single["ddp"] == ([False] * 3, [False] * 3)  # one process: plain modules
    for rank in (0, 1):
        multi = two_ranks[rank][preset]
        # each network's own update runs through DistributedDataParallel; frozen uses do not
        assert multi["ddp"] == ([True] * 3, [False] * 3)
        for step, (a, b) in enumerate(zip(single["losses"], multi["losses"])):
            for k in a:
                assert b[k] == pytest.approx(a[k], rel=LOSS_RTOL, abs=1e-6), (rank, step, k)
        for net in ("g", "d", "s"):
            for k, v in single["states"][net].items():
                w = multi["states"][net][k]
                if f"{net}.{k}" in single["skip"]:
                    continue
                if v.is_floating_point():  # relative to how far the 3 steps moved it
                    moved = (v - single["init"][net][k]).norm().item()
                    err = (v - w).norm().item()
                    rtol = UPDATE_RTOL_CASE.get(preset, UPDATE_RTOL)
                    assert err <= rtol * moved + 1e-7, f"{preset} r{rank} {net}.{k}: {err:.1e}"
                else:
                    assert torch.equal(v, w), f"{net}.{k}"


def test_rank0_alone_reports_and_writes(two_ranks):
    assert two_ranks[0]["fit"]["wrote"] and "progress" in two_ranks[0]["fit"]["events"]
    assert "checkpoint" in two_ranks[0]["fit"]["events"]
    assert not two_ranks[1]["fit"]["wrote"] and two_ranks[1]["fit"]["events"] == []


def test_shards_cover_the_global_batch():
    idx = torch.arange(8)
    parts = [
        distributed.shard(idx, distributed.DistContext(rank=r, world_size=4)) for r in range(4)
    ]
    assert torch.equal(torch.cat(parts), idx)
    with pytest.raises(ValueError, match="split evenly"):
        distributed.check_batch(6, distributed.DistContext(rank=0, world_size=4))


def test_global_batchnorm_is_batchnorm_outside_a_group():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(5, eps=1e-3, momentum=0.01)
    gbn = distributed._global_bn(torch.nn.Sequential(bn))[0]
    assert isinstance(gbn, distributed.GlobalBatchNorm2d)
    x = torch.randn(4, 5, 6, 7)
    assert torch.equal(bn(x), gbn(x))
    assert gbn.state_dict().keys() == bn.state_dict().keys()


@pytest.mark.slow
def test_torchrun_cli_two_processes(tmp_path):
    """`torchrun --nproc_per_node=2 -m core train` runs, and rank 0 alone prints and saves."""
    frames = write_frames(make_clip("bouncing_ball", 10, W, H), str(tmp_path / "frames"))
    ck = tmp_path / "model.safetensors"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
        str(_free_port()), "-m", "core", "train", "--frames", os.path.dirname(frames[0]),
        "--out", str(ck), "--steps", "2", "--batch-size", "2", "--width", str(W), "--height",
        str(H), "--width-mult", "0.125", "--device", "cpu", "--preview-every", "0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert ck.exists()
    assert r.stdout.count("finished at step 2") == 1, r.stdout
