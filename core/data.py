"""Frame loading: an ordered list of image files -> a uint8 clip at the training resolution.

Frames are stored as uint8 (N, C, H, W) on the training device when they fit, and converted to
float in [-1, 1] per batch (``to_float``), so a 1,000-frame strip costs its size in bytes.

Aspect ratio: frames are scaled to fit inside the training resolution and *letterboxed*
(padded with black, or transparent for RGBA) rather than cropped, so nothing the artist drew is
thrown away and generated frames can be scaled back to the source size exactly
(``Letterbox.undo``). With ``TrainConfig.fit_aspect`` (opt-in) the training size is fitted to
the frames' aspect first (``fitted_size``), so the bars are a few pixels wide at most.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".tga")
UNSUPPORTED_EXTS = {
    ".exr": "OpenEXR frames are not supported yet: render or convert the strip to PNG first.",
    ".hdr": "Radiance HDR frames are not supported: convert the strip to PNG first.",
    ".dpx": "DPX frames are not supported: convert the strip to PNG first.",
    ".cin": "Cineon frames are not supported: convert the strip to PNG first.",
}


class FrameError(ValueError):
    """Bad frame input; the message is one sentence for the user."""


class Stopped(Exception):
    """A reader's ``should_stop`` said stop (a Cancel) before it read every frame; nothing is
    wrong with the frames."""


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise Stopped


def list_frames(spec: str | list[str]) -> list[str]:
    """Resolve a folder, a glob pattern, a text file listing paths, or a list, in order."""
    if isinstance(spec, (list, tuple)):
        return [str(p) for p in spec]
    if os.path.isdir(spec):
        files = sorted(
            os.path.join(spec, f) for f in os.listdir(spec) if f.lower().endswith(IMAGE_EXTS)
        )
        if not files:
            raise FrameError(f"The folder {spec} holds no image frames ({', '.join(IMAGE_EXTS)}).")
        return files
    if any(ch in spec for ch in "*?["):
        files = sorted(glob.glob(spec))
        if not files:
            raise FrameError(f"No files match {spec}.")
        return files
    if os.path.isfile(spec) and spec.lower().endswith((".txt", ".lst", ".list")):
        base = os.path.dirname(os.path.abspath(spec))
        with open(spec, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        return [ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines]
    if not os.path.exists(spec):
        raise FrameError(f"{spec} does not exist.")
    raise FrameError(f"{spec} is not a folder, a glob pattern or a .txt list of frames.")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'RGB' or 'RGBA' (8 bits per channel)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        if img.mode == "F" and a.max() <= 1.0 + 1e-6:
            hi = 1.0  # a float image in [0, 1], as renderers and compositors write them
        elif img.mode.startswith("I;16") or a.max() > 255:
            hi = 65535.0  # 16-bit integers (a 32-bit "I" TIFF above 255 holds 16-bit data)
        else:
            hi = 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return img.convert("RGBA")
    if img.mode == "CMYK":
        return img.convert("RGB")
    return img.convert("RGB")


def read_frame(path: str, exif: bool = True) -> Image.Image:
    """Open one frame as 8-bit RGB or RGBA, with a one-sentence error for anything wrong.
    ``exif``: turn it upright as its EXIF orientation says (a camera's portrait JPEG); False:
    the pixels as stored, which is what Blender shows (it ignores that tag)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in UNSUPPORTED_EXTS:
        raise FrameError(f"{os.path.basename(path)}: {UNSUPPORTED_EXTS[ext]}")
    if not os.path.exists(path):
        raise FrameError(f"The frame {path} is missing.")
    try:
        with Image.open(path) as img:
            img.load()
            if exif:
                img = ImageOps.exif_transpose(img)
            return _to_8bit(img)
    except UnidentifiedImageError:
        if ext in (".tif", ".tiff"):
            raise FrameError(
                f"{path} is a TIFF this reader cannot open (32-bit float or integer colour, or "
                "an unusual compression); save the frames as 16-bit TIFF or PNG. (In Blender, "
                "the add-on has Blender decode such a strip.)"
            ) from None
        raise FrameError(f"{path} is not an image Pillow can read.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise FrameError(f"The frame {path} is damaged or truncated ({exc}).") from None


FIT_MULTIPLE = 8  # each side of a fitted training size is a multiple of this (the U-Net halves it)


def fitted_size(
    src_w: int, src_h: int, width: int, height: int, multiple: int = FIT_MULTIPLE
) -> tuple[int, int]:
    """The training size for frames of ``src_w`` x ``src_h`` given a ``width`` x ``height``
    setting: about as many pixels, at the frames' own aspect ratio, each side a multiple of
    ``multiple`` (at least twice it). Frames of the setting's own aspect keep it exactly.

    Letterboxed into the setting as it is, a square strip at 128x72 fills 72x72 of it (44 % of
    the pixels, and of the training time, go to black bars) and a 9:16 phone video 40x72;
    fitted, they train at 96x96 and 72x128: 1.8x and 3.2x as many of the picture's pixels for
    the same cost. Measured on real clips in docs/QUALITY.md ("Fit Strip Aspect"): the
    1-step prediction gains, the 10-frame continuation on average does not."""
    if src_w * height == src_h * width:
        return width, height
    area = width * height
    w = (area * src_w / src_h) ** 0.5

    def side(v: float) -> int:
        return max(2 * multiple, multiple * round(v / multiple))

    return side(w), side(area / w)


@dataclass
class Letterbox:
    """How a source frame sits inside the training frame: scaled by the same factor on both
    axes, centred, padded on the remaining sides."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int

    @property
    def inner(self) -> tuple[int, int, int, int]:
        """(left, top, width, height) of the picture inside the training frame."""
        s = min(self.dst_w / self.src_w, self.dst_h / self.src_h)
        w = max(1, min(self.dst_w, round(self.src_w * s)))
        h = max(1, min(self.dst_h, round(self.src_h * s)))
        return (self.dst_w - w) // 2, (self.dst_h - h) // 2, w, h

    def apply(self, img: Image.Image) -> Image.Image:
        left, top, w, h = self.inner
        fill = (0, 0, 0, 0) if img.mode == "RGBA" else (0, 0, 0)
        out = Image.new(img.mode, (self.dst_w, self.dst_h), fill)
        out.paste(img.resize((w, h), Image.Resampling.LANCZOS), (left, top))
        return out

    def undo(self, img: Image.Image) -> Image.Image:
        """Training-resolution frame -> source size (the padding is cut away)."""
        left, top, w, h = self.inner
        return img.crop((left, top, left + w, top + h)).resize(
            (self.src_w, self.src_h), Image.Resampling.LANCZOS
        )


@dataclass
class Clip:
    frames: torch.Tensor  # (N, C, H, W) uint8
    paths: list[str]
    letterbox: Letterbox

    @property
    def channels(self) -> int:
        return self.frames.shape[1]

    def __len__(self) -> int:
        return self.frames.shape[0]


def load_clip(
    paths: list[str],
    width: int,
    height: int,
    channels: int | None = None,
    min_frames: int = 1,
    exif: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> Clip:
    """Read frames in order and letterbox them to (width, height): (N, C, H, W) uint8 on the CPU.

    Frames are streamed: each is read, scaled and dropped, so a strip of 4K frames costs only
    its size at the training resolution. ``channels`` None: 4 if any frame has transparency.
    ``exif``: as in ``read_frame``. ``should_stop`` is asked before each frame; ``Stopped``
    when it says stop.
    """
    if len(paths) < min_frames:
        raise FrameError(f"Training needs at least {min_frames} frames; got {len(paths)}.")
    out = np.empty((len(paths), height, width, 4), np.uint8)
    size = None
    box = None
    translucent = False
    for i, path in enumerate(paths):
        _check_stop(should_stop)
        img = read_frame(path, exif)
        if size is None:
            size = img.size
            box = Letterbox(size[0], size[1], width, height)
        else:
            _check_same_size(size, img, path)
        if img.mode == "RGBA":
            translucent = translucent or img.getchannel("A").getextrema()[0] < 255
        out[i] = np.asarray(box.apply(img.convert("RGBA")))
    channels = channels or (4 if translucent else 3)
    frames = torch.from_numpy(out[..., :channels]).permute(0, 3, 1, 2).contiguous()
    return Clip(frames=frames, paths=list(paths), letterbox=box)


def _check_same_size(size: tuple[int, int], img: Image.Image, path: str) -> None:
    if img.size != size:
        raise FrameError(
            f"The frames have different sizes ({size[0]}x{size[1]} and {img.size[0]}x"
            f"{img.size[1]} at {os.path.basename(path)}); use frames of one size."
        )


def load_full_size(
    paths: list[str],
    channels: int,
    exif: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Frames at their own size, (N, C, H, W) uint8: the context a warp model moves (only a few
    frames: a 4K frame is 33 MB as uint8). ``should_stop``: as in ``load_clip``."""
    out = []
    size = None
    for path in paths:
        _check_stop(should_stop)
        img = read_frame(path, exif)
        size = size or img.size
        _check_same_size(size, img, path)
        a = np.asarray(img.convert("RGBA"))[..., :channels]
        out.append(torch.from_numpy(a.copy()).permute(2, 0, 1))
    return torch.stack(out)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the paper's linear scaling."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5).round_().to(torch.uint8)


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """(C, H, W) float in [-1, 1] -> PIL image (RGB or RGBA)."""
    a = to_uint8(x.detach().cpu()).permute(1, 2, 0).numpy()
    return Image.fromarray(a, "RGBA" if a.shape[2] == 4 else "RGB")
