"""JSON Lines: one line per processed frame."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import time

from ..clock import iso, wall_time
from ..detections import FrameResult
from ..errors import PipeClosed
from .base import Output, write_error


def record(result: FrameResult) -> dict:
    """The JSON form of one processed frame (boxes in pixels)."""
    d = result.detections
    wall = wall_time(result.frame.captured)  # when it was captured (a camera) or read (a file)
    line = {
        "source": result.source,
        "frame": result.frame.index,
        "pts_ms": None if result.frame.pts_ms is None else round(result.frame.pts_ms, 3),
        "time": iso(wall),
        "epoch_ms": round(wall * 1000),
        "detections": [
            {"label": label, "class_id": int(class_id), "score": round(float(score), 4),
             "box": [round(float(v), 1) for v in box]}
            for box, score, class_id, label in zip(d.xyxy, d.scores, d.class_ids, d.labels)
        ],
        "latency_ms": round(result.latency_ms, 2),
        "inferred": result.inferred,
    }
    if d.track_ids is not None:
        for item, track in zip(line["detections"], d.track_ids.tolist()):
            item["track"] = track if track > 0 else None
    if result.predicted:
        line["predicted"] = True  # the boxes are the tracks' predictions, between the frames detect.fps infers
    if result.frame.gap_ms is not None:
        line["gap_ms"] = round(result.frame.gap_ms, 1)
    if result.frame.file is not None:
        line["file"] = result.frame.file
    return line


class JsonlOutput(Output):
    """One JSON line per frame, written in place so it can be followed while a camera runs (`tail -f`).

    Lines are collected and written whole with one unbuffered write, so a
    killed process leaves only complete lines behind; a write that fails part
    way (a full disk) is cut back to the last whole line before the error is
    raised, and nothing is written after it. With `append` (a file the run wrote itself before a reload changed
    its camera) the lines go on at the file's end and nothing in it is replaced.
    """

    _FLUSH_LINES = 64
    _FLUSH_S = 0.5

    def __init__(self, path: str, append: bool = False):
        self.path = path
        self._append = append
        self.label = "standard output" if path == "-" else path
        self._fd: int | None = None
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        self._closed = False
        self._whole = 0          # bytes of whole lines in the file
        self._failed = False

    def records(self, result: FrameResult) -> list[dict]:
        return [record(result)]

    @property
    def closed(self) -> bool:
        """Finalised: a camera that joins its file now (a reload) needs a new output, not this one."""
        return self._closed

    def write(self, result: FrameResult) -> None:
        self._pending.extend(json.dumps(r, separators=(",", ":")) + "\n" for r in self.records(result))
        if len(self._pending) >= self._FLUSH_LINES or time.monotonic() - self._last_flush >= self._FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        data = "".join(self._pending).encode("utf-8")
        self._pending.clear()
        if self._failed:
            return  # lines after a failed write would leave a gap in the file
        try:
            if self._fd is None:
                if self.path == "-":
                    self._fd = sys.stdout.fileno()
                else:
                    mode = os.O_APPEND if self._append else os.O_TRUNC
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | mode, 0o644)
                    if self._append and stat.S_ISREG(os.fstat(self._fd).st_mode):
                        self._whole = os.fstat(self._fd).st_size  # a failed write is cut back to here, not before

            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            self._whole += len(data)
        except OSError as exc:
            self._failed = True
            if exc.errno == errno.EPIPE and self.path == "-":
                raise PipeClosed("the reader of standard output went away") from None
            self._cut_to_whole_lines()
            raise write_error(self.label, exc) from None

    def _cut_to_whole_lines(self) -> None:
        """After a write that failed part way, the file ends with its last whole line (shrinking needs no space)."""
        if self._fd is None or self.path == "-" or not stat.S_ISREG(os.fstat(self._fd).st_mode):
            return
        try:
            os.ftruncate(self._fd, self._whole)
        except OSError:
            pass  # the write error is the one to report

    def close(self) -> None:
        if self._closed:
            return  # closed when its source ended; the run's end closes every output again
        self._closed = True
        try:
            self.flush()
        finally:
            if self._fd is not None and self.path != "-":
                os.close(self._fd)
            self._fd = None


class EventsOutput(JsonlOutput):
    """One JSON line per event (a track started or ended, a zone entered or left, a line crossed)."""

    takes_events = True

    def records(self, result: FrameResult) -> list[dict]:
        return [event.to_dict() for event in result.events]

    def close(self) -> None:
        if self._fd is None and self.path != "-" and not self._closed:
            self._pending.append("")  # a run without events still leaves its (empty) file
        super().close()
