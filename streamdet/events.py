"""From tracks to events: a track started or ended, a zone entered or left, a line crossed.

Two stages run after inference, per source and in frame order: `TrackStage`
gives every detection its track id (streamdet.tracking), `EventStage` turns what
changed into `Event`s (streamdet.scene) on the FrameResult and counts them; for an
ended track it names the snapshot of its best frame and hands the frame on
(`FrameResult.snapshots`), which the snapshots output writes. Outputs (events
JSONL, MQTT) publish the events; the overlay draws the zones, lines and counts.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from .clock import iso, wall_time
from .config.events import EventsConfig
from .detections import FrameResult
from .outputs.snapshots import Snapshot
from .sources.rate import CameraClock
from .scene import Counts, Event, Scene, SceneState
from .tracking import Track, Tracker, TrackUpdate

log = logging.getLogger("streamdet.events")


def _anchor(box) -> tuple[float, float]:
    """Where an object stands: the middle of its box's bottom edge."""
    return (float(box[0] + box[2]) / 2, float(box[3]))


def _side(segment: np.ndarray, point: tuple[float, float]) -> float:
    """> 0 right of the segment's direction on screen (y grows downwards), < 0 left."""
    (ax, ay), (bx, by) = segment
    return (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)


def _through(segment: np.ndarray, p: tuple[float, float], q: tuple[float, float]) -> bool:
    """Whether the move p -> q (p and q on opposite sides of the segment's line) passes the segment itself."""
    move = np.array([p, q], np.float32)
    return _side(move, tuple(segment[0])) * _side(move, tuple(segment[1])) <= 0


def _crossed(segment: np.ndarray, point: tuple[float, float], sides: dict, name: str, margin: float) -> str | None:
    """`in` or `out` when the track at `point` has crossed the line since it was last on a side, else None.

    `sides[name]` is the side the track was last known on and its point there. Being known on the other side
    takes being `margin` pixels past the line: a point that jitters on it changes nothing, so a track
    standing on a line is never counted in and out. Until a track is past the margin once, the side it was
    first seen on stands (a track that appears just beside the line and walks over it still counts).
    """
    side = _side(segment, point)
    if side == 0:
        return None  # standing on the line: it counts once the object is off it, on one side or the other
    last = sides.get(name)
    if last is None or (last[0] < 0) == (side < 0):
        sides[name] = (side, point)
        return None
    length = float(np.hypot(*(segment[1] - segment[0])))
    if abs(side) / length < margin:
        return None  # on the other side, not yet far enough past the line to count
    sides[name] = (side, point)
    if not _through(segment, last[1], point):
        return None  # round the line's end, not over it
    return "in" if last[0] < 0 else "out"


class TrackStage:
    """The tracking stage: one tracker per source (None where tracking is off)."""

    name = "track"

    def __init__(self, trackers: list[Tracker | None], snapshots: list[bool]):
        self._trackers = trackers
        self._snapshots = snapshots  # the best frame of each track is kept only for snapshots
        self._clocks = [CameraClock() for _ in trackers]  # what the trackers step by: not bursts of arrivals

    def __call__(self, result: FrameResult) -> FrameResult:
        tracker = self._trackers[result.source_id]
        if tracker is None:
            return result
        now = self._clocks[result.source_id](result.frame)
        if result.predicted:
            # Between the frames the network sees (detect.fps): the tracks where they would be now. Nothing is
            # decided here: zones and lines are decided where the tracks were detected.
            return dataclasses.replace(result, detections=tracker.predict(now), tracks=TrackUpdate())
        frame = result.frame if self._snapshots[result.source_id] else None
        detections, update = tracker.update(result.detections, now, frame)
        if frame is not None:
            tracker.keep_best(frame)  # before the draw stage draws on the frame
        return dataclasses.replace(result, detections=detections, tracks=update)

    def finish(self, source_id: int) -> list[Track]:
        tracker = self._trackers[source_id]
        return tracker.close() if tracker is not None else []

    def extend(self, other: TrackStage) -> None:
        """Sources added while the run goes (a reload): `other`'s, made for them alone, after this one's."""
        self._trackers += other._trackers
        self._snapshots += other._snapshots
        self._clocks += other._clocks


