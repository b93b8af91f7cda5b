"""A camera's own time: which frames are due under `detect.fps`, and one steady clock for its frames.

`DetectRate`: at most `fps` frames a second, evenly spaced in the camera's own time (its frame timestamps
where the stream has them, so frames arriving in a burst change nothing). Read by each camera's capture step in
the scheduler (streamdet.scheduler), which sends only the due frames to the network, and by a network camera that converts only the frames the
network will see (streamdet.sources.cameras): the same schedule on the same times picks the same frames.

`CameraClock`: the time the tracker steps by (streamdet.events.TrackStage). A camera's frames often arrive
in a burst (the first second of a connection, a network hiccup): by their capture times a person would
jump a second's walk in no time, and the Kalman filter would take that for speed. Within a connection the
clock advances by the stream's own spacing; across reconnects (whose timestamps start afresh), and
after a stall, it follows the capture time; it never goes back.
"""

from __future__ import annotations

from .base import Frame

# A frame counts as due up to this share of the camera's frame interval early: arrival times jitter around
# the camera's spacing (a sub-stream's frames are timed on arrival), and a due frame judged a little early
# must not be skipped for a whole period, nor the frame before it taken.
_EARLY = 0.5


class DetectRate:
    """Which frames of one camera are due, at most `fps` a second, evenly spaced in its time. One thread."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self._next: float | None = None
        self._last: float | None = None
        self._gap = 0.0  # the camera's frame interval as seen: a running mean of the time between frames

    def due(self, t: float) -> bool:
        """Whether the frame at `t` (seconds of the camera's clock) is due; a due answer is the frame taken."""
        if self._last is not None and 0 < t - self._last < self.period:
            self._gap = t - self._last if not self._gap else 0.9 * self._gap + 0.1 * (t - self._last)
        self._last = t
        if self._next is not None and t < self._next - 2 * self.period:
            self._next = None  # the camera's clock went back (a reconnect starts its times afresh)
        if self._next is not None and t < self._next - _EARLY * self._gap:
            return False
        # Evenly spaced: the next one a period after this one was due, unless frames stopped coming for a
        # while (then from this one on, rather than a burst to catch up).
        late = self._next is None or t - self._next >= self.period
        self._next = t + self.period if late else self._next + self.period
        return True


def camera_time(frame: Frame) -> float:
    """A frame's time on its camera's clock: its timestamp in the stream where it has one, else its capture."""
    return frame.camera_pts_ms / 1000 if frame.camera_pts_ms is not None else frame.stream_time


class CameraClock:
    """One camera's frames on a steady clock, seconds. One thread."""

    _MAX_STEP_S = 10.0  # a longer jump in the stream's timestamps is a glitch of the stream, not elapsed time
    # The stream's clock may run ahead of the capture times (a burst came in at once) but not fall this far
    # behind them: a camera that stalled and resumes on the same connection sends on where it stopped, and
    # the time it stood still has passed all the same.
    _BEHIND_S = 1.0

    def __init__(self) -> None:
        self._last: tuple[int, float] | None = None  # the connection and stream time of the last frame
        self._now = float("-inf")

    def __call__(self, frame: Frame) -> float:
        t = frame.stream_time
        if frame.camera_pts_ms is not None and self._last is not None and self._last[0] == frame.connection:
            step = (frame.camera_pts_ms - self._last[1]) / 1000
            if 0 <= step <= self._MAX_STEP_S:
                t = max(self._now + step, frame.stream_time - self._BEHIND_S)
        self._last = (frame.connection, frame.camera_pts_ms) if frame.camera_pts_ms is not None else None
        self._now = max(t, self._now)
        return self._now
