import json

import pytest
import torch

from core.models import ModelConfig, build_models, count_keras_style, count_trainable

from .conftest import run_cli

PAPER_COUNTS = {
    "generator": 1929859,
    "frame_discriminator": 681697,
    "sequence_discriminator": 423425,
}
KERAS_COUNTS = {
    "generator": 1931011,
    "frame_discriminator": 682273,
    "sequence_discriminator": 423937,
}


def test_paper_parameter_counts_at_144x256():
    g, d, s = build_models(ModelConfig(preset="paper", width=256, height=144, channels=3))
    got = {"generator": g, "frame_discriminator": d, "sequence_discriminator": s}
    assert {k: count_trainable(m) for k, m in got.items()} == PAPER_COUNTS
    assert {k: count_keras_style(m) for k, m in got.items()} == KERAS_COUNTS


def test_summary_json_cli():
    r = run_cli("summary", "--preset", "paper", "--width", 256, "--height", 144, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert {k: data[k] for k in PAPER_COUNTS} == PAPER_COUNTS
    assert data["keras_style"] == KERAS_COUNTS


def test_summary_table_lists_paper_layers():
    r = run_cli("summary", "--preset", "paper")
    assert r.returncode == 0, r.stderr
    assert "Conv2D                (144, 256, 64)             9,472" in r.stdout
    assert "Dense                 (1,)                      73,729" in r.stdout


@pytest.mark.parametrize("preset", ["paper", "default"])
@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("hw", [(72, 128), (36, 64)])
def test_shapes(preset, channels, hw):
    h, w = hw
    cfg = ModelConfig(preset=preset, width=w, height=h, channels=channels, width_mult=0.125)
    g, d, s = build_models(cfg)
    ctx = torch.rand(2, cfg.context, channels, h, w) * 2 - 1
    out = g(ctx)
    assert out.shape == (2, channels, h, w)
    assert out.min() >= -1 and out.max() <= 1
    assert d(out).shape[0] == 2 and s(out - ctx[:, -1], ctx[:, -1]).shape[0] == 2


def test_paper_dense_follows_resolution():
    _, d, _ = build_models(ModelConfig(preset="paper", width=128, height=72))
    assert d.dense.in_features == 18 * 32 * 32  # ceil(ceil(72/2)/2) x ceil(ceil(128/2)/2) x 32


def test_paper_init_is_glorot_uniform():
    g, _, _ = build_models(ModelConfig(preset="paper", width=64, height=36))
    conv = g.net[0]  # 3 -> 64, 7x7
    bound = (6 / (7 * 7 * 3 + 7 * 7 * 64)) ** 0.5
    assert conv.weight.abs().max() <= bound
    assert conv.weight.abs().max() > 0.9 * bound  # uniform fills the range
    assert torch.all(conv.bias == 0)


def test_bad_config_is_clear():
    with pytest.raises(ValueError, match="Unknown preset"):
        ModelConfig(preset="huge")
    with pytest.raises(ValueError, match="channels"):
        ModelConfig(channels=2)
