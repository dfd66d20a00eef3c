"""Command line: ``python -m core {summary,train,extend,worker,demo,doctor}``.

Model and training options are generated from the ModelConfig and TrainConfig dataclasses
(their ``help`` metadata is the help text), so the CLI, the worker's job files and the
checkpoints all speak the same field names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time

from . import __version__
from .checkpoint import CheckpointError
from .data import FrameError
from .device import DeviceError
from .guard import TrainingCollapsed
from .models import ModelConfig
from .protocol import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_OOM, JobError
from .train import TrainConfig

USER_ERRORS = (
    FrameError, CheckpointError, DeviceError, JobError, ValueError, FileNotFoundError,
    TrainingCollapsed, FloatingPointError,
)  # fmt: skip
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def add_config_args(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    """One option per dataclass field; options not given stay out of the namespace, so a
    resumed run changes only what the user asked for."""
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ = _TYPES[str(f.type).split("|")[0].strip()]
        default = f.default if f.default is not None else "preset's choice"
        kwargs = dict(
            dest=f.name,
            default=argparse.SUPPRESS,
            help=f"{f.metadata.get('help', '')} (default: {default})",
        )
        flag = "--" + f.name.replace("_", "-")
        if typ is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            group.add_argument(flag, type=typ, metavar=f.name.upper(), **kwargs)


def split_settings(settings: dict) -> tuple[dict, dict]:
    """Split flat settings into ModelConfig and TrainConfig keyword arguments."""
    m_names = {f.name for f in dataclasses.fields(ModelConfig)}
    t_names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(settings) - m_names - t_names
    if unknown:
        raise JobError(f"Unknown training settings: {', '.join(sorted(unknown))}.")
    return (
        {k: v for k, v in settings.items() if k in m_names},
        {k: v for k, v in settings.items() if k in t_names},
    )


def describe_os_error(exc: OSError) -> str:
    """One sentence for a file-system failure (disk full, read-only folder, permissions)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return f"A file could not be read or written{where}: {exc.strerror or exc}."


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


OOM_HINT = (
    "The device ran out of memory: lower the batch size (--batch-size), the training "
    "resolution (--width/--height) or the width multiplier (--width-mult), or use the CPU."
)


# --- commands --------------------------------------------------------------------------------


def cmd_summary(args) -> int:
    from .models import build_models, layer_table, summary

    cfg = ModelConfig(
        **{k: getattr(args, k) for k in ("width", "height", "channels")},
        preset=args.preset,
        width_mult=args.width_mult,
    )
    counts = summary(cfg)
    if args.json:
        print(json.dumps(counts))
        return EXIT_OK
    import torch

    g, d, s = build_models(cfg)
    frame = torch.zeros(1, cfg.channels, cfg.height, cfg.width)
    ctx = torch.zeros(1, cfg.context, cfg.channels, cfg.height, cfg.width)
    for title, net, inputs in (
        ("Generator", g, (ctx,)),
        ("Frame Discriminator", d, (frame,)),
        ("Sequence Discriminator", s, (frame, frame)),
    ):
        print(f"\n{title} ({cfg.preset}, {cfg.height}x{cfg.width}x{cfg.channels})")
        print(f"{'Layer (type)':<22}{'Output Shape':<22}{'Param #':>10}")
        print("-" * 54)
        for name, shape, n in layer_table(net, *inputs):
            print(f"{name:<22}{str(shape):<22}{n:>10,}")
    print("\nTrainable parameters (Keras-style, with BatchNorm moving statistics):")
    for k in ("generator", "frame_discriminator", "sequence_discriminator"):
        print(f"  {k:<24}{counts[k]:>12,}  ({counts['keras_style'][k]:,})")
    return EXIT_OK


