"""What happens to a frame between inference and the outputs, one stage at a time.

A stage takes a FrameResult and returns it (changed, or a new one). Stages
run on the output thread, in frame order per source, so they may keep
per-source state (a tracker's tracks) without locks. The pipeline lists them
in order in `Pipeline._after_inference`, and times each under its `name`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .detections import FrameResult
from .render import Annotator, OverlayStatus


class Stage(Protocol):
    name: str  # its row in the summary's stage timings

    def __call__(self, result: FrameResult) -> FrameResult: ...


class Annotate:
    """Draws boxes, labels and the status plate onto the frame, in place."""

    name = "render"

    def __init__(self, annotator: Annotator, status_for: Callable[[FrameResult], OverlayStatus | None],
                 events=None):
        """`events`: the EventStage, whose zones, lines and counts are drawn under the boxes."""
        self._annotator = annotator
        self._status_for = status_for
        self._events = events

    def __call__(self, result: FrameResult) -> FrameResult:
        if self._events is not None and self._events.scenes[result.source_id]:
            scene = self._events.scenes[result.source_id]
            self._annotator.draw_scene(result.frame.image, scene.zones, scene.lines,
                                       self._events.counts[result.source_id])
        self._annotator.draw(result.frame.image, result.detections, self._status_for(result))
        return result
