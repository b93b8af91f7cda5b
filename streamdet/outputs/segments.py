"""A camera's recording as a series of files: names from a template, and the oldest ones expired.

Expiry deletes only what this feature wrote: each file is entered in the feature's record (hidden, beside
the files: a recording's `.T.segments`, event clips' `.T.clips`, so the two named alike in one folder never
expire each other's) when its name is taken; only recorded files still the very file written are deleted or
served. Being written, a file is known by its inode (held open, so it cannot be reused) and is never
expired; finished, by its inode, size and change time (a freed inode given to another file under the name
does not match). Look-alikes (a file copied in, another camera's, an impossible date) are left alone.

The record is read once, when the series is set up; then expiry costs the same however long it is: files
are kept in memory in start order with their sizes, new lines appended, and the record rewritten only once
it holds as many lines again as files.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..config.sections import RecordingConfig
from .base import write_atomically

log = logging.getLogger("streamdet.recording")

START_FORMAT = "%Y%m%d-%H%M%S"
_LAST_START = 1e11  # a record's start beyond this (year 5138) or before 1970 is no time a file was written
_BAD_LINES_TOLD = 5
# A record kept in memory only (nothing expires) remembers this many files, as the review page its events.
_MEMORY_ONLY = 10_000


@dataclass(frozen=True)
class Retention:
    """How long a series of files is kept: its oldest go past `keep_hours` or beyond `keep_gb` (0: no limit).
    A recording's settings (RecordingConfig) hold the same two."""

    keep_hours: float = 0
    keep_gb: float = 0


def segment_path(template: str, wall_time: float, tag: str = "", n: int = 0) -> Path:
    """The name of a segment starting at `wall_time`: `{start}` is its local time, `-n` after it when `n`
    (the n-th name taken for that second), then `tag` (an event clip's `_track7`)."""
    stamp = time.strftime(START_FORMAT, time.localtime(wall_time))
    return Path(template.replace("{start}", f"{stamp}-{n}{tag}" if n else stamp + tag))


@dataclass(frozen=True)
class Segment:
    """One file of the record: name in the folder, start (wall time), inode; once finished, size and ctime."""

    name: str
    start: float
    inode: int
    size: int | None = None
    ctime_ns: int | None = None

    def line(self) -> str:
        item = {"name": self.name, "start": self.start, "inode": self.inode}
        if self.size is not None:
            item.update(size=self.size, ctime_ns=self.ctime_ns)
        return json.dumps(item) + "\n"

    def sealed(self, st: os.stat_result) -> Segment:
        return replace(self, size=st.st_size, ctime_ns=st.st_ctime_ns)

    def matches(self, st: os.stat_result) -> bool:
        """`st` (an lstat) is this file: a regular file, the inode written, and once finished unchanged since."""
        return (stat.S_ISREG(st.st_mode) and st.st_ino == self.inode
                and (self.size is None or (st.st_size == self.size and st.st_ctime_ns == self.ctime_ns)))


def parse_line(line: str) -> Segment:
    """A record line as a Segment; ValueError naming what is wrong with it."""
    try:
        item = json.loads(line)
        name, start, inode = item["name"], float(item["start"]), int(item["inode"])
        size, ctime_ns = item.get("size"), item.get("ctime_ns")
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise ValueError(f"not a record line ({type(exc).__name__})") from None
    if not isinstance(name, str) or "/" in name or "\0" in name or name in ("", ".", ".."):
        raise ValueError(f"name {name!r} is no file name")
    if not (math.isfinite(start) and 0 <= start < _LAST_START):
        raise ValueError(f"start {item['start']!r} is no time")
    if (size is None) != (ctime_ns is None) or not all(v is None or type(v) is int for v in (size, ctime_ns)):
        raise ValueError("size and ctime_ns must be whole numbers, both or neither")
    return Segment(name, start, inode, size, ctime_ns)