def _progress_bar(total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


def run_training(
    frames, out, settings: dict, resume: bool, callback, should_stop, preview_dir=None, exif=True
) -> dict:
    """Shared by `train` and the worker: load frames, build or resume a trainer, fit.
    ``exif``: turn JPEGs upright by their EXIF orientation (False: as stored, as Blender)."""
    from .checkpoint import ensure_writable
    from .data import list_frames, load_clip
    from .train import Trainer, fit, resume_trainer

    paths = list_frames(frames)
    m_kw, t_kw = split_settings(settings)
    ensure_writable(out)
    if len(paths) < 3:
        raise FrameError(f"Training needs at least 3 frames; got {len(paths)}.")
    if resume and os.path.exists(out):
        from .checkpoint import read_metadata

        meta = read_metadata(out)
        mc = ModelConfig.from_dict(meta["model_config"])
        fitted = TrainConfig.from_dict({**meta["train_config"], **t_kw}).fit_aspect
        m_kw = fit_training_size(m_kw, paths[0], exif, fitted, kept=(mc.width, mc.height))
        clash = {k: v for k, v in m_kw.items() if getattr(mc, k) != v}
        if clash:
            was = ", ".join(f"{k}={getattr(mc, k)}" for k in clash)
            raise ValueError(
                f"The checkpoint {os.path.basename(out)} was trained with other model settings "
                f"({was}); resume with the same settings, or write a new checkpoint."
            )
        tcfg = TrainConfig.from_dict({**meta["train_config"], **t_kw})
        rt, memory = _checked_runtime(mc, tcfg, len(paths))
        clip = load_clip(paths, mc.width, mc.height, channels=mc.channels, exif=exif)
        trainer = resume_trainer(clip, out, t_kw, runtime=rt)
    else:
        tcfg = TrainConfig(**t_kw)
        m_kw = fit_training_size(m_kw, paths[0], exif, tcfg.fit_aspect)
        probe = ModelConfig(**m_kw)
        rt, memory = _checked_runtime(probe, tcfg, len(paths))  # before reading the frames
        clip = load_clip(paths, probe.width, probe.height, channels=m_kw.get("channels"), exif=exif)
        mcfg = ModelConfig(**{**m_kw, "channels": clip.channels})
        trainer = Trainer(clip, mcfg, tcfg, runtime=rt)
    callback(
        {
            "event": "started",
            "kind": "train",
            "device": trainer.rt.describe(),
            "pid": os.getpid(),
            "step": trainer.step_num,
            "total": trainer.tcfg.steps,
            "model_config": trainer.mcfg.to_dict(),
            "train_config": trainer.tcfg.to_dict(),
            "memory": memory,
        }
    )
    if preview_dir:
        os.makedirs(preview_dir, exist_ok=True)
    return fit(trainer, out, callback, should_stop, preview_dir)


def fit_training_size(
    m_kw: dict, first_frame: str, exif: bool, fit: bool, kept: tuple[int, int] | None = None
) -> dict:
    """``m_kw`` with its training width and height fitted to the first frame's aspect
    (``core.data.fitted_size``) when ``fit``. Resuming (``kept``: the checkpoint's size), the
    size as given is kept when it is the checkpoint's: a model trained letterboxed continues
    letterboxed when the option is turned on only for the resume."""
    from .data import fitted_size, read_frame

    if not fit:
        return m_kw
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    size = (m_kw.get("width", defaults["width"]), m_kw.get("height", defaults["height"]))
    if kept is not None and size == kept:
        return m_kw
    w, h = fitted_size(*read_frame(first_frame, exif).size, *size)
    return {**m_kw, "width": w, "height": h}


def _checked_runtime(mcfg: ModelConfig, tcfg: TrainConfig, n_frames: int):
    """Pick the device and refuse, before allocating anything, a job that would not fit."""
    from .device import pick_device
    from .estimate import available_memory, check_fits, estimate_training_memory

    rt = pick_device(tcfg.device, tcfg.precision)
    t = tcfg.resolved(mcfg.preset, rt)
    est = estimate_training_memory(mcfg, t.batch_size, t.unroll, n_frames, bool(t.ema))
    check_fits(est, rt.device, t.batch_size)
    memory = {**est, "available_bytes": available_memory(rt.device), "device": rt.device.type}
    return rt, memory


class StopFlag:
    """Set by SIGTERM/SIGINT or by the appearance of a cancel file."""

    def __init__(self, cancel_file: str | None = None):
        self.flag = False
        self.cancel_file = cancel_file

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        self.flag = True

    def watch_stdin(self) -> None:
        """Stop when stdin reaches end-of-file: the parent (Blender) holds the other end of
        the pipe, and the OS closes it when the parent exits or is killed, so a worker never
        outlives Blender as an orphan. It still saves its checkpoint before it ends."""
        import threading

        def watch() -> None:
            # os.read on the descriptor, not sys.stdin's buffered reader: a daemon thread
            # blocked inside the buffer's lock aborts the interpreter at exit.
            try:
                fd = sys.stdin.fileno()
                while os.read(fd, 4096):
                    pass
            except (OSError, ValueError):
                pass
            self.flag = True

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()

    def __call__(self) -> bool:
        if self.cancel_file and os.path.exists(self.cancel_file):
            self.flag = True
        return self.flag


def cmd_train(args) -> int:
    from . import distributed

    settings = {k: v for k, v in vars(args).items() if k in _config_names()}
    # Under `torchrun --nproc_per_node=N -m core train` join the process group (rank 0 reports).
    ctx = distributed.init_from_env(settings.get("device", "auto"))
    bar = None
    stop = StopFlag()
    stop.install()

    def callback(ev):
        nonlocal bar
        if not ctx.is_main:
            return
        if ev["event"] == "started":
            print(f"training on {ev['device']}: {ev['model_config']}", file=sys.stderr)
            bar = _progress_bar(ev["total"], ev["step"])
        elif ev["event"] == "progress" and bar is not None:
            bar.n = ev["step"]
            bar.set_postfix(
                {k.replace("loss_", ""): f"{v:.3f}" for k, v in ev["losses"].items()}, refresh=True
            )
        elif ev["event"] == "log":  # a rollback, an OOM retry, the state kept at the end
            (bar.write if bar is not None else print)(ev["message"], file=sys.stderr)

    ok = False
    try:
        result = run_training(
            args.frames, args.out, settings, args.resume, callback, stop, args.preview_dir
        )
        ok = True
    finally:
        distributed.shutdown(ok)
    if bar is not None:
        bar.close()
    state = "cancelled at" if result["cancelled"] else "finished at"
    if ctx.is_main:
        val = result.get("validation")
        held = (
            f"; held-out error {val['l1']:.4f} (copying the last frame: {val['copy_last_l1']:.4f})"
            if val
            else ""
        )
        print(f"{state} step {result['step']}; checkpoint: {args.out}{held}")
    # Stopped (Ctrl-C, SIGTERM): the checkpoint is saved, but the run did not finish, so
    # `train && extend` and schedulers must not take it for success.
    return 130 if result["cancelled"] else EXIT_OK


def cmd_extend(args) -> int:
    from .data import IMAGE_EXTS
    from .generate import extend
    from .loops import HISTORY

    start = args.start
    if not os.path.isfile(start):
        raise FrameError(f"The start frame {start} does not exist.")
    folder = os.path.dirname(os.path.abspath(start))
    siblings = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))
    name = os.path.basename(start)
    # Context for models that see earlier frames, and for finding a loop: --from's folder, in
    # name order, up to --from.
    context = (
        [os.path.join(folder, f) for f in siblings[: siblings.index(name) + 1]]
        if name in siblings
        else [start]
    )

    def said_loop(period: int) -> None:
        print(
            f"the frames up to {name} repeat a {period}-frame cycle: continuing it "
            "(--no-loop generates with the model instead)"
        )

    def said_gain(gain: float, calibrated: bool) -> None:
        if calibrated:
            print(f"motion gain {gain:g} (calibrated on the frames up to {name})")
        elif args.motion_gain is None:
            print(f"motion gain 1 (too few frames up to {name} to calibrate it)")

    paths = extend(
        args.checkpoint,
        context[-HISTORY:],
        args.count,
        args.out,
        prefix=args.prefix,
        start_number=args.start_number,
        size=args.size,
        device=args.device,
        loop=not args.no_loop,
        on_loop=said_loop,
        motion_gain=args.motion_gain,
        on_gain=said_gain,
    )
    print(f"wrote {len(paths)} frames to {args.out}")
    return EXIT_OK


