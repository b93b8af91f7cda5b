"""Detections: what the model found in one frame, in pixel coordinates; a processed frame with its figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sources.base import Frame


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (n, 4) with every box in `b` (m, 4), as (n, m)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def greedy_match(scores: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """Pairs (row, column), best score first, each row and column used once, none below `minimum`."""
    rows, cols = np.nonzero(scores >= minimum)
    if len(rows) == 0:
        return []
    order = np.argsort(-scores[rows, cols], kind="stable")
    used_r, used_c, pairs = set(), set(), []
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


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


@dataclass(frozen=True)
class OverlayStatus:
    """The FPS/latency plate drawn on a frame (streamdet.drawing) and filed beside a copy recording."""

    fps: float | None  # None until two frames give a rate
    latency_ms: float


@dataclass(frozen=True, slots=True)
class FrameResult:
    """One processed frame on its way to the sinks and to API callers.

    ``frame.image`` is the annotated picture once the draw stage has drawn
    on it (drawing happens in place: the raw pixels are not kept).
    ``latency_ms`` runs from decode to the end of inference; ``fps`` is the
    source's processed rate as it stood when this frame was done, so whoever
    draws the plate later (the web view, on its own thread) shows this frame's
    figures. ``source_id`` is the source's position in the run (per-source
    state is kept by it).
    """

    source: str
    frame: Frame
    detections: Detections
    latency_ms: float
    source_id: int = 0
    events: tuple = ()  # streamdet.scene.Event: what this frame started, ended or crossed (tracking on)
    # What one stage tells the next travels here: the tracker's changes at this frame (streamdet.tracking.
    # TrackUpdate, for the events stage) and the zones and lines with their counts as they stand after it
    # (streamdet.scene.SceneState, for drawing).
    tracks: object = None
    scene: object = None
    inferred: bool = True  # False: nothing moved, the network was skipped and the detections are the last ones
    # A frame between those detect.fps lets the network see: its boxes are the tracks' predictions at its time.
    predicted: bool = False
    # The drawn frame as H.264 packets (streamdet.outputs.h264.Packet), when the clip stage encoded it for a source
    # whose recording can take them: the recording muxes these rather than encoding the same frame again.
    encoded: tuple = ()
    # Work for the outputs that write what events name, decided with the events: the best frames of the tracks
    # ended here (streamdet.outputs.snapshots.Snapshot) and what the clip stage decided for the camera's clips
    # at this frame (streamdet.outputs.clips: a ClipStart, packets, a ClipEnd; in order).
    snapshots: tuple = ()
    clip_steps: tuple = ()
    fps: float | None = None  # frames per second of its source at this frame; None until two frames give a rate
    still: bool = False       # from a single picture, where a rate means nothing: no plate
    drawn: bool = False       # drawn by a stage a reload added for some cameras: the web view does not draw it again

    @property
    def plate(self) -> OverlayStatus | None:
        """The FPS/latency plate's figures; none on single images."""
        return None if self.still else OverlayStatus(fps=self.fps, latency_ms=self.latency_ms)
