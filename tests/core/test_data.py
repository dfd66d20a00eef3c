import numpy as np
import pytest
from PIL import Image

from core.data import FrameError, Letterbox, fitted_size, list_frames, load_clip, read_frame
from tests.blender.bl_scripts._tiff import write_float_tiff


def _rgb(w=40, h=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".bmp", ".webp", ".tga"])
def test_formats(tmp_path, ext):
    p = tmp_path / f"f{ext}"
    Image.fromarray(_rgb()).save(p)
    img = read_frame(str(p))
    assert img.mode == "RGB" and img.size == (40, 20)


def test_modes(tmp_path):
    a16 = (np.arange(20 * 40, dtype=np.uint16).reshape(20, 40) * 80).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    Image.fromarray(_rgb()[..., 0]).save(tmp_path / "g8.png")
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "pal.png")
    rgba = np.dstack([_rgb(), np.full((20, 40), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert read_frame(str(tmp_path / "g16.png")).mode == "RGB"
    px = np.asarray(read_frame(str(tmp_path / "g16.png")))
    assert px[-1, -1, 0] == round(int(a16[-1, -1]) / 65535 * 255)
    assert read_frame(str(tmp_path / "g8.png")).mode == "RGB"
    assert read_frame(str(tmp_path / "pal.png")).mode == "RGB"
    assert read_frame(str(tmp_path / "a.png")).mode == "RGBA"
    assert read_frame(str(tmp_path / "cmyk.jpg")).mode == "RGB"


def test_rgba_clip_keeps_alpha_and_letterboxes(tmp_path):
    paths = []
    for i in range(3):
        rgba = np.dstack([_rgb(seed=i), np.full((20, 40), 128, np.uint8)])
        p = tmp_path / f"{i}.png"
        Image.fromarray(rgba, "RGBA").save(p)
        paths.append(str(p))
    clip = load_clip(paths, 32, 32)
    assert clip.frames.shape == (3, 4, 32, 32) and clip.frames.dtype.is_floating_point is False
    assert clip.letterbox.inner == (0, 8, 32, 16)  # 2:1 picture centred, 8 px bars
    assert int(clip.frames[0, 3, 0, 0]) == 0  # transparent bars
    assert int(clip.frames[0, 3, 16, 16]) == 128


def test_letterbox_undo_restores_source_size():
    box = Letterbox(40, 20, 32, 32)
    img = box.apply(Image.fromarray(_rgb()))
    assert img.size == (32, 32) and box.undo(img).size == (40, 20)


@pytest.mark.parametrize(
    "src, setting, want",
    [
        ((1920, 1080), (128, 72), (128, 72)),  # the setting's own aspect: kept exactly
        ((256, 144), (112, 63), (112, 63)),  # 63 is no multiple of 8: still kept
        ((256, 256), (128, 72), (96, 96)),  # square: 72x72 letterboxed before
        ((1080, 1920), (128, 72), (72, 128)),  # a 9:16 phone video: 40x72 before
        ((160, 120), (128, 72), (112, 80)),  # 4:3
        ((4000, 100), (128, 72), (608, 16)),  # a strip 40x as wide: at least 2x the multiple
    ],
)
def test_fitted_size_follows_the_frames_aspect(src, setting, want):
    w, h = fitted_size(*src, *setting)
    assert (w, h) == want
    if want != setting and src[0] / src[1] < 10:
        assert w % 8 == 0 and h % 8 == 0
        assert abs(w * h / (setting[0] * setting[1]) - 1) < 0.1  # about the same pixels
        assert abs((w / h) / (src[0] / src[1]) - 1) < 0.1  # at the frames' aspect
        box = Letterbox(*src, w, h)
        assert box.inner[2] * box.inner[3] >= 0.9 * w * h  # bars of a few pixels at most


def test_bad_input_messages(tmp_path):
    with pytest.raises(FrameError, match="does not exist"):
        list_frames(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameError, match="no image frames"):
        list_frames(str(tmp_path / "empty"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(FrameError):
        read_frame(str(bad))
    good = tmp_path / "good.png"
    Image.fromarray(_rgb(64, 64)).save(good)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(FrameError, match="damaged or truncated"):
        read_frame(str(trunc))
    with pytest.raises(FrameError, match="OpenEXR"):
        read_frame(str(tmp_path / "x.exr"))
    wide = tmp_path / "float_rgb.tif"
    write_float_tiff(str(wide), np.zeros((8, 8, 3), np.float32))
    with pytest.raises(FrameError, match="a TIFF this reader cannot open"):
        read_frame(str(wide))
    other = tmp_path / "other.png"
    Image.fromarray(_rgb(30, 30)).save(other)
    with pytest.raises(FrameError, match="different sizes"):
        load_clip([str(good), str(other)], 32, 32)


def test_exif_orientation_applied_or_kept_as_stored(tmp_path):
    """A portrait camera JPEG (stored 64x36, EXIF orientation 6): the CLI turns it upright;
    jobs from Blender read it as stored, which is what Blender's timeline shows."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    paths = []
    for i in range(3):
        img = Image.new("RGB", (64, 36), (200, 30 + 40 * i, 20))
        img.paste((255, 255, 255), (0, 0, 16, 8))  # a mark in the stored top-left corner
        path = tmp_path / f"f_{i}.jpg"
        img.save(path, exif=exif, quality=95)
        paths.append(str(path))
    assert read_frame(paths[0]).size == (36, 64)
    stored = read_frame(paths[0], exif=False)
    assert stored.size == (64, 36)
    assert np.asarray(stored)[2, 2].min() > 200  # the mark is where it was stored
    clip = load_clip(paths, 64, 36, exif=False)
    assert clip.letterbox.src_w == 64 and clip.letterbox.src_h == 36
    assert load_clip(paths, 64, 36).letterbox.src_w == 36  # upright: letterboxed portrait


@pytest.mark.parametrize(
    "mode, scale",
    [("F", 1.0), ("F", 255.0), ("I;16", 65535.0), ("I", 65535.0), ("I", 255.0)],
)
def test_float_and_16_bit_tiffs_keep_their_values(tmp_path, mode, scale):
    """A float TIFF in [0, 1] loaded black before (it was read as 0-255)."""
    import numpy as np
    from PIL import Image

    from core.data import read_frame

    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float64)[None].repeat(8, 0)  # (8, 64)
    vals = ramp * scale
    if mode == "F":
        img = Image.fromarray(vals.astype(np.float32), "F")
    elif mode == "I;16":
        img = Image.fromarray(vals.round().astype(np.uint16))  # mode I;16
    else:
        img = Image.fromarray(vals.round().astype(np.int32), "I")
    path = tmp_path / f"f_{mode.replace(';', '')}_{int(scale)}.tif"
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == mode  # the file really is of that kind
    got = np.asarray(read_frame(str(path)))[..., 0].astype(np.float64) / 255.0
    assert np.abs(got - ramp).max() <= 1.0 / 255.0 + 1e-9