def _gain_setting(value) -> float | None:
    """A job's ``motion_gain``: None (or absent) calibrates it, else a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JobError(f"The extend setting motion_gain must be a number or null, not {value!r}.")
    try:
        return float(value)
    except OverflowError:  # a JSON integer too large for a float
        raise JobError("The extend setting motion_gain is out of range.") from None


def cmd_worker(args) -> int:
    from .generate import extend
    from .protocol import emit, read_job

    try:
        job = read_job(args.job)
    except JobError as exc:
        emit("error", message=str(exc), code="bad_input", hint="")
        return EXIT_BAD_INPUT
    stop = StopFlag(job.cancel_file)
    stop.install()
    if args.parent_watch:
        stop.watch_stdin()
    try:
        if job.kind == "train":

            def callback(ev):  # noqa: E306
                emit(ev.pop("event"), **ev)

            r = run_training(
                job.frames,
                job.checkpoint,
                job.train,
                job.resume,
                callback,
                stop,
                job.preview_dir,
                exif=job.orientation == "exif",
            )
            emit(
                "done",
                kind="train",
                cancelled=r["cancelled"],
                checkpoint=job.checkpoint,
                frames=[],
                step=r["step"],
            )
        else:
            ext = dict(job.extend)
            known = {
                "count", "out_dir", "prefix", "start_number", "size", "device", "loop",
                "motion_gain",
            }  # fmt: skip
            unknown = set(ext) - known
            if unknown or "out_dir" not in ext:
                raise JobError(
                    "The extend settings need 'out_dir' and take only count, out_dir, "
                    "prefix, start_number, size, device, loop and motion_gain."
                )
            loops, gains = [], []  # gains: (gain, calibrated)
            from .device import pick_device

            rt = pick_device(ext.get("device", "auto"))
            emit("started", kind="extend", device=rt.describe(), pid=os.getpid())
            paths = extend(
                job.checkpoint,
                job.frames,
                int(ext.get("count", 16)),
                ext["out_dir"],
                prefix=ext.get("prefix", "frame_"),
                start_number=int(ext.get("start_number", 1)),
                size=ext.get("size", "source"),
                on_frame=lambda i, n, p: emit("frame", index=i, total=n, path=p),
                should_stop=stop,
                runtime=rt,
                exif=job.orientation == "exif",
                loop=bool(ext.get("loop", True)),
                on_loop=loops.append,
                motion_gain=_gain_setting(ext.get("motion_gain")),
                on_gain=lambda gain, calibrated: gains.append((gain, calibrated)),
            )
            emit(
                "done",
                kind="extend",
                cancelled=stop.flag,
                checkpoint=job.checkpoint,
                frames=paths,
                step=None,
                loop=loops[0] if loops else None,
                motion_gain=gains[0][0] if gains else None,
                motion_gain_calibrated=bool(gains and gains[0][1]),
            )
        return EXIT_OK
    except USER_ERRORS as exc:
        from .estimate import MemoryEstimateError

        if isinstance(exc, MemoryEstimateError):
            emit("error", message=str(exc), code="out_of_memory", hint="")
            return EXIT_OOM
        emit("error", message=str(exc), code="bad_input", hint="")
        return EXIT_BAD_INPUT
    except OSError as exc:
        emit("error", message=describe_os_error(exc), code="io", hint="")
        return EXIT_BAD_INPUT
    except Exception as exc:  # reported as an event: the add-on must never see a bare traceback
        if is_oom(exc):
            emit("error", message=OOM_HINT, code="out_of_memory", hint="")
            return EXIT_OOM
        import traceback

        traceback.print_exc(file=sys.stderr)
        emit(
            "error",
            message=f"The worker failed: {type(exc).__name__}: {exc}",
            code="internal",
            hint="",
        )
        return EXIT_INTERNAL


def cmd_doctor(args) -> int:
    from .device import doctor

    info = doctor()
    info["core_version"] = __version__
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>16}: {v}")
    return EXIT_OK


def cmd_estimate(args) -> int:
    from .data import fitted_size
    from .device import pick_device
    from .estimate import GB, available_memory, estimate_training_memory

    settings = {k: v for k, v in vars(args).items() if k in _config_names()}
    m_kw, t_kw = split_settings(settings)
    mcfg = ModelConfig(**m_kw)
    tcfg = TrainConfig(**t_kw)
    if args.source:
        try:
            sw, sh = (int(v) for v in args.source.lower().split("x"))
        except ValueError:
            raise ValueError(
                f"--source takes WIDTHxHEIGHT, e.g. 1920x1080, not {args.source!r}."
            ) from None
        if tcfg.fit_aspect:  # trains at the source's aspect, as `train` would
            w, h = fitted_size(sw, sh, mcfg.width, mcfg.height)
            mcfg = dataclasses.replace(mcfg, width=w, height=h)
    rt = pick_device(tcfg.device, tcfg.precision)
    tcfg = tcfg.resolved(mcfg.preset, rt)
    est = estimate_training_memory(mcfg, tcfg.batch_size, tcfg.unroll, args.frames, bool(tcfg.ema))
    if args.source:
        from .estimate import estimate_generation_memory

        gen = estimate_generation_memory(mcfg, sw, sh)
        est["generate_bytes"] = gen["total_bytes"]
        est["generate_size"] = f"{sw}x{sh}"
    est["device"] = rt.type
    est["batch_size"] = tcfg.batch_size
    est["available_bytes"] = available_memory(rt.device)
    est["fits"] = (
        est["available_bytes"] is None or est["total_bytes"] <= 0.9 * est["available_bytes"]
    )
    if args.json:
        print(json.dumps(est))
    else:
        for k, v in est.items():
            shown = f"{v / GB:.2f} GB" if k.endswith("bytes") and v is not None else v
            print(f"{k:>18}: {shown}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from .demo import run_demo

    t0 = time.perf_counter()
    result = run_demo(args.out, steps=args.steps, device=args.device)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    for k, v in result.items():
        print(f"  {k}: {v}")
    return EXIT_OK


def cmd_bench(args) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "bench")):
        raise FrameError("The benchmarks live in the source tree's bench/ folder; run from there.")
    sys.path.insert(0, root)
    import importlib

    mod = importlib.import_module(f"bench.{args.which}")
    return int(mod.main(args.rest) or 0)


def _config_names() -> set[str]:
    return {f.name for f in dataclasses.fields(ModelConfig)} | {
        f.name for f in dataclasses.fields(TrainConfig)
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core",
        description="FrameSequenceGAN: train a next-frame GAN on an animation and extend it.",
    )
    p.add_argument("--version", action="version", version=f"fsgan core {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("summary", help="parameter counts and layer tables of a preset")
    s.add_argument("--preset", default="paper", help="'paper' or 'default' (default: paper)")
    s.add_argument("--width", type=int, default=256, help="frame width (default: 256)")
    s.add_argument("--height", type=int, default=144, help="frame height (default: 144)")
    s.add_argument("--channels", type=int, default=3, help="3 (RGB) or 4 (RGBA) (default: 3)")
    s.add_argument("--width-mult", type=float, default=1.0, help="channel multiplier (default: 1)")
    s.add_argument("--json", action="store_true", help="print trainable counts as JSON")
    s.set_defaults(func=cmd_summary)

    t = sub.add_parser("train", help="train on a sequence of frames")
    t.add_argument(
        "--frames",
        required=True,
        help="a folder of frames, a glob pattern ('shots/*.png') or a .txt list of paths, in order",
    )
    t.add_argument("--out", required=True, help="checkpoint file to write (.safetensors)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from --out if it exists (same model; only the options you give "
        "change, e.g. a larger --steps)",
    )
    t.add_argument("--preview-dir", default=None, help="folder for preview rollout PNGs")
    add_config_args(t, ModelConfig)
    add_config_args(t, TrainConfig)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("extend", help="generate frames that continue an animation")
    e.add_argument("--checkpoint", required=True, help="a checkpoint written by 'train'")
    e.add_argument(
        "--from",
        dest="start",
        required=True,
        help="the start frame; models that need earlier frames take them from its "
        "folder, in name order",
    )
    e.add_argument("--count", type=int, default=16, help="frames to generate (default: 16)")
    e.add_argument("--out", required=True, help="folder for the generated PNGs")
    e.add_argument(
        "--size",
        choices=("source", "train"),
        default="source",
        help="'source': the start frame's size; 'train': the training resolution",
    )
    e.add_argument("--prefix", default="frame_", help="file name prefix (default: frame_)")
    e.add_argument("--start-number", type=int, default=1, help="first file number (default: 1)")
    e.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (default: auto)")
    e.add_argument(
        "--no-loop",
        action="store_true",
        help="generate with the model even where the frames up to --from repeat a cycle "
        "(by default a cycle is continued as it is)",
    )
    e.add_argument(
        "--motion-gain",
        type=float,
        default=None,
        metavar="G",
        help="multiply the model's motion by G for frames at the source's size (1 = as "
        "trained); by default G is calibrated on the frames up to --from (the gain whose "
        "continuation of the last 6 of them, --from included, matches them best)",
    )
    e.set_defaults(func=cmd_extend)

    w = sub.add_parser("worker", help="run a job file and print JSON events (for the add-on)")
    w.add_argument("--job", required=True, help="the job file (see core/protocol.py)")
    w.add_argument(
        "--parent-watch",
        action="store_true",
        help="end the job (saving its checkpoint) when stdin closes, i.e. when the parent exits",
    )
    w.set_defaults(func=cmd_worker)

    est = sub.add_parser("estimate", help="estimate the memory a training job needs")
    est.add_argument("--frames", type=int, required=True, help="number of frames in the clip")
    est.add_argument("--json", action="store_true", help="print one JSON object")
    est.add_argument(
        "--source",
        help="also estimate extending frames of this size, WIDTHxHEIGHT (e.g. 1920x1080): "
        "'generate_bytes'; the training size is fitted to its aspect unless --no-fit-aspect",
    )
    add_config_args(est, ModelConfig)
    add_config_args(est, TrainConfig)
    est.set_defaults(func=cmd_estimate)

    d = sub.add_parser("demo", help="the built-in default: procedural clip -> train -> extend")
    d.add_argument("--out", default="fsgan_demo", help="output folder (default: fsgan_demo)")
    d.add_argument("--steps", type=int, default=None, help="training steps (default: demo's own)")
    d.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (default: auto)")
    d.set_defaults(func=cmd_demo)

    doc = sub.add_parser(
        "doctor", help="report Python, PyTorch and the device the worker would use"
    )
    doc.add_argument("--json", action="store_true", help="print one JSON object")
    doc.set_defaults(func=cmd_doctor)

    b = sub.add_parser("bench", help="benchmarks from the source tree: quality or speed")
    b.add_argument("which", choices=("quality", "speed"), help="which benchmark")
    b.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if is_oom(exc):
            print(f"error: {OOM_HINT}", file=sys.stderr)
            return EXIT_OOM
        raise
