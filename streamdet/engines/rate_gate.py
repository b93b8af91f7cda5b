"""A detection rate per camera (`detect.fps`): the network sees at most that many frames a second.

The frames it sees are evenly spaced in the camera's own time (streamdet.sources.rate), whatever the
camera sends: at `fps: 5` a 25 fps camera has one frame in five inferred, a 10 fps one one in two. The
frames between are not sent to the network: `RateGate` hands them on at once as
`Completed(inferred=False, predicted=True)`, and the tracking stage gives them each confirmed track's
Kalman prediction at that frame's time (streamdet.tracking), so boxes, tracks and everything after them go
on at the camera's rate, for a fraction of the network's cost: what the peers do too (Frigate's
`detect: fps`, DeepStream's `interval`).

With the motion gate (streamdet.motion) both apply: the rate gate stands in front of it, so a frame is
inferred when it is due and the motion gate lets it through (something moved, or the stationary interval
is up); the motion check itself runs on the due frames only.

A network camera whose frames between need no pixels (no drawing, no viewer, no window: decided by
streamdet.assembly.plan) converts only the due ones to BGR arrays, on the same schedule; the others come
`blank` and are never due here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..config.sections import DetectConfig
from ..detections import Detections
from ..sources.rate import DetectRate, camera_time
from .base import Completed, Engine, Job


class RateGate:
    """An Engine (streamdet.engines.base) in front of another: only the frames due under `detect.fps` go on.

    Runs on the scheduler's feeder thread, which alone calls `submit`. A frame between is handed back at
    once, marked `predicted`, without waiting for a free request: only a due frame waits, in `submit`, so
    with every request busy the frames between still flow and are not dropped from the cameras' inboxes.
    """

    def __init__(self, engine: Engine, on_done: Callable[[Completed], None], rates: Sequence[float]):
        """`rates`: per source, its `detect.fps` (0: every frame)."""
        self._engine = engine
        self._on_done = on_done
        self._rates = [DetectRate(fps) if fps else None for fps in rates]

    def add(self, config: DetectConfig) -> None:
        """A source added while the run goes (a reload) takes the next id, here and in the gate behind."""
        self._rates.append(DetectRate(config.fps) if config.fps else None)
        self._engine.add(config)

    def wait_idle(self) -> None:
        """With a rate, never waits: the frame the scheduler takes next may be one between (a due one waits in
        `submit`). Without one, waits as the engine does, so a live frame is taken when a request can take it."""
        if all(rate is None for rate in self._rates):
            self._engine.wait_idle()

    def drain(self) -> None:
        self._engine.drain()

    def close(self) -> None:
        self._engine.close()

    def submit(self, job: Job) -> None:
        rate = self._rates[job.source_id]
        if rate is None or (not job.frame.blank and rate.due(camera_time(job.frame))):
            self._engine.wait_idle()
            self._engine.submit(job)
        else:
            self._on_done(Completed(job, Detections.empty(), 0.0, time.monotonic(), inferred=False, predicted=True))
