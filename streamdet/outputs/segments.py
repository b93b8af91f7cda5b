"""A camera's recording as a series of files: names from a template, and the oldest ones expired.

Expiry deletes only what this camera wrote: each segment is entered in the
camera's record (a hidden index file beside the segments, named by the
template) when its name is taken, and only recorded files that are still
the very file written (same inode) are ever deleted. A name that merely
looks like one of ours (a file copied in, another camera's whose name the
pattern also fits, an impossible date) is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..config.sections import RecordingConfig
from .base import write_atomically

log = logging.getLogger("streamdet.recording")

START_FORMAT = "%Y%m%d-%H%M%S"


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
    """One file of the record: its name in the folder, when it started (wall time), its inode."""

    name: str
    start: float
    inode: int

    def line(self) -> str:
        return json.dumps({"name": self.name, "start": self.start, "inode": self.inode}) + "\n"


class Segments:
    """File names for `template` (with `{name}` already filled in, `{start}` in the file name) and their expiry."""

    def __init__(self, template: str, settings: Retention | RecordingConfig):
        self.template = template
        self.settings = settings
        self.folder = Path(template).parent
        # The record: one per template, hidden, and no segment name of any template ends like it.
        self.index = self.folder / f".{Path(template).name}.segments"
        head, _, tail = Path(template).name.partition("{start}")
        # Only for counting look-alikes the record does not hold; never a reason to delete.
        self._look_alike = re.compile(re.escape(head) + r"\d{8}-\d{6}(?:-\d+)?(?:_track\d+)?" + re.escape(tail)
                                      + r"\Z")
        self._strangers_told = False

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
        record; FileExistsError when a file is there (it is never written over)."""
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        try:
            self._append(Segment(path.name, wall_time, os.stat(path).st_ino))
        except BaseException:
            path.unlink(missing_ok=True)  # not in the record: it would never expire
            raise
        return path

    def record(self, path: Path, wall_time: float) -> None:
        """Enter a file named by its writer (a snapshot, written whole under its final name) in the record."""
        self._append(Segment(path.name, wall_time, os.stat(path).st_ino))

    def _append(self, segment: Segment) -> None:
        """One whole line at the end of the record, synced before the segment gets any frame."""
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

    def _recorded(self) -> list[Segment]:
        """Every segment in the record, in the order written; unreadable lines are skipped."""
        try:
            text = self.index.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            try:
                item = json.loads(line)
                found.append(Segment(str(item["name"]), float(item["start"]), int(item["inode"])))
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def _still_ours(self, segment: Segment) -> bool:
        """The recorded file is still there, as the regular file written (not replaced, not a link)."""
        if "/" in segment.name or segment.name in ("", ".", ".."):
            return False
        try:
            st = os.lstat(self.folder / segment.name)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_ino == segment.inode

    def ours(self) -> list[tuple[Path, float]]:
        """This camera's segments that are still there, oldest first, with their start times (only the
        videos: a copy recording's detections files are in the record too, and expire with the rest)."""
        suffix = Path(self.template).suffix
        return [(self.folder / s.name, s.start) for s in self._ours() if Path(s.name).suffix == suffix]

    def _ours(self) -> list[Segment]:
        return sorted((s for s in self._recorded() if self._still_ours(s)), key=lambda s: s.start)

    def expire(self, current: Path | None, now: float) -> list[Path]:
        """Delete the oldest segments past `keep_hours` or beyond `keep_gb`; never `current`. Returns those deleted."""
        keep_s = self.settings.keep_hours * 3600
        keep_bytes = self.settings.keep_gb * 1e9
        if not keep_s and not keep_bytes:
            return []
        recorded = self._recorded()
        kept = self._ours()
        segments = [s for s in kept if self.folder / s.name != current]
        sizes = {s: (self.folder / s.name).stat().st_size for s in segments}
        total = sum(sizes.values()) + (current.stat().st_size if current is not None and current.exists() else 0)
        deleted = []
        for segment in segments:
            too_old = keep_s and now - segment.start > keep_s
            too_big = keep_bytes and total > keep_bytes
            if not (too_old or too_big):
                break
            path = self.folder / segment.name
            try:
                os.remove(path)
            except OSError as exc:
                log.warning("%s: could not delete an expired segment (%s)", path, exc.strerror)
                continue
            total -= sizes[segment]
            kept.remove(segment)
            deleted.append(path)
        if len(kept) != len(recorded):
            # Deleted, or gone some other way: the record keeps only what is still there.
            write_atomically(self.index, "".join(s.line() for s in kept).encode(), str(self.index))
        if deleted:
            log.info("%s: deleted %d expired segment(s), oldest %s", self.folder, len(deleted), deleted[0].name)
        self._tell_strangers({s.name for s in kept} | {p.name for p in deleted})
        return deleted

    def _tell_strangers(self, ours: set[str]) -> None:
        """Once per run: how many files look like this camera's segments but are not in its record (left alone)."""
        if self._strangers_told:
            return
        self._strangers_told = True
        try:
            names = [p.name for p in self.folder.iterdir()]
        except OSError:
            return
        strangers = sum(1 for n in names if self._look_alike.match(n) and n not in ours)
        if strangers:
            log.info("%s: %d file(s) named like segments of %s are not in its record (%s); left alone",
                     self.folder, strangers, Path(self.template).name, self.index.name)
