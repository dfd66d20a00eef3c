import os
import pickle

import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, read_metadata
from core.data import list_frames, load_clip
from core.models import ModelConfig
from core.train import TrainConfig, Trainer

from .conftest import TINY


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def test_pickle_payload_is_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"g": Payload()}))
    with pytest.raises(CheckpointError, match="not a FrameSequenceGAN checkpoint"):
        load_checkpoint(str(evil))
    # torch.save files (zip + pickle) are refused the same way
    torch.save({"g": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    assert not (tmp_path / "PWNED_MARKER").exists()


def _saved(tmp_path, clip_dir):
    clip = load_clip(list_frames(str(clip_dir)), 32, 32)
    tr = Trainer(
        clip,
        ModelConfig(preset="paper", width=32, height=32, **TINY),
        TrainConfig(steps=1, batch_size=2, device="cpu"),
    )
    path = str(tmp_path / "m.safetensors")
    tr.save(path)
    return path


def test_unknown_format_version_is_clear(tmp_path, clip_dir):
    from safetensors.torch import load_file, safe_open, save_file

    path = _saved(tmp_path, clip_dir)
    with safe_open(path, "pt") as f:
        meta = dict(f.metadata())
    meta["format_version"] = "99"
    other = str(tmp_path / "future.safetensors")
    save_file(load_file(path), other, metadata=meta)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(other)


def test_missing_and_truncated_files(tmp_path, clip_dir):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.safetensors"))
    path = _saved(tmp_path, clip_dir)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(str(cut))
    assert read_metadata(path)["model_config"]["preset"] == "paper"


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, clip_dir):
    path = _saved(tmp_path, clip_dir)
    assert sorted(os.listdir(tmp_path)) == ["clip", "m.safetensors"]
    assert os.path.getsize(path) > 0
