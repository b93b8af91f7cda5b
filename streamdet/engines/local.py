"""Keeps the compiled model busy: a pool of OpenVINO async requests.

Completion callbacks run on OpenVINO's own threads; they only decode the
outputs and hand the result on, so the requests are free again at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import openvino as ov

from ..detections import Detections
from ..model.readout import DetectFilter
from ..model.detector import Detector
from ..sources import Frame


@dataclass(slots=True)
class Job:
    """One frame in flight, carried through the request as its userdata."""

    seq: int
    source_id: int
    frame: Frame
    keep: DetectFilter | None = None  # the source's own threshold and classes; None = the detector's
    # The request reads this tensor's memory while it runs, but OpenVINO does
    # not keep the Python owner alive: the job must, or the buffer is reused.
    tensor: ov.Tensor | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    job: Job
    detections: Detections
    infer_ms: float
    done: float
    error: BaseException | None = None  # decoding the outputs failed; the frame carries no result
    inferred: bool = True  # False: the motion gate skipped the network for this frame


class InferenceEngine:
    def __init__(self, detector: Detector, nireq: int, on_done: Callable[[Completed], None]):
        self.detector = detector
        self._on_done = on_done
        self._queue = ov.AsyncInferQueue(detector.compiled, nireq)
        self._queue.set_callback(self._callback)

    def _callback(self, request: ov.InferRequest, job: Job) -> None:
        job.tensor = None
        try:
            height, width = job.frame.image.shape[:2]
            detections = self.detector.decode(request, width, height, job.keep)
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
