"""Train on a named strip of a .blend, extend it, and save the file: no UI needed.

In Blender:
    blender -b file.blend --python scripts/headless_extend.py -- --strip NAME --count 48 [--steps 500]
With the ``bpy`` module from PyPI:
    python scripts/headless_extend.py --blend file.blend --strip NAME --count 48 [--steps 500]

It uses the installed FrameSequenceGAN extension when it is enabled, else registers the add-on
from this source tree. The worker runs in Blender's Python (``sys.executable``) unless the
add-on's preference or the FSGAN_PYTHON environment variable names another one with PyTorch.
``--steps 0`` skips training and extends with the strip's existing checkpoint. Exit status: 0
done, 1 failed (the reason is printed as one line starting with "error:"), 130 interrupted
(Ctrl-C: training saves its checkpoint; nothing is extended or saved).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

MODULE_MODE = "bpy" not in sys.modules  # inside Blender, bpy is imported before the script
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="headless_extend.py", description=__doc__.split("\n\n")[0].strip()
    )
    p.add_argument("--blend", help="the .blend to open (needed with the bpy module)")
    p.add_argument("--strip", required=True, help="name of the image strip to train on and extend")
    p.add_argument("--scene", help="scene name (default: the file's active scene)")
    p.add_argument("--count", type=int, default=48, help="frames to generate (default: 48)")
    p.add_argument(
        "--steps", type=int, default=None, help="training steps; 0 skips training (default: panel)"
    )
    p.add_argument(
        "--minutes",
        type=float,
        help="training time limit in minutes; 0: no limit, the steps decide (default: panel)",
    )
    p.add_argument("--preset", choices=("default", "paper"), help="model preset")
    p.add_argument("--width", type=int, help="training width in pixels")
    p.add_argument("--height", type=int, help="training height in pixels")
    p.add_argument(
        "--device", choices=("auto", "cuda", "mps", "cpu"), help="device to train and generate on"
    )
    p.add_argument(
        "--fit-aspect",
        action="store_true",
        help="train at the strip's own aspect ratio (the panel's Fit Strip Aspect)",
    )
    p.add_argument(
        "--flow-guidance",
        action="store_true",
        help="train with the flow term (the panel's Optical Flow Guidance; camera footage)",
    )
    p.add_argument("--model-width", type=float, help="channel multiplier of the networks")
    p.add_argument("--batch-size", type=int, help="frame pairs per training step")
    p.add_argument("--resume", action="store_true", help="continue the strip's checkpoint")
    p.add_argument(
        "--start", choices=("end", "playhead"), default="end", help="continue from (default: end)"
    )
    p.add_argument("--frame", type=int, help="playhead frame for --start playhead")
    p.add_argument(
        "--no-loop",
        action="store_true",
        help="generate with the model even where the strip repeats a cycle (default: the "
        "cycle is continued)",
    )
    p.add_argument(
        "--motion-gain",
        type=float,
        help="the factor on the model's motion, 0.1-4 (1 = as trained; default: calibrated on "
        "the strip's last frames)",
    )
    p.add_argument("--output-dir", help="folder for generated frames (a subfolder per strip)")
    p.add_argument("--model-dir", help="folder for new checkpoints")
    p.add_argument("--save-as", help="save to this .blend instead of overwriting the opened one")
    p.add_argument("--no-save", action="store_true", help="do not save the .blend")
    args = p.parse_args(argv)
    limits = {"count": 1, "steps": 0, "width": 16, "height": 16, "batch_size": 1, "minutes": 0}
    for name, low in limits.items():
        value = getattr(args, name)
        if value is not None and value < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low}, not {value}")
    if args.model_width is not None and not 0.0625 <= args.model_width <= 4.0:
        p.error(f"--model-width must be between 0.0625 and 4, not {args.model_width}")
    if args.motion_gain is not None and not 0.1 <= args.motion_gain <= 4.0:
        p.error(f"--motion-gain must be between 0.1 and 4, not {args.motion_gain}")
    return args


def script_argv() -> list[str]:
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


def ensure_addon():
    import bpy

    if MODULE_MODE and not hasattr(bpy.types, "FSGAN_OT_train_on_strip"):
        try:  # the bpy module starts without the user's preferences: their extensions too
            bpy.ops.wm.read_userpref()
        except RuntimeError:
            pass
    if hasattr(bpy.types, "FSGAN_OT_train_on_strip"):
        return "installed extension"
    if not os.path.isfile(os.path.join(ROOT, "fsgan_blender", "__init__.py")):
        raise RuntimeError(
            "The FrameSequenceGAN extension is not installed and enabled, and this script is "
            "not in the project's source tree; install the extension or run the script there."
        )
    sys.path.insert(0, ROOT)
    import fsgan_blender

    fsgan_blender.register()
    return f"source tree {ROOT}"


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def main(args: argparse.Namespace) -> int:
    import bpy

    if args.blend:
        if not os.path.isfile(args.blend):
            return fail(f"The file {args.blend} does not exist.")
        try:
            bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.blend))
        except RuntimeError as exc:
            return fail(f"The file {args.blend} cannot be opened: {_first_line(exc)}")
    elif MODULE_MODE:
        return fail("Pass --blend FILE (the bpy module starts with an empty scene).")
    try:
        print(f"FrameSequenceGAN: add-on from the {ensure_addon()}", flush=True)
    except RuntimeError as exc:
        return fail(str(exc))

    scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
    if scene is None:
        return fail(f"The file has no scene '{args.scene}'.")
    if bpy.context.window is not None and bpy.context.window.scene != scene:
        bpy.context.window.scene = scene
    se = scene.sequence_editor
    collection = (se.strips_all if hasattr(se, "strips_all") else se.sequences_all) if se else []
    strip = collection.get(args.strip) if se else None
    if strip is None:
        usable = sorted(s.name for s in collection if s.type in ("IMAGE", "MOVIE"))
        listing = ", ".join(usable) if usable else "none"
        return fail(
            f"Scene '{scene.name}' has no strip '{args.strip}'; image and movie strips: {listing}."
        )
    se.active_strip = strip

    settings = scene.fsgan
    if args.batch_size is not None:
        settings.batch_size = args.batch_size
    if args.output_dir:
        settings.output_dir = os.path.abspath(args.output_dir)
    if args.model_dir:
        settings.model_dir = os.path.abspath(args.model_dir)
    settings.resume = args.resume
    if args.frame is not None:
        scene.frame_current = args.frame

    train_kw = {"steps": args.steps} if args.steps else {}
    for key in ("preset", "width", "height", "device", "model_width", "minutes"):
        value = getattr(args, key)
        if value is not None:
            train_kw[key] = value
    for key in ("fit_aspect", "flow_guidance"):  # on when given, else the panel's value
        if getattr(args, key):
            train_kw[key] = True
    if bpy.context.scene != scene:
        return fail(f"Scene '{scene.name}' cannot be made the active scene here.")
    # Blender 5.0: the operators act on the workspace's sequencer scene when one is set.
    package = bpy.types.FSGAN_OT_train_on_strip.__module__.rpartition(".")[0]
    strips = importlib.import_module(package + ".strips")
    try:
        with strips.use_sequencer_scene(scene):
            if args.steps != 0:
                ret = bpy.ops.fsgan.train_on_strip(**train_kw)
                if ret != {"FINISHED"}:
                    return fail("Training did not finish (see the messages above).")
                operators = importlib.import_module(package + ".operators")
                last = operators.last_train() or {}
                if last.get("cancelled"):
                    fail(
                        f"Training was interrupted at step {last.get('step')}; its checkpoint "
                        f"{last.get('checkpoint')} is saved. Nothing was extended or saved."
                    )
                    return 130
            extend_kw = {"device": args.device} if args.device else {}
            if args.no_loop:
                extend_kw["continue_loops"] = False
            if args.motion_gain is not None:
                extend_kw.update(calibrate_motion=False, motion_gain=args.motion_gain)
            ret = bpy.ops.fsgan.extend_animation(
                count=args.count, start=args.start.upper(), **extend_kw
            )
            if ret != {"FINISHED"}:
                return fail("Extend did not finish (see the messages above).")
    except RuntimeError as exc:  # an operator's ERROR report or a failed poll
        text = str(exc).strip()
        text = text.removeprefix("Error: ")
        if ".poll()" in text:
            text = text.split(".poll()", 1)[1].strip() or "The operator cannot run here."
        return fail(text)

    new = se.active_strip
    print(
        f"FrameSequenceGAN: new strip '{new.name}' with {len(new.elements)} frames at frame "
        f"{strips.left_handle(new)}, channel {new.channel}",
        flush=True,
    )
    if args.no_save:
        return 0
    target = os.path.abspath(args.save_as) if args.save_as else bpy.data.filepath
    if not target:
        return fail("The scene was never saved; pass --save-as FILE.blend.")
    try:
        bpy.ops.wm.save_as_mainfile(filepath=target)
    except RuntimeError as exc:
        return fail(f"The file could not be saved to {target}: {_first_line(exc)}")
    print(f"FrameSequenceGAN: saved {target}", flush=True)
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().removeprefix("Error: ")
    return text.splitlines()[0] if text else type(exc).__name__


def run() -> None:
    code = 1
    try:
        code = main(parse_args(script_argv()))
    except SystemExit as exc:  # argparse: its message is printed already
        code = exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        fail("Interrupted.")
        code = 130
    except Exception:  # noqa: BLE001 - never a hang or a silent success after a traceback
        import traceback

        traceback.print_exc()
        code = fail("An unexpected error stopped the script (traceback above).")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if MODULE_MODE:
            os._exit(code)  # importing bpy can hang at interpreter exit
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run()
