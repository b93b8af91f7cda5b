"""What the review pages show: this run's ended tracks (newest first) and the files they and the
recordings left behind.

The store is filled on the output thread (`add`) and read on the server's under one lock. It keeps the
newest `MAX_EVENTS` ended tracks; the files it serves are only those its entries name (a snapshot, a
clip), looked up by name in a dict, so a requested name is never joined to a folder.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..outputs.sidecar import sidecar_path
from ..urls import link

# Ended tracks kept for the page; the oldest go (with their files' entries) beyond it.
MAX_EVENTS = 10_000
# Tracks that started but have not ended yet, whose zones and lines are being gathered; a run
# with more open at once than this forgets the places of the oldest (their end still shows).
MAX_OPEN = 10_000
DEFAULT_LIMIT = 50
MAX_LIMIT = 500

# A camera's recording segments now: (path, start as wall time in epoch seconds), oldest first.
ListSegments = Callable[[], list[tuple[Path, float]]]
# Whether a snapshot or clip is still the very file the run wrote (streamdet.outputs.segments.Segments.holds).
Holds = Callable[[Path], bool]


@dataclass(frozen=True)
class Reviewed:
    """One ended track as the review page shows it."""

    id: int                 # this run's sequence number: newer tracks have larger ids (the paging cursor)
    source: str
    track: int
    label: str
    score: float
    time: str               # when it ended, ISO 8601 UTC (the end event's time)
    epoch: float            # the same as seconds since 1970, for filtering
    duration_s: float | None
    zones: tuple[str, ...]
    lines: tuple[str, ...]
    snapshot: str | None    # its name under /snapshots/, if there is one
    clip: str | None        # its name under /clips/, if there is one

    def to_dict(self) -> dict:
        return {"id": self.id, "source": self.source, "track": self.track, "label": self.label,
                "score": self.score, "time": self.time, "duration_s": self.duration_s,
                "zones": list(self.zones), "lines": list(self.lines),
                "snapshot": link("/snapshots/", self.snapshot) if self.snapshot else None,
                "clip": link("/clips/", self.clip) if self.clip else None}


@dataclass(frozen=True)
class Query:
    """What /api/events asks for; `after`/`before` are epoch seconds, `cursor` an id to go below."""

    source: str | None = None
    label: str | None = None
    zone: str | None = None     # a zone or a line the track was in or crossed
    after: float | None = None
    before: float | None = None
    cursor: int | None = None
    limit: int = DEFAULT_LIMIT
    cameras: frozenset[str] | None = None  # the asker's cameras (streamdet.web.access); None: every one


def parse_time(text: str, name: str) -> float:
    """An ISO 8601 time (as the events carry: 2026-12-04T16:07:14.123Z; no zone means UTC) as epoch seconds."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r} is no ISO 8601 time; give one such as 2026-12-04T16:07:14Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


@dataclass
class _Open:
    zones: set[str] = field(default_factory=set)
    lines: set[str] = field(default_factory=set)


