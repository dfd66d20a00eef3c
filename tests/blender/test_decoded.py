"""Frames Blender decodes (movie strips, OpenEXR image strips), then train and extend as usual."""

from __future__ import annotations

import os

import pytest

from .conftest import bpy_params


@pytest.mark.parametrize("python", bpy_params())
def test_movie_and_exr_strips_decode_train_extend(python, blender, built_zip, frames16, tmp_path):
    run = blender(python, "bl_decoded.py", "--zip", built_zip, "--frames", frames16,
                  "--work", tmp_path)  # fmt: skip

    d = run.stage("decode")
    assert d["type"] == "MOVIE" and d["problem"] is None, d
    # 16 frames from frame 10, trimmed by 2 at the start and 3 at the end: content 2-12 shows.
    assert d["final"] == [12, 23] and d["content"] == 16 and d["visible"] == 11
    assert d["resolution"] == [64, 36]
    # Training frames: scaled down to fit 32x32, aspect kept; decoded once, then cached.
    assert d["train_count"] == 11 and d["train_sizes"] == [[32, 18]]
    assert d["cached"] is True
    # Extend context at full size: the last 8 visible frames (sources 6-13), in order, and
    # (lossless H.264 through YUV) within a couple of levels of the source pixels.
    assert d["end_sizes"] == [[64, 36]]
    assert [m["source"] for m in d["end_context"]] == list(range(6, 14))
    assert max(m["mean_abs"] for m in d["end_context"]) < 2.0, d["end_context"]
    assert [m["source"] for m in d["playhead_context"]] == [3, 4, 5, 6]  # frame 15 shows 6
    assert d["scenes"] == ["Scene"]  # the scratch scene is gone
    labels = [e["text"] for e in d["panel"] if e["call"] == "label" and "text" in e]
    assert "Frames: 11 visible of 16" in labels and "Movie: clip.mp4" in labels, labels
    assert "Resolution: 64 x 36" in labels, labels
    assert "Decoded by Blender first, then cached" in labels, labels

    c = run.stage("chunks")
    assert c["progress"] == [[4, 11], [8, 11], [11, 11]]
    assert c["runs"] == [[1, 2], [3, 3], [5, 6], [7, 7], [9, 9]]
    assert c["next_chunk"] == [8, 16, 2, 1, 1, 6]

    t = run.stage("task")
    assert t["steps"] == [[0, 11], [4, 11], [8, 11], [11, 11]] and t["left"] == []
    assert t["cached_total"] == 0  # a second Train finds every frame decoded
    assert "is decoding the frames of 'clip' for training" in t["train_poll"]
    labels = [e.get("text") for e in t["panel"]]
    assert "Decoding 'clip' for training" in labels, labels
    bars = [e for e in t["panel"] + t["status"] if e["call"] == "progress"]
    assert [b["text"] for b in bars] == ["11 / 11 frames", "Decoding clip: 11 / 11 frames"]
    assert t["cancel"]["ret"] == ["FINISHED"] and t["cancelled"] is True
    assert t["gone"] == "The strip 'spare' is gone; nothing was trained."
    assert t["after_reenable"] is None

    # Reversed playback is what the strip shows: the first visible frame is source 14.
    assert [m["source"] for m in run.stage("reversed")["frames"]] == [14, 13, 12]

    shown = run.stage("as_shown")
    # Strobe 3 from the strip's start (content 0): contents 2-12 show sources 1,4,4,4,7,...
    assert shown["strobe_sources"] == [1, 4, 4, 4, 7, 7, 7, 10, 10, 10, 13], shown
    assert max(shown["strobe_vs_timeline"]) < 0.5, shown
    assert shown["flipped_needs_decode"] is True and shown["flipped_count"] == 14
    # Flips are left to the strip (the seam stage): the frames are the timeline's, mirrored.
    assert max(shown["flipped_vs_timeline"]) < 0.5, shown
    assert max(shown["flipped_vs_unmirrored"]) > 5.0, shown
    assert shown["faster"] == [int(i * 1.25) for i in range(24)]  # 0, 1, 2, 3, 5, ...
    assert shown["slower"] == [int(i * 0.8 + 1e-6) for i in range(30)]  # 0, 0, 1, 2, 3, 4, 4
    assert shown["retimed"] is True
    assert shown["faster_reversed"] == [29 - int((23 - i) * 1.25 + 1e-6) for i in range(24)]

    e = run.stage("extend")
    assert e["train"]["error"] is None and e["train"]["ret"] == ["FINISHED"], e["train"]
    assert e["checkpoint"] and os.path.isfile(e["checkpoint"])
    assert e["extend"]["error"] is None and e["extend"]["ret"] == ["FINISHED"], e["extend"]
    new = e["new"]
    assert new["type"] == "IMAGE" and len(new["files"]) == 3
    assert new["start"] == e["movie_end"] == 23
    assert new["channel"] == 3  # channel 2 is taken by the colour strip from frame 23
    assert new["colorspace"] == "sRGB"
    assert e["sizes"] == [[64, 36]] * 3  # the movie's size
    # Extend's decode (the UI's chunk per timer event): the 11 visible frames at the movie's
    # size, 4 per step; shown in the Extend panel (not Training's), refusing another job; then
    # nothing is decoded again when the job starts.
    dec = e["decoding"]
    assert dec["chunk"] == 4
    assert dec["steps"] == [[0, 11], [4, 11], [8, 11], [11, 11]], dec
    assert "is decoding the frames of 'clip' for extending" in dec["poll"], dec
    labels = [x.get("text") for x in dec["panel"]]
    assert "Decoding 'clip' for extending" in labels, labels
    bars = [x["text"] for x in dec["panel"] if x["call"] == "progress"]
    assert bars == ["11 / 11 frames"], dec["panel"]
    assert not any("Decoding" in str(x.get("text")) for x in dec["train_panel"]), dec
    assert dec["cached_task"] is True and dec["no_loops_task"] is True
    assert dec["cached_files"] == 11 and dec["decoded_again"] == [], dec

    x = run.stage("exr")
    assert x["needs_decode"] is True and x["png_needs_decode"] is False
    assert x["colorspace"] != "sRGB"  # Blender reads EXR as linear: the decode converts it
    assert x["header_size"] == [64, 36]  # from the EXR header, without loading the image
    assert x["bad_header_size"] is None
    # The last 8 of the 12 visible frames (sources 5-12), through a half-float linear round trip.
    assert [m["source"] for m in x["context"]] == list(range(5, 13))
    assert max(m["mean_abs"] for m in x["context"]) < 2.0, x["context"]
    assert x["train"]["error"] is None and x["extend"]["error"] is None, x
    assert x["new"]["start"] == 212 and len(x["new"]["files"]) == 2
    assert x["new"]["colorspace"] == "sRGB"
    assert all(f.endswith(".png") for f in x["new"]["files"])

    d = run.stage("damaged")
    assert d["faded_black"] == [False] * 4 + [True] + [False] * 3  # shot_0005 is black: kept
    message = "of strip 'broken' is cut short; replace it, or trim it out of the strip."
    assert d["error"] and "shot_0003.exr" in d["error"] and message in d["error"], d
    assert "shot_0003.exr" in d["train"]["error"] and message in d["train"]["error"], d
    assert "shot_0003.exr" in d["task_error"] and message in d["task_error"], d
    assert d["strobed"] == [1, 1, 3, 3, 5, 5, 7, 7]  # the damaged shot_0004 never shows ...
    assert "shot_0004.exr" in d["unstrobed_error"]  # ... until the strobe is off
    assert d["reversed_ok"] == [8, 7, 6]  # trimmed and reversed, the damaged file is not shown

    c = run.stage("cache")
    assert c["before"][0] >= 4 and c["before"][1] > 0, c  # several sizes of two strips
    mb = f"{c['before'][1] / 2**20:.1f} MB"
    assert any(label.startswith("Decoded frames") and mb in label for label in c["labels"]), c
    assert c["cleared"]["ret"] == ["FINISHED"] and c["after"] == [0, 0], c
    assert c["again"] is True

    r = run.stage("refused")
    assert (
        "uses a movie file relative to the .blend file (//clip.mp4), which is not saved"
        in (r["relative"])
    )
    assert "The movie file" in r["gone"] and "gone.mp4 of strip 'gone' is missing" in r["gone"]
    assert r["decode_gone"] == r["gone"]
    assert (
        "damaged.mp4 of strip 'damaged': the file is damaged or in a format"
        in (r["decode_damaged"])
    )
    assert r["train_gone"]["ret"] == ["CANCELLED"] and "is missing" in r["train_gone"]["error"]

    streams = run.stage("streams")
    assert "Blender cannot open video stream 3 of the movie" in streams["stream_problem"]
    assert "set its Stream Index to a stream the file has" in streams["stream_problem"]
    assert (
        "replaced.mp4 now holds 6 frames, but the strip 'replaced' was made for 16"
        in (streams["replaced"])
    ), streams
    assert "Reload Strips and Adjust Length" in streams["replaced"]

    # Transparency survives decoding: a flipped RGBA sprite and an RGBA OpenEXR decode to RGBA
    # PNGs with their transparent background (training and Extend's context), and Extend from
    # the sprite writes RGBA frames; an opaque picture stored as RGBA stays RGB (no edge alpha).
    alpha = run.stage("alpha")
    for name in ("sprite", "sprite_exr"):
        case = alpha[name]
        assert case["needs_decode"] and case["frames"] == [[32, 0.0], [32, 0.0]], (name, case)
        assert case["context"] == [32, 0.0], (name, case)
    assert alpha["sprite"]["extend"] == {"ret": ["FINISHED"], "error": None}, alpha
    assert alpha["sprite"]["generated"] == [32, 32], alpha
    solid = alpha["solid"]
    assert solid["frames"] == [[24, 1.0], [24, 1.0]] and solid["context"] == [24, 1.0], solid
    assert solid["transparent"] is False
    # A sprite whose first frame is an opaque title card is still transparent (first, middle
    # and last files are looked at), whatever the trims; a 600x300 RGBA EXR too (the check
    # scales a copy down).
    card = alpha["title_card_first"]
    assert card["transparent"] is True and card["frames"][1] == [32, 0.0], card
    assert card["frames"][0][0] == 32 and card["trimmed_same_folder"] is True, card
    big = alpha["big_exr"]
    assert big["transparent"] is True and big["context"][0] == 32, big
    # A movie with alpha (QuickTime Animation) decodes to RGBA and Extend from it writes RGBA
    # (until 2026-12-01 movies counted as opaque); H.264 has no alpha and stays RGB.
    movie = alpha["movie_alpha"]
    assert movie["transparent"] is True and movie["count"] == 6, movie
    assert movie["frames"] == [[32, 0.0], [32, 0.0]] and movie["context"] == [32, 0.0], movie
    assert movie["train"] == movie["extend"] == {"ret": ["FINISHED"], "error": None}, movie
    assert movie["generated"] == [32, 32], movie
    h264 = alpha["movie_h264"]
    assert h264["transparent"] is False and h264["frames"] == [[24, 1.0], [24, 1.0]], h264

    # At the cut, the source's last frame as the worker reads it, inserted as a new strip,
    # renders as the source does: flipped, moved, turned and cropped; soft alpha from an EXR.
    seam = run.stage("seam")
    flipped, soft = seam["flipped"], seam["soft_exr"]
    assert flipped["needs_decode"] is False and flipped["new_flip"] == [True, True], seam
    assert soft["needs_decode"] is True and soft["new_alpha"] == "STRAIGHT", seam
    # (The max: 8-bit straight alpha is coarse where alpha is low: 6-14/255 at a few soft-edge
    # pixels, 4.5-5.0.)
    for case in (flipped, soft):
        assert case["mean"] < 0.5 and case["max"] < 24.0, seam
    assert soft["other_alpha_mean"] > 1.0, seam  # premultiplied, as the EXR: edges too bright

    # Float RGB TIFF frames, which the worker cannot read, are decoded by Blender as shown.
    tiff = run.stage("tiff")
    assert tiff["needs_decode"] is True and tiff["decoded"] == [".png"] * 4, tiff
    assert max(tiff["vs_timeline"]) < 0.5 and tiff["stripes_move"][0] > 5.0, tiff
    assert tiff["eight_bit_needs_decode"] is False, tiff
