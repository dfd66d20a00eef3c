"""Checkpoints: one safetensors file, plain data only, written atomically.

Tensors: ``g.*``, ``d.*``, ``s.*``, ``g_ema.*`` (module weights), ``opt_g.*``, ``opt_d.*``,
``opt_s.*`` (optimizer state, flattened). Metadata (strings): ``format`` (the format name),
``format_version``, ``step``, ``model_config`` / ``train_config`` (JSON), ``optim`` (the
optimizers' param groups, JSON) and ``source`` (the frames' size, JSON).

safetensors holds no code, so loading a checkpoint can never execute anything; a file that is not
safetensors (a pickle, say) is refused with a clear message.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save

FORMAT = "fsgan-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """An unusable checkpoint; the message is one sentence for the user."""


@dataclass
class Checkpoint:
    model_config: dict
    train_config: dict
    step: int
    weights: dict[str, dict[str, torch.Tensor]]  # "g", "d", "s", "g_ema" -> state_dict
    optim: dict[str, dict] = field(default_factory=dict)  # "opt_g", ... -> optimizer state_dict
    source: dict = field(default_factory=dict)  # {"width", "height", "channels"} of the frames


def _flatten_optim(name: str, state: dict, tensors: dict[str, torch.Tensor]) -> dict:
    groups = state["param_groups"]
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{name}.state.{idx}.{key}"] = t.detach().cpu().contiguous()
    return {"param_groups": groups}


def _unflatten_optim(name: str, meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    prefix = f"{name}.state."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, attr = key[len(prefix) :].split(".", 1)
            state.setdefault(int(idx), {})[attr] = value
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def _umask() -> int:
    mask = os.umask(0o022)  # read once at import (changing it is process-wide)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace: a reader sees the old
    file or the new one, never half of one, even if the process is killed or the disk fills.
    The file gets the usual permissions (0666 less the umask), not the temp file's 0600, so a
    render farm account or another artist can read the frames and models."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # Windows: only the read-only flag, which stays off
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def ensure_writable(path: str) -> None:
    """Fail before training, not after it, when the checkpoint's folder cannot be written
    (or the checkpoint path is a folder)."""
    if os.path.isdir(path):
        raise ValueError(
            f"The checkpoint path {path} is a folder; give a file name such as "
            f"{os.path.join(path, 'model.safetensors')}."
        )
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def save_checkpoint(path: str, ckpt: Checkpoint) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for net, sd in ckpt.weights.items():
        for key, value in sd.items():
            tensors[f"{net}.{key}"] = value.detach().cpu().contiguous()
    optim_meta = {name: _flatten_optim(name, sd, tensors) for name, sd in ckpt.optim.items()}
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "step": str(ckpt.step),
        "model_config": json.dumps(ckpt.model_config),
        "train_config": json.dumps(ckpt.train_config),
        "optim": json.dumps(optim_meta),
        "source": json.dumps(ckpt.source),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def read_metadata(path: str) -> dict[str, Any]:
    """The metadata of a checkpoint without loading its tensors (configs, step, source)."""
    return _read_header(path)


def _read_header(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise CheckpointError(f"The checkpoint {path} does not exist.")
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= 100_000_000:
                raise ValueError("no safetensors header")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("bad header")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{os.path.basename(path)} is not a FrameSequenceGAN checkpoint: it is not a "
            f"safetensors file (checkpoints never hold pickled code) ({exc})."
        ) from None
    return _check_meta(path, header.get("__metadata__") or {})


def _check_meta(path: str, meta: dict) -> dict:
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a FrameSequenceGAN checkpoint."
        )
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this version of FrameSequenceGAN "
            f"reads version {FORMAT_VERSION}. Update the add-on, or retrain."
        )
    try:
        return {
            "step": int(meta["step"]),
            "model_config": json.loads(meta["model_config"]),
            "train_config": json.loads(meta["train_config"]),
            "optim": json.loads(meta.get("optim", "{}")),
            "source": json.loads(meta.get("source", "{}")),
        }
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} has damaged metadata ({exc}).") from None


def load_checkpoint(path: str) -> Checkpoint:
    meta = _read_header(path)
    try:
        tensors = st_load_file(path)
    except (OSError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"The checkpoint {path} is damaged ({exc}).") from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    optim_names = set(meta["optim"])
    for key, value in tensors.items():
        net, rest = key.split(".", 1)
        if net not in optim_names:
            weights.setdefault(net, {})[rest] = value
    optim = {name: _unflatten_optim(name, m, tensors) for name, m in meta["optim"].items()}
    for net in ("g",):
        if net not in weights:
            raise CheckpointError(f"{path} holds no generator weights.")
    return Checkpoint(
        model_config=meta["model_config"],
        train_config=meta["train_config"],
        step=meta["step"],
        weights=weights,
        optim=optim,
        source=meta["source"],
    )
