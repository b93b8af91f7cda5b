"""Identities for detections across frames, ByteTrack-style, on numpy.

Per frame: every track's box is predicted by a constant-velocity Kalman
filter; confident detections are matched to tracks (lost ones included) by
IoU, then the remaining tracks get a second chance with the low-score
detections a plain threshold would have thrown away (what keeps an occluded
person's id); a track is confirmed after `birth_frames` hits in a row and
removed after `end_after` seconds unseen. Matching is greedy by IoU: with a
few dozen objects it gives the same pairs as an optimal assignment here (see
the figures in docs/events.md) for a fraction of the cost and no dependency.

Time, not frames: the Kalman filter steps by the time between updates, in
units of the camera's frame interval (`frame_s`), with its noise growing with
that time, and `birth_frames` means that many frames' time of the camera. So a
tracker updated on every frame behaves as ByteTrack does, and one updated five
times a second (detect.fps, streamdet.scheduler) keeps the same person under the same
id: it expects the same motion per second, and confirms a track after the same
time seen (two detections at least). Between updates, `predict` gives each
track's box moved to a frame's time without changing its state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .config.events import TrackConfig
from .detections import Detections, greedy_match, iou

# Kalman noise as fractions of the box height (ByteTrack's values).
_STD_POSITION = 1 / 20
_STD_VELOCITY = 1 / 160


def _xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def _xyah_to_xyxy(state: np.ndarray) -> np.ndarray:
    cx, cy, a, h = state[:, 0], state[:, 1], state[:, 2], state[:, 3]
    w = a * h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


@dataclass
class Track:
    """One object followed over frames; `id` is 0 until it is confirmed."""

    mean: np.ndarray
    cov: np.ndarray
    class_id: int
    label: str
    box: np.ndarray              # the last detection's box, as detected (not smoothed)
    first_seen: float
    last_seen: float
    id: int = 0
    hits: int = 1
    score: float = 0.0           # the last detection's score
    best_score: float = 0.0
    best_box: np.ndarray | None = None
    best_frame: object = None    # the picture at the best score, for event snapshots

    @property
    def confirmed(self) -> bool:
        return self.id > 0


@dataclass(frozen=True)
class TrackUpdate:
    """What changed in one frame: tracks that were confirmed and tracks that ended."""

    started: tuple[Track, ...] = ()
    ended: tuple[Track, ...] = ()
    active: tuple[Track, ...] = ()  # confirmed and seen in this frame, in the order of `detections`


class Tracker:
    """The tracks of one source; call `update` once per frame, in order."""

    def __init__(self, config: TrackConfig, threshold: float, end_after: float, frame_s: float = 0.04):
        """`threshold`: the run's detect.threshold, below which a box is reported only as part of a track;
        `frame_s`: the camera's frame interval, seconds (the unit of `birth_frames` and of the Kalman step)."""
        self._config = config
        self._threshold = threshold
        self._end_after = end_after
        self._frame_s = frame_s
        # A track is born once seen this long (and twice at least): birth_frames frames of the camera.
        self._birth_s = (config.birth_frames - 1) * frame_s * 0.999
        self._tracks: list[Track] = []
        self._next_id = 1
        self._last_time = float("-inf")

    def update(self, detections: Detections, now: float, frame=None) -> tuple[Detections, TrackUpdate]:
        """Match this frame's detections (all down to `track.low`) to the tracks.

        Returns the detections to report: every confirmed track seen in this
        frame (whatever its score), then detections of at least `threshold`
        that belong to no confirmed track yet (track id -1); and what changed.
        """
        cfg = self._config
        tracks = self._tracks
        self._predict(tracks, self._steps(now))
        boxes, scores, classes = detections.xyxy.astype(np.float64), detections.scores, detections.class_ids
        high = np.flatnonzero(scores >= cfg.high)
        low = np.flatnonzero((scores >= cfg.low) & (scores < cfg.high))
        predicted = _xyah_to_xyxy(np.array([t.mean[:4] for t in tracks])) if tracks else np.zeros((0, 4))
        same_class = (np.array([t.class_id for t in tracks])[:, None] == classes[None, :]) if tracks else None
        matched: dict[int, int] = {}  # track index -> detection index

        def associate(track_idx: list[int], det_idx: np.ndarray, minimum: float) -> None:
            if not track_idx or len(det_idx) == 0:
                return
            overlap = iou(predicted[track_idx], boxes[det_idx]) * same_class[np.ix_(track_idx, det_idx)]
            for r, c in greedy_match(overlap, minimum):
                matched[track_idx[r]] = int(det_idx[c])

        confirmed = [i for i, t in enumerate(tracks) if t.confirmed]
        tentative = [i for i, t in enumerate(tracks) if not t.confirmed]
        associate(confirmed, high, cfg.match_iou)
        # Second chance: confirmed tracks seen in the previous frame, with the low-score detections.
        recent = [i for i in confirmed if i not in matched and tracks[i].last_seen >= self._last_time]
        associate(recent, low, 0.5)
        free_high = np.array([d for d in high if d not in matched.values()], dtype=np.int64)
        associate(tentative, free_high, cfg.match_iou)

        self._correct([tracks[i] for i in matched], boxes[list(matched.values())])
        started, ended, keep = [], [], []
        seen: dict[int, Track] = {}  # detection index -> its confirmed track, in this frame
        for i, track in enumerate(tracks):
            d = matched.get(i)
            if d is not None:
                self._hit(track, boxes[d], float(scores[d]), now, frame)
                if not track.confirmed and (track.hits >= cfg.birth_frames
                                            or (track.hits >= 2 and now - track.first_seen >= self._birth_s)):
                    self._confirm(track, started)
                if track.confirmed:
                    seen[d] = track
                keep.append(track)
            elif not track.confirmed:
                continue  # a tentative track must be seen in consecutive frames
            elif now - track.last_seen > self._end_after:
                ended.append(track)
            else:
                keep.append(track)
        taken = set(matched.values())
        for d in high:
            if d not in taken and scores[d] >= cfg.new_track:
                track = self._new(boxes[d], int(classes[d]), detections.labels[d], float(scores[d]), now, frame)
                if cfg.birth_frames <= 1:
                    self._confirm(track, started)
                    seen[int(d)] = track
                keep.append(track)
        self._tracks = keep
        self._last_time = now

        rows = sorted(seen)
        extra = [d for d in range(len(detections)) if d not in seen and scores[d] >= self._threshold]
        order = np.array(rows + extra, np.int64)
        ids = np.array([seen[d].id for d in rows] + [-1] * len(extra), np.int32)
        reported = detections[order].with_tracks(ids) if len(order) else Detections.empty().with_tracks(ids)
        return reported, TrackUpdate(tuple(started), tuple(ended), tuple(seen[d] for d in rows))

    def predict(self, now: float) -> Detections:
        """The confirmed tracks seen at the last update, each box moved to `now` by its Kalman velocity (the
        state stays as it is): a frame between those the network sees. Each moves on from its last detected
        box, not from the filter's smoothed one, which lags a walker: so a box never steps back between two
        detections. Scores are the tracks' last ones."""
        shown = [t for t in self._tracks if t.confirmed and t.last_seen >= self._last_time]
        if not shown:
            return Detections.empty().with_tracks(np.zeros(0, np.int32))
        detected = _xyxy_to_xyah(np.array([t.box for t in shown], np.float64))
        velocity = np.array([t.mean[4:] for t in shown])
        moved = detected + velocity * self._steps(now)
        moved[:, 3] = np.maximum(moved[:, 3], 1.0)
        boxes = _xyah_to_xyxy(moved).astype(np.float32)
        return Detections(boxes, np.array([t.score for t in shown], np.float32),
                          np.array([t.class_id for t in shown], np.int32), tuple(t.label for t in shown),
                          np.array([t.id for t in shown], np.int32))

    def _steps(self, now: float) -> float:
        """Frame intervals from the last update to `now` (one on the first)."""
        if self._last_time == float("-inf"):
            return 1.0
        return max(0.0, (now - self._last_time) / self._frame_s)

    def _confirm(self, track: Track, started: list[Track]) -> None:
        track.id = self._next_id
        self._next_id += 1
        started.append(track)

    def keep_best(self, frame) -> int:
        """The tracks whose best frame became `frame` in this update get one undrawn copy of it, shared.

        The frame goes on to be drawn in place (the draw stage): a snapshot must show its own box only.
        Copied only when a best frame changes (a track's score rising), not every frame. Returns how many
        tracks took the copy.
        """
        kept = None
        taken = 0
        for track in self._tracks:
            if track.best_frame is frame:
                if kept is None:
                    kept = dataclasses.replace(frame, image=frame.image.copy())
                track.best_frame = kept
                taken += 1
        return taken

    def close(self) -> list[Track]:
        """Every confirmed track still open, ended because the source ended."""
        ended = [t for t in self._tracks if t.confirmed]
        self._tracks = []
        return ended

    # ------------------------------------------------------------- Kalman

    def _new(self, box, class_id, label, score, now, frame) -> Track:
        z = _xyxy_to_xyah(box[None])[0]
        h = z[3]
        std = np.array([2 * _STD_POSITION * h, 2 * _STD_POSITION * h, 1e-2, 2 * _STD_POSITION * h,
                        10 * _STD_VELOCITY * h, 10 * _STD_VELOCITY * h, 1e-5, 10 * _STD_VELOCITY * h])
        track = Track(mean=np.r_[z, np.zeros(4)], cov=np.diag(std ** 2), class_id=class_id, label=label,
                      box=box.copy(), score=score, first_seen=now, last_seen=now)
        self._best(track, score, box, frame)
        return track

    @staticmethod
    def _predict(tracks: list[Track], steps: float) -> None:
        """Every track moved on by `steps` frame intervals: its velocity times that, its uncertainty grown by
        that many frames' noise (a random walk's variance grows with time)."""
        if not tracks:
            return
        mean = np.array([t.mean for t in tracks])
        cov = np.array([t.cov for t in tracks])
        h = mean[:, 3]
        std = np.stack([_STD_POSITION * h, _STD_POSITION * h, np.full_like(h, 1e-2), _STD_POSITION * h,
                        _STD_VELOCITY * h, _STD_VELOCITY * h, np.full_like(h, 1e-5), _STD_VELOCITY * h], axis=1)
        f = np.eye(8)
        f[:4, 4:] = steps * np.eye(4)
        mean = mean @ f.T
        cov = f @ cov @ f.T + np.einsum("ni,ij->nij", steps * std ** 2, np.eye(8))
        for track, m, c in zip(tracks, mean, cov):
            track.mean, track.cov = m, c

    @staticmethod
    def _correct(tracks: list[Track], boxes: np.ndarray) -> None:
        """The Kalman update of every matched track at once."""
        if not tracks:
            return
        z = _xyxy_to_xyah(boxes)
        mean = np.array([t.mean for t in tracks])
        cov = np.array([t.cov for t in tracks])
        h = mean[:, 3]
        r = np.stack([_STD_POSITION * h, _STD_POSITION * h, np.full_like(h, 1e-1), _STD_POSITION * h], axis=1) ** 2
        s = cov[:, :4, :4] + np.einsum("ni,ij->nij", r, np.eye(4))   # H P H^T + R, H picks the first four
        pht = cov[:, :, :4]                                            # P H^T
        gain = np.linalg.solve(s, pht.transpose(0, 2, 1)).transpose(0, 2, 1)
        mean = mean + np.einsum("nij,nj->ni", gain, z - mean[:, :4])
        cov = cov - gain @ s @ gain.transpose(0, 2, 1)
        for track, m, c in zip(tracks, mean, cov):
            track.mean, track.cov = m, c

    def _hit(self, track: Track, box: np.ndarray, score: float, now: float, frame) -> None:
        track.box = box.copy()
        track.score = score
        track.hits += 1
        track.last_seen = now
        self._best(track, score, box, frame)

    @staticmethod
    def _best(track: Track, score: float, box: np.ndarray, frame) -> None:
        if score > track.best_score:
            track.best_score, track.best_box, track.best_frame = score, box.copy(), frame
