import json
import os
import subprocess
import sys

from PIL import Image

from .conftest import ROOT, TINY_ARGS, run_cli


def test_train_then_extend_writes_frames(clip_dir, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    r = run_cli("train", "--frames", clip_dir, "--out", ckpt, "--steps", 3, *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    assert ckpt.exists()
    out = tmp_path / "gen"
    r = run_cli(
        "extend",
        "--checkpoint",
        ckpt,
        "--from",
        clip_dir / "frame_0016.png",
        "--count",
        5,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(out))
    assert files == [f"frame_{i:04d}.png" for i in range(1, 6)]
    assert Image.open(out / files[0]).size == (32, 32)


def test_extend_train_size_and_source_size(clip_dir, tmp_path):
    """Frames of another aspect come back at the source size, or at the training size."""
    from core.procedural import make_clip, write_frames

    src = tmp_path / "wide"
    write_frames(make_clip("pendulum", 8, 48, 24), str(src))
    ckpt = tmp_path / "m.safetensors"
    assert (
        run_cli("train", "--frames", src, "--out", ckpt, "--steps", 1, *TINY_ARGS).returncode == 0
    )
    for size, expect in (("source", (48, 24)), ("train", (32, 32))):
        out = tmp_path / size
        r = run_cli(
            "extend",
            "--checkpoint",
            ckpt,
            "--from",
            src / "frame_0008.png",
            "--count",
            2,
            "--out",
            out,
            "--size",
            size,
            "--device",
            "cpu",
        )
        assert r.returncode == 0, r.stderr
        assert Image.open(out / "frame_0001.png").size == expect


def test_fit_aspect_trains_at_the_frames_aspect(tmp_path):
    """--fit-aspect: --width/--height set about how many pixels train and the size follows
    the frames' aspect (a 2:1 strip at 32x32 trains at 48x24, no letterbox bars); without it
    they are letterboxed into 32x32. Either checkpoint resumes at its own size, also when the
    option is given only on resuming."""
    from core.checkpoint import read_metadata
    from core.procedural import make_clip, write_frames

    src = tmp_path / "wide"
    write_frames(make_clip("pendulum", 8, 96, 48), str(src))
    fitted, boxed = tmp_path / "fitted.safetensors", tmp_path / "boxed.safetensors"
    for ckpt, extra in ((fitted, ["--fit-aspect"]), (boxed, [])):
        r = run_cli("train", "--frames", src, "--out", ckpt, "--steps", 1, *TINY_ARGS, *extra)
        assert r.returncode == 0, r.stderr

    def size(path):
        meta = read_metadata(str(path))
        return meta["model_config"]["width"], meta["model_config"]["height"], meta["step"]

    assert size(fitted) == (48, 24, 1) and size(boxed) == (32, 32, 1)
    for ckpt in (fitted, boxed):  # one step more; the boxed one with the option turned on
        extra = ["--fit-aspect"] if ckpt == boxed else []
        r = run_cli("train", "--frames", src, "--out", ckpt, "--steps", 2, "--resume",
                    *TINY_ARGS, *extra)  # fmt: skip
        assert r.returncode == 0, r.stderr
    assert size(fitted) == (48, 24, 2) and size(boxed) == (32, 32, 2)
    out = tmp_path / "gen"
    r = run_cli("extend", "--checkpoint", fitted, "--from", src / "frame_0008.png", "--count", 1,
                "--out", out, "--size", "train", "--device", "cpu")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert Image.open(out / "frame_0001.png").size == (48, 24)
    for extra, want in ((["--fit-aspect"], "48x24"), ([], "32x32")):
        est = run_cli("estimate", "--frames", 8, "--source", "96x48", "--json", *TINY_ARGS, *extra)
        assert est.returncode == 0, est.stderr
        assert json.loads(est.stdout.splitlines()[-1])["train_size"] == want


def test_resume_continues_to_more_steps(clip_dir, tmp_path):
    from core.checkpoint import read_metadata

    ckpt = tmp_path / "m.safetensors"
    assert (
        run_cli("train", "--frames", clip_dir, "--out", ckpt, "--steps", 2, *TINY_ARGS).returncode
        == 0
    )
    r = run_cli(
        "train", "--frames", clip_dir, "--out", ckpt, "--steps", 3, "--resume", "--device", "cpu"
    )
    assert r.returncode == 0, r.stderr
    assert read_metadata(str(ckpt))["step"] == 3


def test_bad_input_is_one_line_and_exit_2(tmp_path, clip_dir):
    cases = [
        ["train", "--frames", tmp_path / "missing", "--out", tmp_path / "m.safetensors"],
        ["train", "--frames", clip_dir / "frame_000[12].png", "--out", tmp_path / "m.safetensors"],
        [
            "extend",
            "--checkpoint",
            tmp_path / "none.safetensors",
            "--from",
            clip_dir / "frame_0001.png",
            "--out",
            tmp_path / "o",
        ],
    ]
    for args in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert "at least 3 frames" in run_cli(*cases[1]).stderr


def test_help_for_every_option():
    r = run_cli("train", "--help")
    assert r.returncode == 0
    for opt in (
        "--frames",
        "--steps",
        "--preset",
        "--width",
        "--height",
        "--device",
        "--seed",
        "--resume",
        "--batch-size",
        "--l1-weight",
    ):
        assert opt in r.stdout
    assert "(default:" in r.stdout


def test_worker_job_events(clip_dir, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    job = {
        "version": 1,
        "kind": "train",
        "frames": sorted(str(p) for p in clip_dir.iterdir()),
        "checkpoint": str(ckpt),
        "train": {
            "preset": "default",
            "steps": 2,
            "width": 32,
            "height": 32,
            "width_mult": 0.125,
            "batch_size": 2,
            "device": "cpu",
            "preview_every": 1,
        },
        "preview_dir": str(tmp_path / "prev"),
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    r = run_cli("worker", "--job", tmp_path / "job.json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    memory = events[0]["memory"]  # the estimate the worker checked, for the add-on's panel
    assert memory["device"] == "cpu" and memory["total_bytes"] > 0
    assert memory["available_bytes"] > memory["total_bytes"]
    assert kinds.count("progress") == 2 and "sample" in kinds and "checkpoint" in kinds
    assert os.path.exists([e for e in events if e["event"] == "sample"][-1]["path"])
    job2 = {
        "kind": "extend",
        "frames": job["frames"][-2:],
        "checkpoint": str(ckpt),
        "extend": {"count": 3, "out_dir": str(tmp_path / "ext"), "device": "cpu"},
    }
    (tmp_path / "job2.json").write_text(json.dumps(job2))
    r = run_cli("worker", "--job", tmp_path / "job2.json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.splitlines()[-1])
    assert done["event"] == "done" and len(done["frames"]) == 3
    # As the add-on sends it: frames read as stored (EXIF orientation ignored, as in Blender).
    # A portrait-tagged JPEG context gives frames of its stored size, not turned upright.
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    tagged = []
    for i, src in enumerate(job["frames"][-2:]):
        tagged.append(str(tmp_path / f"tagged_{i}.jpg"))
        Image.open(src).convert("RGB").resize((48, 24)).save(tagged[-1], exif=exif)
    for orientation, size in (("stored", (48, 24)), ("exif", (24, 48))):
        job3 = {
            **job2,
            "frames": tagged,
            "orientation": orientation,
            "extend": {**job2["extend"], "count": 1, "out_dir": str(tmp_path / orientation)},
        }
        (tmp_path / "job3.json").write_text(json.dumps(job3))
        r = run_cli("worker", "--job", tmp_path / "job3.json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout.splitlines()[-1])["frames"][0]
        assert Image.open(out).size == size, orientation
    bad = {"kind": "train", "frames": [], "checkpoint": "x"}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    r = run_cli("worker", "--job", tmp_path / "bad.json")
    assert r.returncode == 2
    assert json.loads(r.stdout)["event"] == "error"


def test_import_core_needs_no_bpy():
    code = (
        "import sys, importlib\n"
        "sys.modules['bpy'] = None  # any 'import bpy' now raises ImportError\n"
        "for m in ('core', 'core.models', 'core.data', 'core.train', 'core.generate',\n"
        "          'core.checkpoint', 'core.protocol', 'core.cli', 'core.demo'):\n"
        "    importlib.import_module(m)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_job_that_cannot_fit_is_refused_before_it_starts(clip_dir, tmp_path):
    r = run_cli(
        "train",
        "--frames",
        clip_dir,
        "--out",
        tmp_path / "m.safetensors",
        "--width",
        7680,
        "--height",
        4320,
        "--batch-size",
        64,
        "--preset",
        "paper",
    )
    assert r.returncode == 2 and "needs about" in r.stderr and "batch size" in r.stderr
    assert not (tmp_path / "m.safetensors").exists()
    r = run_cli(
        "estimate", "--frames", 1000, "--preset", "paper", "--width", 256, "--height", 144, "--json"
    )
    est = json.loads(r.stdout)
    assert est["frames_bytes"] == 1000 * 3 * 144 * 256
    assert est["total_bytes"] > est["frames_bytes"] + est["activations_bytes"]
    assert est["batch_size"] == 8  # the paper preset's, everywhere
    # the default preset's batch size is the one training would choose on this device
    args = ("estimate", "--frames", 100, "--width", 128, "--height", 72, "--device", "cpu")
    fp32 = json.loads(run_cli(*args, "--precision", "fp32", "--json").stdout)
    given = json.loads(run_cli(*args, "--precision", "fp32", "--batch-size", 8, "--json").stdout)
    assert fp32["batch_size"] == 4 and given["batch_size"] == 8
    assert fp32["activations_bytes"] * 2 == given["activations_bytes"]


def test_read_only_output_folder_is_a_clear_error(clip_dir, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permission bits: use a path under a file
            target = tmp_path / "afile" / "m.safetensors"
            (tmp_path / "afile").write_text("not a folder")
        else:
            target = ro / "m.safetensors"
        r = run_cli("train", "--frames", clip_dir, "--out", target, "--steps", 1, *TINY_ARGS)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    finally:
        ro.chmod(0o700)
