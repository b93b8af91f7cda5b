"""What happens to a frame between inference and the outputs, one stage at a time.

A stage takes a FrameResult and returns it (changed, or a new one). Stages
run on the output thread, in frame order per source, so they may keep
per-source state (a tracker's tracks) without locks. The pipeline lists them
in order in `Pipeline._after_inference`, and times each under its `name`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .detections import FrameResult
from .events import Counts, Scene
from .render import Annotator, OverlayStatus


class Stage(Protocol):
    name: str  # its row in the summary's stage timings

    def __call__(self, result: FrameResult) -> FrameResult: ...


@dataclass(frozen=True)
class Overlay:
    """What is drawn over a frame besides its boxes, as it stood when the frame was processed."""

    status: OverlayStatus | None  # the FPS/latency plate; None on single images
    scene: Scene | None = None    # zones and lines, where the source has any
    counts: Counts | None = None  # their counts at this frame (a copy: counting goes on)


class Annotate:
    """Draws zones, lines and their counts, boxes, labels and the status plate onto the frame, in place.

    The one drawing of a run: as a stage for the outputs that take every frame, and through `overlay`
    and `paint` for the web view, which draws only the frames somebody looks at, on its own thread.
    """

    name = "render"

    def __init__(self, annotator: Annotator, status_for: Callable[[FrameResult], OverlayStatus | None],
                 events=None):
        """`events`: the EventStage, whose zones, lines and counts are drawn under the boxes."""
        self._annotator = annotator
        self._status_for = status_for
        self._events = events

    def overlay(self, result: FrameResult) -> Overlay:
        """Everything `paint` needs besides the frame, taken now (on the output thread, in frame order)."""
        status = self._status_for(result)
        scene = self._events.scenes[result.source_id] if self._events is not None else None
        if not scene:
            return Overlay(status)
        return Overlay(status, scene, self._events.counts[result.source_id].copy())

    def paint(self, image: np.ndarray, result: FrameResult, overlay: Overlay) -> None:
        if overlay.scene:
            self._annotator.draw_scene(image, overlay.scene.zones, overlay.scene.lines, overlay.counts)
        self._annotator.draw(image, result.detections, overlay.status)

    def __call__(self, result: FrameResult) -> FrameResult:
        self.paint(result.frame.image, result, self.overlay(result))
        return result
