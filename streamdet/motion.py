"""Motion gating: run the network only on frames where something moved.

On a CPU the network is most of a frame's cost, and most frames of a fixed
camera show nothing new. A cheap check on a small grey copy of each frame
(a running-average background, blur, threshold, contours: the scheme users
know from Frigate's motion detector) decides, per frame, whether the frame
goes to inference:

- it does while anything moves, and for the first still frame after motion
  (so the boxes kept are where things came to rest);
- it does every `detect.stationary_interval` seconds of a still scene, so an
  object that stands still is looked at again;
- what comes to rest becomes background once it has not changed for half a
  second (so a parked car does not keep the network busy);
- when most of the picture changes at once (lights switching, the camera's
  exposure or day/night mode) the background is relearned from that frame
  and the network looks once, instead of every frame counting as motion.

A frame that is not inferred gets the detections of the source's last
inferred frame (the `ReuseDetections` stage), as if the network had looked at
the same picture again: the tracker matches them to its tracks as usual, so
ids stay and tracks are not ended by a long still scene. Such a frame is
marked `inferred: false` in the JSON Lines.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import cv2
import numpy as np

from .config.sections import DetectConfig
from .config.events import in_fractions
from .detections import Detections, FrameResult
from .sources import Frame

_HEIGHT = 100            # rows of the grey copy: enough for a person at 720p, cheap at any size
_MIN_AREA = 10           # pixels of the grey copy: smaller changed blobs are noise, not objects
_ALPHA = 0.02            # background learning rate per checked frame: what stops moving fades in within seconds
_RELEARN = 0.8           # share of the picture changed at once that means the light changed, not an object moved
_STILL_S = 0.5           # seconds unchanged after which what differs from the background has come to rest


@dataclass(frozen=True, slots=True)
class Motion:
    moving: bool
    area: float               # share of the (unmasked) picture that changed
    relearned: bool = False   # the background was relearned from this frame (most of the picture changed)


class MotionDetector:
    """The motion of one source, frame after frame. One thread at a time."""

    def __init__(self, width: int, height: int, threshold: int, mask: list[list[list[float]]] = ()):
        self._size = (max(1, round(width * _HEIGHT / height)), _HEIGHT)
        self._threshold = threshold
        self._kernel = np.ones((3, 3), np.uint8)
        keep = np.full((self._size[1], self._size[0]), 255, np.uint8)
        scale = np.array([self._size[0] / width, self._size[1] / height], np.float32)
        for polygon in mask:
            points = np.array(polygon, np.float32)
            points = points * np.array(self._size, np.float32) if in_fractions(polygon) else points * scale
            cv2.fillPoly(keep, [np.round(points).astype(np.int32)], 0)
        self._masked = keep == 0
        self._pixels = max(1, int(np.count_nonzero(keep)))
        self._background: np.ndarray | None = None
        self._still: np.ndarray | None = None  # a recent picture, to tell what stopped from what moves
        self._still_at = 0.0

    def __call__(self, image: np.ndarray, now: float) -> Motion:
        """The motion in `image`, taken at `now` (seconds, any clock that only goes forward)."""
        # INTER_LINEAR reads 4 pixels per output pixel: a 720p frame shrinks in a tenth of a millisecond,
        # where INTER_AREA reads them all; the blur below does the averaging on the small copy instead.
        small = cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR)
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        grey[self._masked] = 0  # masked pixels never differ from the background
        if self._background is None:
            return self._relearn(grey, now, 0.0)
        area = self._changed(grey, cv2.convertScaleAbs(self._background))
        if area > _RELEARN:
            return self._relearn(grey, now, area)
        if area and now - self._still_at >= _STILL_S:
            # Different from the background, but the same as a while ago: something came to rest there.
            # It is background now, rather than fading in over seconds of needless inference.
            if not self._changed(grey, self._still):
                return self._relearn(grey, now, 0.0, relearned=False)
            self._still, self._still_at = grey, now
        elif not area:
            self._still, self._still_at = grey, now
        cv2.accumulateWeighted(grey, self._background, _ALPHA)
        return Motion(moving=area > 0, area=area)

    def _changed(self, grey: np.ndarray, reference: np.ndarray) -> float:
        """The share of the picture in changed blobs of at least _MIN_AREA pixels."""
        _, changed = cv2.threshold(cv2.absdiff(grey, reference), self._threshold, 255, cv2.THRESH_BINARY)
        changed = cv2.dilate(changed, self._kernel, iterations=2)
        contours, _ = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return sum(a for a in (cv2.contourArea(c) for c in contours) if a >= _MIN_AREA) / self._pixels

    def _relearn(self, grey: np.ndarray, now: float, area: float, relearned: bool = True) -> Motion:
        self._background = grey.astype(np.float32)
        self._still, self._still_at = grey, now
        return Motion(moving=False, area=area, relearned=relearned)


class _SourceMotion:
    """What the gate knows of one source; touched by one thread at a time: the one its frames arrive on."""

    def __init__(self, config: DetectConfig):
        self.config = config
        self.detector: MotionDetector | None = None
        self.shape: tuple[int, ...] = ()
        self.last_inferred = float("-inf")
        self.moved = False
        self.cpu_s = 0.0


class MotionGate:
    """Whether a frame of a source goes to the network, by its motion.

    Asked as each frame arrives in the scheduler (streamdet.scheduler; a camera's on its reader thread), for
    the frames the detection rate lets through: the checks of many cameras run on their own threads side by side,
    not one after another on the thread that feeds the network. A frame it holds back is handed on
    as `Completed(inferred=False)`; its detections are filled in, in frame order, by `ReuseDetections`.
    """

    def __init__(self, configs: list[DetectConfig]):
        self._sources = [_SourceMotion(c) if c.motion else None for c in configs]

    def add(self, config: DetectConfig) -> None:
        """A source added while the run goes (a reload) takes the next id; called before its lane starts."""
        self._sources.append(_SourceMotion(config) if config.motion else None)

    @property
    def cpu_s(self) -> float:
        """CPU seconds the checks took, all sources together (for the summary's cost per frame)."""
        return sum(s.cpu_s for s in self._sources if s is not None)

    def wants_inference(self, source_id: int, frame: Frame) -> bool:
        state = self._sources[source_id]
        if state is None:
            return True
        c0 = time.thread_time()
        image = frame.image
        if state.detector is None or image.shape != state.shape:  # a camera may come back at another size
            # The mask is in the coordinates of the boxes (a sub-stream's boxes are the main stream's pixels).
            state.detector = MotionDetector(*frame.size, state.config.motion_threshold, state.config.motion_mask)
            state.shape = image.shape
        now = frame.stream_time
        motion = state.detector(image, now)
        state.cpu_s += time.thread_time() - c0
        run = (motion.moving or motion.relearned or state.moved
               or now - state.last_inferred >= state.config.stationary_interval)
        state.moved = motion.moving
        if run:
            state.last_inferred = now
        return run


class ReuseDetections:
    """The stage that gives a frame the network skipped the detections of the source's previous frame."""

    name = "reuse"

    def __init__(self) -> None:
        self._last: dict[int, Detections] = {}

    def __call__(self, result: FrameResult) -> FrameResult:
        if result.inferred or result.predicted:  # a frame between: the tracker predicts its boxes
            if result.inferred:
                self._last[result.source_id] = result.detections
            return result
        return dataclasses.replace(result, detections=self._last.get(result.source_id, Detections.empty()))
