"""Where processed frames go: mp4 recording, annotated images, JSON Lines, a window.

Every sink opens its file on the first frame, so a run that fails before
processing anything leaves nothing behind, and `close()` always leaves a
complete file.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .detections import FrameResult
from .errors import SinkError


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail early, before any work, when an output cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise SinkError(f"output '{path}': folder '{parent}' does not exist; create it first")
    if not parent.is_dir():
        raise SinkError(f"output '{path}': '{parent}' is not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SinkError(f"output '{path}': folder '{parent}' is not writable; choose another path")
    return path


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Sink(ABC):
    # CPU seconds spent on threads the sink owns; the caller's share is timed by the caller.
    cpu_s: float = 0.0

    @abstractmethod
    def write(self, result: FrameResult) -> None: ...

    def flush(self) -> None:
        """Push out anything buffered; called when the pipeline is idle."""

    @abstractmethod
    def close(self) -> None:
        """Finalise the output; safe to call twice."""


class VideoSink(Sink):
    """The annotated recording, at the source's frame rate and size.

    MPEG-4 Part 2 ('mp4v') is the encoder every opencv-python wheel has; the
    file is finalised (index written) by close(), which the pipeline reaches
    on end of stream, Ctrl-C, SIGTERM and a lost camera alike.

    Encoding runs on a writer thread owned by the sink, so it overlaps with
    drawing the next frame instead of stalling the output loop (and, through
    it, inference). Its queue is bounded: a writer that falls behind slows the
    pipeline down, it never drops a frame.
    """

    _QUEUE = 8

    def __init__(self, path: str | os.PathLike, fps: float | None, source_name: str):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.source_name = source_name
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] = (0, 0)
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(self._QUEUE)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.frames = 0

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise SinkError(f"output '{self.path}': writing the video failed ({self._error})")
        image = result.frame.image
        if self._writer is None:
            # Opened here, not on the writer thread, so a bad path fails this call.
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._writer.isOpened():
                self._writer = None
                raise SinkError(f"output '{self.path}': cannot write video there (use a .mp4 name in a writable folder)")
            self._size = (width, height)
            self._thread = threading.Thread(target=self._encode, name=f"writer-{self.source_name}", daemon=True)
            self._thread.start()
        self._queue.put(image)
        self.frames += 1

    def _encode(self) -> None:
        writer = self._writer
        assert writer is not None
        c0 = time.thread_time()
        while (image := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking frames so write() never blocks on a dead writer
            try:
                if image.shape[1::-1] != self._size:
                    # A camera that came back at another resolution still records into the one file.
                    image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
                writer.write(image)
            except Exception as exc:
                self._error = exc
            self.cpu_s = time.thread_time() - c0

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            raise SinkError(f"output '{self.path}': writing the video failed ({error})")


class ImageDirSink(Sink):
    """Annotated images into a folder, one per input image, under the input's file name."""

    def __init__(self, path: str | os.PathLike, name_for: Callable[[FrameResult], str]):
        self.path = Path(path)
        self._name_for = name_for

    def write(self, result: FrameResult) -> None:
        self.path.mkdir(exist_ok=True)
        target = self.path / self._name_for(result)
        if not cv2.imwrite(str(target), result.frame.image):
            raise SinkError(f"output '{target}': the image could not be written")

    def close(self) -> None:
        pass


class JsonlSink(Sink):
    """One JSON line per frame.

    Lines are collected and written whole with one unbuffered write, so a
    killed process leaves only complete lines behind.
    """

    _FLUSH_LINES = 64
    _FLUSH_S = 0.5

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._fd: int | None = None
        self._pending: list[str] = []
        self._last_flush = time.monotonic()

    def write(self, result: FrameResult) -> None:
        d = result.detections
        record = {
            "source": result.source,
            "frame": result.frame.index,
            "pts_ms": None if result.frame.pts_ms is None else round(result.frame.pts_ms, 3),
            "detections": [
                {
                    "label": label,
                    "class_id": int(class_id),
                    "score": round(float(score), 4),
                    "box": [round(float(v), 1) for v in box],
                }
                for box, score, class_id, label in zip(d.xyxy, d.scores, d.class_ids, d.labels)
            ],
            "latency_ms": round(result.latency_ms, 2),
        }
        if result.frame.gap_ms is not None:
            record["gap_ms"] = round(result.frame.gap_ms, 1)
        self._pending.append(json.dumps(record, separators=(",", ":")) + "\n")
        if len(self._pending) >= self._FLUSH_LINES or time.monotonic() - self._last_flush >= self._FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        if self._fd is None:
            if self.path == "-":
                self._fd = sys.stdout.fileno()
            else:
                try:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                except OSError as exc:
                    raise SinkError(f"output '{self.path}': cannot be written ({exc.strerror})") from None
        data = "".join(self._pending).encode("utf-8")
        self._pending.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        self.flush()
        if self._fd is not None and self.path != "-":
            os.close(self._fd)
        self._fd = None


class DisplaySink(Sink):
    """A window per source; q, Esc or the window's close button ends the run."""

    def __init__(self) -> None:
        self.closed = False
        self._windows: set[str] = set()

    def write(self, result: FrameResult) -> None:
        if self.closed:
            return
        name = result.source
        if name not in self._windows:
            cv2.namedWindow(name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            self._windows.add(name)
        cv2.imshow(name, result.frame.image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            self.closed = True
        elif cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) < 1:
            self.closed = True

    def close(self) -> None:
        if self._windows:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
            self._windows.clear()
