"""Loops: a strip that repeats a cycle (a walk or run cycle, a looping effect) is continued by
repeating that cycle, not by the model.

A next-frame model continues motion; over dozens of frames it cannot keep a sprite's legs or a
character's shape the way the artist drew them (the legs of a running sprite melt within a few
frames, a walking character drifts off its spot). When the last frames before the start frame
repeat the stretch of frames one period earlier, within a small fraction of how much the
frames change from one to the next, the strip is a loop and the natural continuation is the
cycle itself: ``extend`` then writes the cycle's frames again (at the source's size, read from
the source's own files), and says so. Camera footage, simulations and scrolling game captures
never repeat themselves this closely, so they go to the model.

The test, on frames at the training size (``find_loop``): for a period p, the last
``max(p, MIN_PAIRS)`` frames are compared with the frames p earlier. The period is the
smallest p whose mean difference is at most ``MATCH_RATIO`` x the mean frame-to-frame change
over the same frames, with no single pair above ``PAIR_RATIO`` x it, and at most ``MAX_ERROR``
in absolute terms. A strip that hardly moves (mean change below ``MIN_MOTION``) is not a loop.
"""

from __future__ import annotations

import torch

MAX_PERIOD = 48  # the longest cycle looked for, in frames (2 s at 24 fps)
MIN_PERIOD = 2
MIN_PAIRS = 8  # at least this many frames must match the frames one period earlier
MATCH_RATIO = 0.1  # mean difference to the frames one period earlier / mean motion
PAIR_RATIO = 0.25  # the same for each frame on its own
MAX_ERROR = 0.03  # mean absolute difference, frames in [0, 1]
MIN_MOTION = 1.0 / 255.0  # a strip that changes less than this per frame is not a loop
HISTORY = 2 * MAX_PERIOD  # frames before (and including) the start frame that find_loop needs


def find_loop(frames: torch.Tensor) -> int | None:
    """The period of the cycle that ``frames`` (N, C, H, W), in time order, end on, or None.

    Frames are uint8 (as ``core.data.load_clip`` gives them) or float in [-1, 1]."""
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else (frames.float() + 1.0) / 2.0
    n = x.shape[0]
    if n < MIN_PERIOD + MIN_PAIRS:
        return None
    step = (x[1:] - x[:-1]).abs().flatten(1).mean(1)  # step[t - 1]: change from frame t-1 to t
    for p in range(MIN_PERIOD, min(MAX_PERIOD, n // 2) + 1):
        pairs = max(p, MIN_PAIRS)
        if n < p + pairs:
            break
        last = x[n - pairs :]
        diff = (last - x[n - pairs - p : n - p]).abs().flatten(1).mean(1)
        motion = float(step[n - pairs - 1 :].mean())
        if motion < MIN_MOTION:
            return None
        mean = float(diff.mean())
        if (
            mean <= MATCH_RATIO * motion
            and mean <= MAX_ERROR
            and float(diff.max()) <= PAIR_RATIO * motion
        ):
            return p
    return None


def loop_index(n: int, period: int, i: int) -> int:
    """Index, among the n frames a loop was found in, of the i-th continued frame (from 0)."""
    return n - period + (i % period)