class EventStage:
    """The events stage: start/end from the tracker, zone and line events from where tracks stand."""

    name = "events"

    def __init__(self, track: TrackStage, configs: list[EventsConfig], scenes: list[Scene], names: list[str]):
        self._track = track
        self._configs = configs
        self.scenes = scenes
        self._names = names
        self.counts = [Counts(zones={z: {"enter": 0, "exit": 0, "inside": 0} for z in s.zones},
                              lines={n: {"in": 0, "out": 0} for n in s.lines}) for s in scenes]
        # Per source, per track: the zones it is in, and per line the side it was last seen on (and where).
        self._where: list[dict[int, tuple[set[str], dict]]] = [{} for _ in scenes]
        self._run_stamp = time.strftime("%Y%m%d-%H%M%S")

    def __call__(self, result: FrameResult) -> FrameResult:
        i = result.source_id
        if result.frame.size != self.scenes[i].size and self.scenes[i]:
            self._resize(i, result.frame.size)
        snapshots: list[Snapshot] = []
        events = self._events(i, result, result.tracks or TrackUpdate(), snapshots)
        scene = SceneState(self.scenes[i], self.counts[i].copy()) if self.scenes[i] else None
        if not events and scene is None:
            return result
        return dataclasses.replace(result, events=tuple(events), scene=scene, snapshots=tuple(snapshots))

    def _resize(self, i: int, size: tuple[int, int]) -> None:
        """Pictures of another size (a camera back at another resolution, or a sub-stream's camera whose main
        stream came after the start): the shapes given in fractions go onto it; the counts go on."""
        before = self.scenes[i].size
        self.scenes[i] = Scene.resized(self._configs[i], *size)
        for _, sides in self._where[i].values():
            sides.clear()  # where tracks stood is in the old pixels: no crossing is measured across the change
        if before != (0, 0):
            log.info("%s: the picture is %dx%d now (was %dx%d); zones and lines given in fractions follow it, "
                     "those given in pixels stay", self._names[i], *size, *before)

    def _events(self, i: int, result: FrameResult, update: TrackUpdate, snapshots: list[Snapshot]) -> list[Event]:
        """This frame's events; the snapshots of the tracks that ended are added to `snapshots`."""
        frame = result.frame
        stamp = iso(wall_time(frame.captured))
        pts = None if frame.pts_ms is None else round(frame.pts_ms / 1000, 3)

        def event(kind: str, track, box, **extra) -> Event:
            return Event(kind=kind, source=self._names[i], track=track.id, label=track.label,
                         score=round(track.best_score, 4), box=tuple(round(float(v), 1) for v in box),
                         time=stamp, frame=frame.index, pts_s=pts, **extra)

        counts, scene, where = self.counts[i], self.scenes[i], self._where[i]
        out = []
        for track in update.started:
            counts.tracks[track.label] = counts.tracks.get(track.label, 0) + 1
            out.append(event("start", track, track.box))
        for track in update.active:
            point = _anchor(track.box)
            zones_before, sides = where.get(track.id, (set(), {}))
            inside = {name for name, poly in scene.zones.items() if cv2.pointPolygonTest(poly, point, False) >= 0}
            for name in sorted(inside - zones_before):
                counts.zones[name]["enter"] += 1
                out.append(event("zone_enter", track, track.box, zone=name))
            for name in sorted(zones_before - inside):
                counts.zones[name]["exit"] += 1
                out.append(event("zone_exit", track, track.box, zone=name))
            margin = self._configs[i].cross_margin * float(track.box[3] - track.box[1])
            for name, segment in scene.lines.items():
                crossed = _crossed(segment, point, sides, name, margin)
                if crossed is not None:
                    counts.lines[name][crossed] += 1
                    out.append(event("line_cross", track, track.box, line=name, direction=crossed))
            where[track.id] = (inside, sides)
        for track in update.ended:
            out += self._ended(i, track, event, snapshots)
        for name in counts.zones:
            counts.zones[name]["inside"] = sum(1 for zones, _ in where.values() if name in zones)
        return out

    def _ended(self, i: int, track, event, snapshots: list[Snapshot]) -> list[Event]:
        out = []
        zones, _ = self._where[i].pop(track.id, (set(), {}))
        for name in sorted(zones):  # leaving the picture inside a zone is leaving the zone
            self.counts[i].zones[name]["exit"] += 1
            out.append(event("zone_exit", track, track.box, zone=name))
        snapshot = self._snapshot(i, track)
        if snapshot is not None:
            snapshots.append(snapshot)
        out.append(event("end", track, track.box, duration_s=round(track.last_seen - track.first_seen, 3),
                         snapshot=str(snapshot.path) if snapshot is not None else None))
        return out

    def _snapshot(self, i: int, track) -> Snapshot | None:
        """The track's best frame with the name it will have; the snapshots output writes it."""
        folder = self._configs[i].snapshots
        if not folder or track.best_frame is None:
            return None
        name = self._names[i]
        base = Path(folder.replace("{name}", name)) / f"{name}_{self._run_stamp}_track{track.id}"
        path, n = base.with_suffix(".jpg"), 1
        while path.exists():  # never over a file that is there already (a run started in the same second)
            path, n = Path(f"{base}-{n}.jpg"), n + 1
        box = tuple(int(v) for v in track.best_box)
        return Snapshot(path, track.best_frame.image, box, track.id)

    def extend(self, other: EventStage) -> None:
        """Sources added while the run goes (a reload): `other`'s, made for them alone, after this one's."""
        self._track.extend(other._track)
        self._configs += other._configs
        self.scenes += other.scenes
        self._names += other._names
        self.counts += other.counts
        self._where += other._where

    def finish(self, source_id: int, last: FrameResult) -> FrameResult:
        """The source ended: its tracks end with it. `last` (its last frame) again, with their events and snapshots."""
        snapshots: list[Snapshot] = []
        update = TrackUpdate(ended=tuple(self._track.finish(source_id)))
        events = self._events(source_id, last, update, snapshots)
        return dataclasses.replace(last, events=tuple(events), snapshots=tuple(snapshots))
