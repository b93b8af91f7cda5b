"""What the scheduler and an engine say to each other: a frame in flight (`Job`), its result (`Completed`),
and the `Engine` protocol every engine speaks: the local OpenVINO one (streamdet.engines.local), the
KServe v2 server one (streamdet.engines.remote) and the unit tests' stand-in. The frames the network will
not see (detect.fps, the motion gate) never reach an engine: the scheduler hands them on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..detections import Detections
from ..model.readout import DetectFilter
from ..sources import Frame


@dataclass(slots=True)
class Job:
    """One frame in flight, carried through the engine as its userdata."""

    seq: int        # its place among its source's frames: the order they come out in (streamdet.scheduler)
    source_id: int
    frame: Frame
    filter: DetectFilter  # the source's own threshold and classes: every job brings its lane's
    # What the engine must keep alive while the frame is in flight: OpenVINO reads the input
    # tensor's memory while a request runs, but does not keep its Python owner alive.
    tensor: object = None


@dataclass(frozen=True, slots=True)
class Completed:
    job: Job
    detections: Detections
    infer_ms: float
    done: float
    error: BaseException | None = None  # reading the outputs failed; the frame carries no result
    inferred: bool = True  # False: the motion gate (or detect.fps) skipped the network for this frame
    predicted: bool = False  # a frame between those detect.fps lets the network see (streamdet.scheduler)


class Engine(Protocol):
    """Runs inference for the scheduler: results come back through the `on_done` it was made with."""

    def wait_idle(self) -> None:
        """Block until a job may be submitted without waiting with a frame in hand."""

    def submit(self, job: Job) -> None: ...

    def drain(self) -> None:
        """Block until every job submitted has been handed to `on_done`."""

    def close(self) -> None:
        """Stop waiting (for a server that is away); idempotent."""
