"""From tracks to events: a track started or ended, a zone entered or left, a line crossed.

Two stages run after inference, per source and in frame order: `TrackStage`
gives every detection its track id (streamdet.tracking), `EventStage` turns what
changed into `Event`s on the FrameResult, counts them, and writes the best
frame of an ended track as a snapshot. Outputs (events JSONL, MQTT) publish
the events; the overlay draws the zones, lines and counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .config.events import EventsConfig, LineConfig, ZoneConfig, in_fractions
from .detections import FrameResult
from .errors import ConfigError, OutputError
from .config.sections import RecordingConfig
from .outputs.base import write_atomically, write_error
from .outputs.segments import Segments
from .tracking import Track, Tracker, TrackUpdate


@dataclass(frozen=True)
class Event:
    kind: str                      # start, end, zone_enter, zone_exit, line_cross
    source: str
    track: int
    label: str
    score: float                   # the track's best score so far
    box: tuple[float, ...]         # the track's box in this frame (pixels, x1 y1 x2 y2)
    time: str                      # wall-clock time of the frame, ISO 8601 UTC
    frame: int
    pts_s: float | None            # position in a video file
    zone: str | None = None
    line: str | None = None
    direction: str | None = None   # line_cross: in or out
    duration_s: float | None = None  # end: from the first to the last sighting
    snapshot: str | None = None    # end: the JPEG of the best frame, when events.snapshots is set
    clip: str | None = None        # end: the video of the track with pre- and post-capture, when events.clips is set
    clip_url: str | None = None    # end: where the web view serves that clip, when it is on

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Scene:
    """A source's zones and lines in pixels."""

    zones: dict[str, np.ndarray]   # name -> (n, 2) float32 polygon
    lines: dict[str, np.ndarray]   # name -> (2, 2) float32 segment

    @classmethod
    def of(cls, events: EventsConfig, width: int, height: int, source: str) -> Scene:
        """The config's shapes for a frame of this size; raises ConfigError for a point outside the frame."""
        def pixels(shape: ZoneConfig | LineConfig, kind: str) -> np.ndarray:
            points = np.array(shape.points, np.float32)
            if in_fractions(shape.points):
                points *= np.array([width, height], np.float32)
            outside = [p for p in points.tolist() if p[0] > width or p[1] > height]
            if outside:
                x, y = outside[0]
                raise ConfigError(f"source '{source}': {kind} '{shape.name}': point [{x:g}, {y:g}] is outside the "
                                  f"{width}x{height} frame; give pixels inside it, or fractions from 0 to 1")
            return points

        return cls({z.name: pixels(z, "zone") for z in events.zones},
                   {line.name: pixels(line, "line") for line in events.lines})

    def __bool__(self) -> bool:
        return bool(self.zones or self.lines)


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


@dataclass
class Counts:
    """What happened at one source, for the summary and the overlay."""

    tracks: dict[str, int] = field(default_factory=dict)          # label -> tracks started
    zones: dict[str, dict[str, int]] = field(default_factory=dict)  # zone -> enter/exit/inside
    lines: dict[str, dict[str, int]] = field(default_factory=dict)  # line -> in/out
    clips: int | None = None  # event clips made (streamdet.clips); None where the source makes none

    def copy(self) -> Counts:
        return Counts(dict(self.tracks), {k: dict(v) for k, v in self.zones.items()},
                      {k: dict(v) for k, v in self.lines.items()}, self.clips)


@dataclass(frozen=True)
class SceneState:
    """A source's zones and lines with their counts as they stood at one frame (the counts a copy)."""

    scene: Scene
    counts: Counts


