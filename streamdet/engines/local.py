"""Keeps the compiled model busy: a pool of OpenVINO async requests.

Completion callbacks run on OpenVINO's own threads; they only read out the
outputs and hand the result on, so the requests are free again at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
import openvino as ov

from ..detections import Detections
from ..model.detector import Detector
from .base import Completed, Job


class InferenceEngine:
    def __init__(self, detector: Detector, nireq: int, on_done: Callable[[Completed], None]):
        self.detector = detector
        self._on_done = on_done
        self._queue = ov.AsyncInferQueue(detector.compiled, nireq)
        self._queue.set_callback(self._callback)

    def _callback(self, request: ov.InferRequest, job: Job) -> None:
        job.tensor = None
        try:
            width, height = job.frame.size  # the boxes in the coordinates the frame asks for
            detections = self.detector.readout(request, width, height, job.filter)
            completed = Completed(job, detections, request.latency, time.monotonic())
        except BaseException as exc:  # an exception here would vanish inside OpenVINO
            completed = Completed(job, Detections.empty(), 0.0, time.monotonic(), error=exc)
        self._on_done(completed)

    def wait_idle(self) -> None:
        """Block until a request is free, so the next submit never waits with a frame in hand."""
        self._queue.get_idle_request_id()

    def submit(self, job: Job) -> None:
        job.tensor = self.detector.infer_input(job.frame.image)
        self._queue.start_async(job.tensor, job)

    def drain(self) -> None:
        self._queue.wait_all()

    def close(self) -> None:
        """The requests still in flight (a run aborted skips `drain`) finish now: a completion callback that
        came while Python shuts down would abort the process ("exception not rethrown")."""
        self._queue.wait_all()
