"""All scene settings in one PropertyGroup at ``scene.fsgan``.

The checkpoint in use is not here: it is remembered on each strip (a custom property, see
paths.CHECKPOINT_KEY), so every strip keeps its own model across save and reopen.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

PRESET_ITEMS = (
    ("default", "Default", "Balanced model size and speed"),
    ("paper", "Paper", "The architecture of the original paper (larger, slower)"),
)
DEVICE_ITEMS = (
    ("auto", "Auto", "CUDA if available, else Apple MPS, else CPU"),
    ("cuda", "CUDA", "An NVIDIA (or ROCm) GPU through PyTorch's CUDA backend"),
    ("mps", "MPS", "Apple silicon GPU"),
    ("cpu", "CPU", "The processor (slow, but always available)"),
)
START_ITEMS = (
    ("END", "End of Strip", "Continue from the strip's last visible frame"),
    ("PLAYHEAD", "Playhead", "Continue from the frame under the playhead"),
)


class FSGAN_PG_settings(bpy.types.PropertyGroup):
    # -- training ------------------------------------------------------------------------------
    preset: EnumProperty(
        name="Preset",
        description="Model architecture and training defaults",
        items=PRESET_ITEMS,
        default="default",
    )
    width: IntProperty(
        name="Width",
        description="Training width in pixels; frames are scaled to this size for training",
        default=128,
        min=16,
        max=4096,
    )
    height: IntProperty(
        name="Height",
        description="Training height in pixels; frames are scaled to this size for training",
        default=72,
        min=16,
        max=4096,
    )
    fit_aspect: BoolProperty(
        name="Fit Strip Aspect",
        description="Train at the strip's own aspect ratio with about Resolution X x Y "
        "pixels (a square strip at 128 x 72 trains at 96 x 96) instead of letterboxing it "
        "into exactly X x Y. Sharper next frames; over longer continuations it measured the "
        "same on average (docs/QUALITY.md)",
        default=False,
    )
    flow_guidance: BoolProperty(
        name="Optical Flow Guidance",
        description="Also teach the model the strip's motion as optical flow measures it "
        "(default preset only). On a small hand-held camera shot it moved and scored much "
        "better; on the same shot at 720p, a game capture and sprites a little worse "
        "(docs/QUALITY.md, 'The flow term')",
        default=False,
    )
    steps: IntProperty(
        name="Steps",
        description="Most training steps; training also ends at the Time Limit. The quality "
        "was measured at about 400; many more fit the strip's own frames at the cost of new "
        "ones (docs/QUALITY.md)",
        default=400,
        min=1,
        soft_max=100000,
    )
    minutes: FloatProperty(
        name="Time Limit",
        description="Training ends after this many minutes even if fewer steps ran (0: no "
        "limit, the steps decide). 400 steps take under 1 minute on a GPU, about 2 on a "
        "2-core CPU with bf16 hardware and 4-5 on one without, so the default 5 lets them "
        "finish on most machines",
        default=5.0,
        min=0.0,
        soft_max=120.0,
        subtype="TIME_ABSOLUTE",
        unit="NONE",
    )
    device: EnumProperty(
        name="Device",
        description="Where the worker trains and generates",
        items=DEVICE_ITEMS,
        default="auto",
    )
    model_width: FloatProperty(
        name="Model Width",
        description="Scale of the networks' channel counts: lower is faster and smaller, "
        "higher can learn more detail",
        default=1.0,
        min=0.0625,
        max=4.0,
    )
    batch_size: IntProperty(
        name="Batch Size",
        description="Frame pairs per training step; 0 chooses: 8, or 4 for the default preset "
        "on a CPU without bf16 hardware (twice the steps in the same minutes). Lower it if the "
        "GPU runs out of memory",
        default=0,
        min=0,
        soft_max=64,
    )
    seed: IntProperty(
        name="Seed",
        description="Random seed: the same seed and settings give the same training run",
        default=0,
        min=0,
    )
    preview_every: IntProperty(
        name="Preview Every",
        description="Show a preview rollout every this many steps (0: no previews)",
        default=50,
        min=0,
    )
    resume: BoolProperty(
        name="Continue Training",
        description="Continue from the strip's checkpoint instead of starting a new model",
        default=False,
    )
    model_dir: StringProperty(
        name="Model Folder",
        description="Where new checkpoints are saved; empty uses the extension's user folder",
        default="",
        subtype="DIR_PATH",
    )
    # -- extending -----------------------------------------------------------------------------
    count: IntProperty(
        name="Frames",
        description="Number of new frames to generate",
        default=16,
        min=1,
        soft_max=1000,
    )
    start: EnumProperty(
        name="Start From",
        description="Which frame the generated animation continues from",
        items=START_ITEMS,
        default="END",
    )
    continue_loops: BoolProperty(
        name="Continue Loops",
        description="When the frames before the start frame repeat a cycle (a walk or run "
        "cycle), continue the cycle with the strip's own frames instead of generating new ones",
        default=True,
    )
    calibrate_motion: BoolProperty(
        name="Calibrate Motion",
        description="Measure how fast the strip moves on its last frames and match the new "
        "frames' motion to it (a trained model tends to move things too little), no faster "
        "than keeps the new frames steady; off: use Motion Gain",
        default=True,
    )
    motion_gain: FloatProperty(
        name="Motion Gain",
        description="With Calibrate Motion off: the factor on the model's motion (1 = as "
        "trained, above 1 faster)",
        default=1.0,
        min=0.1,
        max=4.0,
        soft_min=0.5,
        soft_max=2.0,
        step=10,
        precision=2,
    )
    fit_scene_range: BoolProperty(
        name="Lengthen Scene",
        description="When the new strip ends after the scene's end frame, move the end frame "
        "to the strip's last frame, so playback and renders include the generated frames",
        default=True,
    )
    output_dir: StringProperty(
        name="Output Folder",
        description="Where generated frames are written, in a subfolder named after the strip; "
        "empty uses //fsgan/ next to a saved .blend, else the extension's user folder",
        default="",
        subtype="DIR_PATH",
    )


classes = (FSGAN_PG_settings,)