class TrackStage:
    """The tracking stage: one tracker per source (None where tracking is off)."""

    name = "track"

    def __init__(self, trackers: list[Tracker | None], snapshots: list[bool]):
        self._trackers = trackers
        self._snapshots = snapshots  # the best frame of each track is kept only for snapshots

    def __call__(self, result: FrameResult) -> FrameResult:
        tracker = self._trackers[result.source_id]
        if tracker is None:
            return result
        frame = result.frame if self._snapshots[result.source_id] else None
        detections, update = tracker.update(result.detections, result.frame.stream_time, frame)
        return dataclasses.replace(result, detections=detections, tracks=update)

    def finish(self, source_id: int) -> list[Track]:
        tracker = self._trackers[source_id]
        return tracker.close() if tracker is not None else []


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
        self._wall_offset = time.time() - time.monotonic()
        self._run_stamp = time.strftime("%Y%m%d-%H%M%S")
        for config in configs:
            if config.snapshots:
                folder = Path(config.snapshots)
                if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
                    raise OutputError(f"events.snapshots '{folder}': not a writable folder; create it first")
        # keep_days / keep_gb: each source's snapshots are entered in its record, and only those expire.
        self._snapshot_files = [Segments(str(Path(c.snapshots) / f"{n}_{{start}}.jpg"), RecordingConfig(
            keep_hours=c.keep_days * 24, keep_gb=c.keep_gb)) if c.snapshots and (c.keep_days or c.keep_gb) else None
            for c, n in zip(configs, names)]

    def __call__(self, result: FrameResult) -> FrameResult:
        i = result.source_id
        events = self._events(i, result, result.tracks or TrackUpdate())
        scene = SceneState(self.scenes[i], self.counts[i].copy()) if self.scenes[i] else None
        if not events and scene is None:
            return result
        return dataclasses.replace(result, events=tuple(events), scene=scene)

    def _events(self, i: int, result: FrameResult, update: TrackUpdate) -> list[Event]:
        frame = result.frame
        stamp = dt.datetime.fromtimestamp(frame.captured + self._wall_offset, dt.timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
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
            for name, segment in scene.lines.items():
                side = _side(segment, point)
                if side == 0:
                    continue  # standing on the line: it counts once the object is off it, on one side or the other
                last = sides.get(name)
                if last is not None and (last[0] < 0) != (side < 0) and _through(segment, last[1], point):
                    direction = "in" if last[0] < 0 else "out"
                    counts.lines[name][direction] += 1
                    out.append(event("line_cross", track, track.box, line=name, direction=direction))
                sides[name] = (side, point)
            where[track.id] = (inside, sides)
        for track in update.ended:
            out += self._ended(i, track, event)
        for name in counts.zones:
            counts.zones[name]["inside"] = sum(1 for zones, _ in where.values() if name in zones)
        return out

    def _ended(self, i: int, track, event) -> list[Event]:
        out = []
        zones, _ = self._where[i].pop(track.id, (set(), {}))
        for name in sorted(zones):  # leaving the picture inside a zone is leaving the zone
            self.counts[i].zones[name]["exit"] += 1
            out.append(event("zone_exit", track, track.box, zone=name))
        out.append(event("end", track, track.box, duration_s=round(track.last_seen - track.first_seen, 3),
                         snapshot=self._snapshot(i, track)))
        return out

    def _snapshot(self, i: int, track) -> str | None:
        folder = self._configs[i].snapshots
        if not folder or track.best_frame is None:
            return None
        image = track.best_frame.image.copy()
        x1, y1, x2, y2 = (int(v) for v in track.best_box)
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 255), max(2, min(image.shape[:2]) // 200))
        base = Path(folder) / f"{self._names[i]}_{self._run_stamp}_track{track.id}"
        path, n = base.with_suffix(".jpg"), 1
        while path.exists():  # never over a file that is there already (a run started in the same second)
            path, n = Path(f"{base}-{n}.jpg"), n + 1
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        write_atomically(path, data.tobytes(), f"snapshot of track {track.id}")
        files = self._snapshot_files[i]
        if files is not None:
            try:
                files.record(path, time.time())
                files.expire(path, time.time())
            except OSError as exc:
                raise write_error(f"snapshot of track {track.id}", exc) from None
        return str(path)

    def finish(self, source_id: int, last: FrameResult | None) -> list[Event]:
        """The source ended: its tracks end with it."""
        if last is None:
            return []
        update = TrackUpdate(ended=tuple(self._track.finish(source_id)))
        return self._events(source_id, last, update)