class Segments:
    """File names for `template` (with `{name}` already filled in, `{start}` in the file name) and their expiry.

    `kind` names the record (`segments` for a recording, `clips` for event clips); `persist=False` keeps it
    in memory only (snapshots with no retention: what is served is still checked). Thread-safe.
    """

    def __init__(self, template: str, settings: Retention | RecordingConfig, kind: str = "segments",
                 persist: bool = True):
        self.template = template
        self.settings = settings
        self.folder = Path(template).parent
        # The record: one per template and feature, hidden, and no segment name of any template ends like it.
        self.index = self.folder / f".{Path(template).name}.{kind}"
        self._persist = persist
        head, _, tail = Path(template).name.partition("{start}")
        # Only for counting look-alikes the record does not hold; never a reason to delete.
        self._look_alike = re.compile(re.escape(head) + r"\d{8}-\d{6}(?:-\d+)?(?:_track\d+)?" + re.escape(tail)
                                      + r"\Z")
        self._strangers_told = False
        self._lock = threading.RLock()
        self._files: dict[str, Segment] = {}    # what is ours, by name
        self._order: list[str] = []             # their names, oldest start first
        self._sizes: dict[str, int] = {}        # finished files' sizes
        self._total = 0                         # their sum
        self._held: dict[str, int] = {}         # files being written: a descriptor that keeps the inode theirs
        self._lines = 0                         # lines in the record on disk
        self._loaded = False
        self.load()  # now, as the run is put together: never on the thread that handles the frames

    # ---------------------------------------------------------------- the record

    def load(self) -> None:
        """Read the record once (the only step whose cost grows with it); a bad line is skipped with a warning."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            data, taken_over = self._read()
            found: dict[str, Segment] = {}
            bad = 0
            lines = data.decode("utf-8", errors="replace").splitlines()
            for number, line in enumerate(lines, 1):
                try:
                    segment = parse_line(line)
                except ValueError as exc:
                    bad += 1
                    if bad <= _BAD_LINES_TOLD:
                        log.warning("%s: line %d skipped: %s", self.index, number, exc)
                    continue
                if taken_over and "_track" not in segment.name:
                    continue  # the recording's, in the record clips shared with it before they had their own
                found.pop(segment.name, None)  # a later line (the file finished) stands for the name
                found[segment.name] = segment
            if bad > _BAD_LINES_TOLD:
                log.warning("%s: %d more bad lines skipped", self.index, bad - _BAD_LINES_TOLD)
            self._lines = len(lines)
            for segment in sorted(found.values(), key=lambda s: s.start):
                st = self._lstat(segment.name)
                if st is None or not segment.matches(st):
                    continue  # deleted, or no longer the file written
                if segment.size is None:
                    segment = segment.sealed(st)  # written by a run that ended before it finished the file
                self._add(segment)
            if taken_over or len(self._files) != len(found) or bad or any(s.size is None for s in found.values()):
                self._compact()
            if taken_over and self._files:
                log.info("%s: %d clip(s) taken over from %s into %s", self.folder, len(self._files), taken_over,
                         self.index.name)

    def _read(self) -> tuple[bytes, str | None]:
        """The record's bytes; for clips with none yet, the one they shared with a recording before (its name)."""
        shared = self.index.with_suffix(".segments")
        if not self._persist or self.index.is_file() or self.index.suffix != ".clips" or not shared.is_file():
            return (self.index.read_bytes() if self._persist and self.index.exists() else b""), None
        return shared.read_bytes(), shared.name

    def _lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.lstat(self.folder / name)
        except OSError:
            return None

    def _add(self, segment: Segment) -> None:
        """Enter `segment`, or what is known of it now (finished: its size) when its name is entered already."""
        old = self._files.get(segment.name)
        self._files[segment.name] = segment
        if old is not None:
            self._total -= self._sizes.pop(segment.name, 0)
        elif not self._order or self._files[self._order[-1]].start <= segment.start:
            self._order.append(segment.name)
        else:
            bisect.insort(self._order, segment.name, key=lambda name: self._files[name].start)
        if segment.size is not None:
            self._sizes[segment.name] = segment.size
            self._total += segment.size

    def _append(self, segment: Segment) -> None:
        """One whole line at the end of the record, synced before the segment gets any frame."""
        if not self._persist:
            return
        fd = os.open(self.index, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            # A line cut off by a crash or a full disk is ended first, so it cannot swallow this one.
            lead = "\n" if size and os.pread(fd, 1, size - 1) != b"\n" else ""
            data = (lead + segment.line()).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._lines += 1

    def _compact(self) -> None:
        """The record rewritten with what is ours now."""
        if self._persist:
            text = "".join(self._files[name].line() for name in self._order)
            write_atomically(self.index, text.encode(), str(self.index))
        self._lines = len(self._order)

    # ---------------------------------------------------------------- writers

    def path_for(self, wall_time: float, tag: str = "") -> Path:
        """A new segment starting at `wall_time`: its name taken (created empty) and entered in the record.

        `tag` follows the start in the name (an event clip's `_track7`). The name is taken with O_EXCL, so
        neither a file that exists nor one another writer takes at the same moment is ever written over.
        """
        n = 0
        while True:
            try:
                return self.take(segment_path(self.template, wall_time, tag, n), wall_time)
            except FileExistsError:
                n += 1

    def take(self, path: Path, wall_time: float) -> Path:
        """Create `path`, named already (an event clip's, named when its track started), and enter it in the
        record as being written; FileExistsError when a file is there (it is never written over)."""
        self.load()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self._hold(fd, Segment(path.name, wall_time, 0))
        except BaseException:
            path.unlink(missing_ok=True)  # not in the record: it would never expire
            raise
        return path

    def record(self, path: Path, wall_time: float, whole: bool = True) -> None:
        """Enter a file named by its writer in the record: `whole` (a snapshot, written under its final name)
        or still being written (a copy recording's detections file, until `finish`)."""
        self.load()
        if whole:
            st = os.lstat(path)
            self._enter(Segment(path.name, wall_time, st.st_ino).sealed(st), None)
            return
        self._hold(os.open(path, os.O_RDONLY), Segment(path.name, wall_time, 0))

    def _hold(self, fd: int, segment: Segment) -> None:
        """Enter a file being written, its inode held by `fd` (closed if it cannot be entered)."""
        try:
            self._enter(replace(segment, inode=os.fstat(fd).st_ino), fd)
        except BaseException:
            os.close(fd)
            raise

    def _enter(self, segment: Segment, fd: int | None) -> None:
        with self._lock:
            self._append(segment)
            self._add(segment)
            if fd is not None:
                self._held[segment.name] = fd
            if not self._persist and len(self._order) > _MEMORY_ONLY:
                self._forget(self._files[self._order.pop(0)])

    def finish(self, path: Path) -> None:
        """`path` is written: its size and change time join its inode in the record. Never raises: a file gone
        or a record not written (a failing disk) leaves it known by its inode; the writer's error is reported."""
        with self._lock:
            fd = self._held.pop(path.name, None)
            segment = self._files.get(path.name)
            if fd is None:
                return
            try:
                st = os.lstat(path)
                if segment is not None and st.st_ino == os.fstat(fd).st_ino and segment.matches(st):
                    self._append(segment.sealed(st))
                    self._add(segment.sealed(st))
            except OSError:
                pass  # see above
            finally:
                os.close(fd)

    def close(self) -> None:
        """Let go of the files still held (a writer that failed): known by their inode till the next run."""
        with self._lock:
            for fd in self._held.values():
                os.close(fd)
            self._held.clear()

    # ---------------------------------------------------------------- readers

    def holds(self, path: Path) -> bool:
        """`path` is a file of this record and still the very file written (what may be served)."""
        path = Path(path)
        if path.parent != self.folder:
            return False
        with self._lock:
            segment = self._files.get(path.name)
            if segment is None:
                return False
            st = self._lstat(path.name)
            return st is not None and segment.matches(st)

    def ours(self) -> list[tuple[Path, float]]:
        """This camera's segments that are still there, oldest first, with their start times (only the
        videos: a copy recording's detections files are in the record too, and expire with the rest)."""
        self.load()
        suffix = Path(self.template).suffix
        with self._lock:
            order = [self._files[n] for n in self._order]
        return [(self.folder / s.name, s.start) for s in order
                if Path(s.name).suffix == suffix and (st := self._lstat(s.name)) is not None and s.matches(st)]

    # ---------------------------------------------------------------- expiry

    def expire(self, current: Path | None, now: float) -> list[Path]:
        """Delete the oldest segments past `keep_hours` or beyond `keep_gb`; never `current` nor any file still
        being written. Returns those deleted. Its cost is that of the files deleted, not of the record."""
        keep_s = self.settings.keep_hours * 3600
        keep_bytes = self.settings.keep_gb * 1e9
        if not keep_s and not keep_bytes:
            return []
        self.load()
        with self._lock:
            deleted = self._expire(current, now, keep_s, keep_bytes)
            if self._lines > 2 * len(self._order) + 64:
                self._compact()  # the deleted files' lines: once the record is half of them
        if deleted:
            log.info("%s: deleted %d expired segment(s), oldest %s", self.folder, len(deleted), deleted[0].name)
        self._tell_strangers()
        return deleted

    def _expire(self, current: Path | None, now: float, keep_s: float, keep_bytes: float) -> list[Path]:
        writing = {name for name in self._held if name in self._files}
        if current is not None:
            writing.add(current.name)
        total = self._total + sum(os.fstat(fd).st_size for name, fd in self._held.items()
                                  if name not in self._sizes)
        deleted, kept, cut = [], [], 0
        for name in self._order:
            segment = self._files[name]
            too_old = keep_s and now - segment.start > keep_s
            too_big = keep_bytes and total > keep_bytes
            if not (too_old or too_big):
                break
            cut += 1
            if segment.name in writing:
                kept.append(name)  # never a file still being written; it goes once finished
                continue
            path = self.folder / segment.name
            st = self._lstat(segment.name)
            if st is None or not segment.matches(st):
                self._forget(segment)  # gone, or replaced by another file: no longer ours, left alone
                continue
            try:
                os.remove(path)
            except OSError as exc:
                log.warning("%s: could not delete an expired segment (%s)", path, exc.strerror)
                kept.append(name)
                continue
            total -= self._sizes.get(segment.name, st.st_size)
            self._forget(segment)
            deleted.append(path)
        self._order[:cut] = kept
        return deleted

    def _forget(self, segment: Segment) -> None:
        del self._files[segment.name]
        self._total -= self._sizes.pop(segment.name, 0)

    def _tell_strangers(self) -> None:
        """Once per run: how many files look like this camera's segments but are not in its record (left alone)."""
        if self._strangers_told:
            return
        self._strangers_told = True
        try:
            names = [p.name for p in self.folder.iterdir()]
        except OSError:
            return
        with self._lock:
            strangers = sum(1 for n in names if self._look_alike.match(n) and n not in self._files)
        if strangers:
            log.info("%s: %d file(s) named like segments of %s are not in its record (%s); left alone",
                     self.folder, strangers, Path(self.template).name, self.index.name)

