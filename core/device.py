"""Device and precision, decided once and passed around (nothing below hard-codes "cuda")."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

DEVICES = ("auto", "cuda", "mps", "cpu")


class DeviceError(ValueError):
    """The requested device is not available; the message says what is."""


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # bf16 autocast on CUDA and bf16-capable CPUs, else None

    @property
    def type(self) -> str:
        return self.device.type

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return self.device.type


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def cpu_has_bf16() -> bool:
    """The CPU multiplies bf16 in hardware (Intel AMX, or AVX-512 BF16 as on AMD Zen 4+), where
    bf16 autocast pays (docs/PERFORMANCE.md: 1.5-3.1x per training step on an AMX Xeon); without
    it bf16 is emulated and slower. torch exposes the checks as private helpers of torch.cpu, so
    any failure to ask means no."""
    try:
        cpu = torch.cpu
        return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_device(name: str = "auto", precision: str = "auto") -> Runtime:
    """cuda > mps > cpu for 'auto'; an explicit device that is missing is an error, not a
    silent fallback, so a user never trains for an hour on the CPU by accident."""
    name = (name or "auto").lower()
    if name not in DEVICES and not name.startswith("cuda:"):
        raise DeviceError(f"Unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            "CUDA was requested but this PyTorch sees no CUDA GPU; choose Auto or CPU."
        )
    if name == "mps" and not mps_available():
        raise DeviceError("MPS was requested but is not available here; choose Auto or CPU.")
    device = torch.device(name)
    if precision == "auto":  # bf16 autocast where the hardware multiplies bf16 natively
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
        precision = "bf16" if native else "fp32"
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}.get(precision, "bad")
    if amp == "bad":
        raise DeviceError(f"Unknown precision {precision!r}; choose auto, bf16, fp16 or fp32.")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device=device, amp_dtype=amp)


def doctor() -> dict:
    """What the worker would run on: for the add-on's preferences (`python -m core doctor`)."""
    import platform
    import sys

    info: dict = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_path": os.path.dirname(os.path.abspath(torch.__file__)),
        "cuda_build": torch.version.cuda,
        "rocm_build": getattr(torch.version, "hip", None),
        "cuda_available": torch.cuda.is_available(),
        "mps_available": mps_available(),
        "threads": torch.get_num_threads(),
    }
    info["build"] = "rocm" if info["rocm_build"] else "cuda" if info["cuda_build"] else "cpu"
    rt = pick_device("auto")
    info["device"] = rt.type
    info["precision"] = "bf16" if rt.amp_dtype == torch.bfloat16 else "fp32"
    if rt.type == "cuda":
        props = torch.cuda.get_device_properties(rt.device)
        info["gpu_name"] = props.name
        info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
    return info
