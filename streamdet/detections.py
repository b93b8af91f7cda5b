"""Detections: what the model found in one frame, in pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sources.base import Frame


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes found in one frame.

    Arrays are parallel: row i of ``xyxy`` belongs to ``scores[i]``,
    ``class_ids[i]`` and ``labels[i]``. Boxes are pixels of the frame that was
    fed in, clipped to it, as float32 [x_min, y_min, x_max, y_max].
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: tuple[str, ...]
    track_ids: np.ndarray | None = None  # with tracking on: the track of each box, -1 for none yet

    def __post_init__(self) -> None:
        n = len(self.scores)
        if (self.xyxy.shape != (n, 4) or self.class_ids.shape != (n,) or len(self.labels) != n
                or (self.track_ids is not None and self.track_ids.shape != (n,))):
            raise ValueError(
                f"Detections arrays disagree: xyxy {self.xyxy.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}, labels {len(self.labels)}"
                + (f", track_ids {self.track_ids.shape}" if self.track_ids is not None else "")
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int32),
            labels=(),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> Detections:
        """Select rows by boolean mask, index array or slice."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Detections(
            xyxy=self.xyxy[idx],
            scores=self.scores[idx],
            class_ids=self.class_ids[idx],
            labels=tuple(self.labels[i] for i in idx),
            track_ids=self.track_ids[idx] if self.track_ids is not None else None,
        )

    def with_tracks(self, track_ids: np.ndarray) -> Detections:
        return Detections(self.xyxy, self.scores, self.class_ids, self.labels, np.asarray(track_ids, np.int32))


@dataclass(frozen=True, slots=True)
class FrameResult:
    """One processed frame on its way to the sinks and to API callers.

    ``frame.image`` is the annotated picture once the render stage has drawn
    on it (drawing happens in place: the raw pixels are not kept).
    ``latency_ms`` runs from decode to the end of inference. ``source_id``
    is the source's position in the run (per-source state is kept by it).
    """

    source: str
    frame: Frame
    detections: Detections
    latency_ms: float
    source_id: int = 0
    events: tuple = ()  # streamdet.events.Event: what this frame started, ended or crossed (tracking on)
    # What one stage tells the next travels here: the tracker's changes at this frame (streamdet.tracking.
    # TrackUpdate, for the events stage) and the zones and lines with their counts as they stand after it
    # (streamdet.events.SceneState, for drawing).
    tracks: object = None
    scene: object = None
    inferred: bool = True  # False: nothing moved, the network was skipped and the detections are the last ones
