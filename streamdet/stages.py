"""What happens to a frame between inference and the outputs, one stage at a time.

A stage takes a FrameResult and returns it (changed, or a new one). Stages
run on the output thread, in frame order per source, so they may keep
per-source state (a tracker's tracks) without locks. Their order is written
once, in `streamdet.assembly.wiring.stages_after_inference`; the pipeline times each
under its `name`.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from .detections import FrameResult
from .scene import Scene, SceneState
from .drawing import Annotator


class Stage(Protocol):
    name: str  # its row in the summary's stage timings

    def __call__(self, result: FrameResult) -> FrameResult: ...


class Annotate:
    """Draws zones, lines and their counts, boxes, labels and the status plate onto the frame, in place.

    The one drawing of a run: as a stage for the outputs that take every frame, and through `paint` for
    the web view, which draws only the frames somebody looks at, on its own thread. Everything it draws
    besides the frame is on the result (scene, plate), as it stood when the frame was processed.
    """

    name = "draw"

    def __init__(self, annotator: Annotator):
        self._annotator = annotator

    def paint(self, image: np.ndarray, result: FrameResult) -> None:
        if result.frame.blank:
            return  # not converted (detect.fps, nothing was to show it): no pixels to draw on
        detections, scene = result.detections, result.scene
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
        self._annotator.draw(image, detections, result.plate)

    def __call__(self, result: FrameResult) -> FrameResult:
        self.paint(result.frame.image, result)
        return result
