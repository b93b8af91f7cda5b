"""What happens to a frame between inference and the outputs, one stage at a time.

A stage takes a FrameResult and returns it (changed, or a new one). Stages
run on the output thread, in frame order per source, so they may keep
per-source state (a tracker's tracks) without locks. The pipeline lists them
in order in `Pipeline._after_inference`, and times each under its `name`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .detections import FrameResult
from .scene import Scene, SceneState
from .render import Annotator, OverlayStatus


class Stage(Protocol):
    name: str  # its row in the summary's stage timings

    def __call__(self, result: FrameResult) -> FrameResult: ...


@dataclass(frozen=True)
class Overlay:
    """What is drawn over a frame besides its boxes, as it stood when the frame was processed."""

    status: OverlayStatus | None      # the FPS/latency plate; None on single images
    scene: SceneState | None = None   # zones and lines with their counts, where the source has any


class Annotate:
    """Draws zones, lines and their counts, boxes, labels and the status plate onto the frame, in place.

    The one drawing of a run: as a stage for the outputs that take every frame, and through `overlay`
    and `paint` for the web view, which draws only the frames somebody looks at, on its own thread.
    """

    name = "render"

    def __init__(self, annotator: Annotator, status_for: Callable[[FrameResult], OverlayStatus | None]):
        self._annotator = annotator
        self._status_for = status_for

    def overlay(self, result: FrameResult) -> Overlay:
        """Everything `paint` needs besides the frame, taken now (on the output thread, in frame order)."""
        return Overlay(self._status_for(result), result.scene)

    def paint(self, image: np.ndarray, result: FrameResult, overlay: Overlay) -> None:
        detections, scene = result.detections, overlay.scene
        width, height = result.frame.size
        if (width, height) != (image.shape[1], image.shape[0]):
            # Boxes and shapes in another stream's pixels (detected on a sub-stream, given in the main one's).
            scale = np.array([image.shape[1] / width, image.shape[0] / height], np.float32)
            detections = dataclasses.replace(detections, xyxy=detections.xyxy * np.tile(scale, 2))
            if scene is not None:
                shapes = Scene({k: v * scale for k, v in scene.scene.zones.items()},
                               {k: v * scale for k, v in scene.scene.lines.items()})
                scene = SceneState(shapes, scene.counts)
        if scene is not None:
            self._annotator.draw_scene(image, scene.scene.zones, scene.scene.lines, scene.counts)
        self._annotator.draw(image, detections, overlay.status)

    def __call__(self, result: FrameResult) -> FrameResult:
        self.paint(result.frame.image, result, self.overlay(result))
        return result