class EventStore:
    """The newest ended tracks of this run and the files they name; thread-safe."""

    def __init__(self, max_events: int = MAX_EVENTS, holds: Holds | None = None):
        """`holds`: asked before a snapshot or clip is served, so a file swapped in under its name is not;
        without it, each is served while it is as it was when its track ended (inode, size, change time: a
        freed inode is soon another file's)."""
        self._holds = holds or self._same_inode
        self._lock = threading.Lock()
        self._inodes: dict[Path, tuple[int, int, int]] = {}
        self._events: deque[Reviewed] = deque(maxlen=max_events)
        self._open: OrderedDict[tuple[str, int], _Open] = OrderedDict()
        self._snapshots: dict[str, Path] = {}
        self._clips: dict[str, Path] = {}
        self._cameras: dict[tuple[str, str], str] = {}  # ("snapshot" or "clip", its name) -> the camera's name
        self._next_id = 1

    # ------------------------------------------------------- output thread

    def add(self, events) -> None:
        """Take a frame's events (streamdet.events.Event); an `end` becomes an entry."""
        for event in events:
            key = (event.source, event.track)
            if event.kind == "end":
                self._end(event, self._open.pop(key, None) or _Open())
                continue
            place = self._open.get(key)
            if place is None:
                place = self._open[key] = _Open()
                if len(self._open) > MAX_OPEN:
                    self._open.popitem(last=False)
            if event.zone:
                place.zones.add(event.zone)
            if event.line:
                place.lines.add(event.line)

    def _end(self, event, place: _Open) -> None:
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self._forget(self._events[0])
            entry = Reviewed(
                id=self._next_id, source=event.source, track=event.track, label=event.label, score=event.score,
                time=event.time, epoch=parse_time(event.time, "time"), duration_s=event.duration_s,
                zones=tuple(sorted(place.zones)), lines=tuple(sorted(place.lines)),
                snapshot=self._enter(self._snapshots, event.snapshot), clip=self._enter(self._clips, event.clip))
            self._next_id += 1
            self._events.append(entry)
            for kind, name in (("snapshot", entry.snapshot), ("clip", entry.clip)):
                if name is not None:
                    self._cameras[(kind, name)] = entry.source

    def _forget(self, entry: Reviewed) -> None:
        for kind, files, name in (("snapshot", self._snapshots, entry.snapshot), ("clip", self._clips, entry.clip)):
            self._cameras.pop((kind, name), None)
            path = files.pop(name, None)
            if path is not None and path not in files.values():
                self._inodes.pop(path, None)

    def _enter(self, files: dict[str, Path], path: str | None) -> str | None:
        name = _enter(files, path)
        if name is not None and Path(path) not in self._inodes:
            try:
                self._inodes[Path(path)] = _identity(os.lstat(path))
            except (OSError, ValueError):
                pass  # not there: never served
        return name

    def _same_inode(self, path: Path) -> bool:
        with self._lock:
            inode = self._inodes.get(path)
        try:
            return inode is not None and _identity(os.lstat(path)) == inode
        except OSError:
            return False


    # -------------------------------------------------------- server thread

    def find(self, query: Query) -> list[Reviewed]:
        """Newest first, at most `query.limit`."""
        found = []
        with self._lock:
            for entry in reversed(self._events):
                if len(found) >= query.limit:
                    break
                if _matches(entry, query):
                    found.append(entry)
        return found

    def snapshot(self, name: str) -> Path | None:
        with self._lock:
            return self._snapshots.get(name)

    def clip(self, name: str) -> Path | None:
        with self._lock:
            return self._clips.get(name)

    def camera_of(self, kind: str, name: str) -> str | None:
        """The camera whose ended track named the snapshot or clip `name` (kind "snapshot" or "clip")."""
        with self._lock:
            return self._cameras.get((kind, name))

    def still_written(self, path: Path | None) -> Path | None:
        """`path` while it is still the very file written (what may be served), else None."""
        return path if path is not None and self._holds(path) else None


def _matches(entry: Reviewed, q: Query) -> bool:
    return ((q.cursor is None or entry.id < q.cursor)
            and (q.source is None or entry.source == q.source)
            and (q.cameras is None or entry.source in q.cameras)
            and (q.label is None or entry.label == q.label)
            and (q.zone is None or q.zone in entry.zones or q.zone in entry.lines)
            and (q.after is None or entry.epoch > q.after)
            and (q.before is None or entry.epoch < q.before))


def _enter(files: dict[str, Path], path: str | None) -> str | None:
    """The name `path` is served by: its file name, made unique with a number if another file has it."""
    if not path:
        return None
    path = Path(path)
    name, n = path.name, 1
    while files.get(name, path) != path:
        name, n = f"{n}-{path.name}", n + 1
    files[name] = path
    return name


def servable(path: Path | None) -> Path | None:
    """`path` if it is still a regular file (not a link put in its place), else None."""
    if path is None:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return path if stat.S_ISREG(st.st_mode) else None


def detections_of(segment: Path) -> Path | None:
    """A segment's detections file (a copy recording's, streamdet.outputs.sidecar) when one is beside it."""
    return servable(sidecar_path(segment))


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_ctime_ns
