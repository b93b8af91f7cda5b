"""The run's one conversion from the clock frames are captured on (`time.monotonic()`) to the wall clock.

JSON lines, events, clips and recording segments all give their times through it, so a detection, its event
and the file it is in name the same moment. The offset between the two clocks is measured again every
`ANCHOR_S`: the wall clock is corrected while the monotonic one runs on (NTP slews it, an admin steps it), so
an offset fixed at the start drifts from `time.time()` (and from file names made with it) over a long run.
Between measurements one offset holds, so the times of frames a second apart keep their order.
"""

from __future__ import annotations

import datetime as dt
import math
import time

ANCHOR_S = 1.0

_anchor: tuple[float, float] = (-math.inf, 0.0)  # (monotonic when measured, wall minus monotonic)


def wall_time(monotonic: float) -> float:
    """Epoch seconds of a `time.monotonic()` reading (a frame's capture time), on the wall clock as it is now."""
    global _anchor
    measured, offset = _anchor
    if time.monotonic() - measured >= ANCHOR_S:
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        offset = wall - (before + after) / 2
        _anchor = (after, offset)  # one tuple: threads read the old pair or the new one, never half of each
    return monotonic + offset


def iso(epoch: float) -> str:
    """ISO 8601 in UTC to the millisecond, `2026-12-06T22:05:36.123Z`."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
