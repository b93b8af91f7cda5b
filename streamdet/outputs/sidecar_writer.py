"""A copy recording's detections, written: each processed frame's line (streamdet.outputs.sidecar) waits until
the recording's packets have got to its picture, then goes into the sidecar of the file that picture is in, at
its place on that file's timeline.

Lines come in on the output thread (`add`) and leave on the copy recording's writer thread (`due`, `write`),
which also says where each file starts and ends (`begin`, `end`).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..detections import FrameResult
from .sidecar import sidecar_path, sidecar_record, sidecar_text
from .timeline import Timeline

log = logging.getLogger("streamdet.recording")

_LINES = 512  # lines waiting for their packets; past this the oldest go (written where they can be placed)
# Lines held at most, whatever the writer does (behind on a slow disk, or ended): past this the oldest are dropped
# as new ones come, and counted.
_HELD = 4 * _LINES
_EARLY_S = 0.001  # a frame this close before a file's start is still that file's first


@dataclass(frozen=True)
class _Waiting:
    """One frame's line, and what places it on the timeline."""

    connection: int
    pts_ms: float | None
    captured: float
    line: dict


class SidecarWriter:
    """The detections lines of one copy recording, from frames to the sidecar beside each of its files."""

    def __init__(self) -> None:
        self._waiting: collections.deque[_Waiting] = collections.deque(maxlen=_HELD)
        self.dropped = 0  # lines dropped because the writer was that far behind
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._start_s: float | None = None  # the current file's start on the timeline; None between files
        self.lines = 0

    def add(self, result: FrameResult) -> None:
        """On the output thread: a processed frame's line, to be placed once its packets have come."""
        frame = result.frame
        line = sidecar_record(result, frame.size, result.plate)
        with self._lock:
            if len(self._waiting) == _HELD:
                self.dropped += 1  # the deque's bound drops its oldest
            self._waiting.append(_Waiting(frame.connection, frame.camera_pts_ms, frame.captured, line))

    def restart(self) -> None:
        """The writer ended with its file (on the output thread, with no writer running): the lines waiting
        were that file's, and go; a new writer starts with no file open."""
        with self._lock:
            self._waiting.clear()
        self.end()

    def begin(self, segment: Path, start_s: float, replace: bool) -> Path | None:
        """A file starting at `start_s` on the timeline: its sidecar is created. The sidecar's path, or None when
        a file of that name is there already and not ours (`replace`: it may be replaced, the one-file recording's
        name the run's output check allowed); then this file's lines are not written."""
        path = sidecar_path(segment)
        self._fd = _create(path, replace)
        self._start_s = start_s
        return path if self._fd is not None else None

    def end(self) -> None:
        """The file has ended (lines that come for it now are not written); its sidecar is closed."""
        fd, self._fd, self._start_s = self._fd, None, None
        if fd is not None:
            os.close(fd)

    def due(self, timeline: Timeline, final: bool, until: float | None = None) -> list[str]:
        """The lines whose pictures the packets have got past, as text for the current file; lines before
        the file's start, or with no file, are dropped.

        `final`: no more packets come for what waits (the file or the run ends); `until`: the next file
        starts there, and lines from there on wait for it.
        """
        out: list[str] = []
        with self._lock:
            while self._waiting:
                first = self._waiting[0]
                at = timeline.place(first.connection, first.pts_ms, first.captured)
                if at is None and not final and len(self._waiting) < _LINES:
                    break  # its packets have not come through yet
                if at is not None and until is not None and at >= until:
                    break
                self._waiting.popleft()
                if at is not None and self._start_s is not None and at >= self._start_s - _EARLY_S:
                    out.append(sidecar_text(first.line, max(0.0, at - self._start_s)))
        return out if self._fd is not None else []

    def write(self, texts: list[str]) -> None:
        """Into the current file's sidecar (a failure is the copy recording's to handle)."""
        view = memoryview("".join(texts).encode())
        while view:
            view = view[os.write(self._fd, view):]
        self.lines += len(texts)


def _create(path: Path, replace: bool) -> int | None:
    """The detections file, new, or replacing the one there when `replace`. Otherwise a file of that name that
    exists already is left alone, and these detections are not written."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if replace else os.O_EXCL), 0o644)
    except FileExistsError:
        log.warning("%s exists already (not ours): this file's detections are not written", path)
        return None
