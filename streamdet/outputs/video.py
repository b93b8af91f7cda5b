"""The annotated recording."""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from ..detections import FrameResult
from ..errors import OutputError
from .base import Output, staged_path, write_error

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov")


class VideoOutput(Output):
    """The annotated recording, at the source's frame rate and size.

    MPEG-4 Part 2 ('mp4v') is the encoder every opencv-python wheel has.
    Encoding runs on a writer thread owned by the output, so it overlaps with
    drawing the next frame; its queue is bounded, so a writer that falls
    behind slows the pipeline down and never drops a frame.

    The file is written under a hidden name and moved into place by close()
    only after it was checked: OpenCV reports no write error (a full disk
    gives a silent, unplayable file), so close() opens the result and counts
    its frames against the frames written.
    """

    shows_pictures = True
    _QUEUE = 8
    # Below this much free space the next frames cannot be stored: stop now, not at the end.
    _MIN_FREE = 1 << 20

    def __init__(self, path: str | os.PathLike, fps: float | None, source_name: str):
        self.path = Path(path)
        self.label = str(self.path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.source_name = source_name
        self._staged = staged_path(self.path)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] = (0, 0)
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(self._QUEUE)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._written = 0
        self._closed = False

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise self._failure()
        image = result.frame.image
        if self._writer is None:
            # Opened here, not on the writer thread, so a bad path fails this call.
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self._staged), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._writer.isOpened():
                self._writer = None
                raise OutputError(f"output '{self.label}': the video cannot be created there; check the folder")
            self._size = (width, height)
            self._thread = threading.Thread(target=self._encode, name=f"writer-{self.source_name}", daemon=True)
            self._thread.start()
        self._queue.put(image)

    def _failure(self) -> OutputError:
        error = self._error
        if isinstance(error, OutputError):
            return error
        if isinstance(error, OSError):
            return write_error(self.label, error)
        return OutputError(f"output '{self.label}': writing the video failed ({error})")

    def _encode(self) -> None:
        writer = self._writer
        assert writer is not None
        c0 = time.thread_time()
        next_check = 0.0
        while (image := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking frames so write() never blocks on a dead writer
            try:
                if image.shape[1::-1] != self._size:
                    # A camera that came back at another resolution still records into the one file.
                    image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
                writer.write(image)
                self._written += 1
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 1.0
                    stat = os.statvfs(self._staged.parent)
                    if stat.f_bavail * stat.f_frsize < self._MIN_FREE:
                        raise OSError(28, os.strerror(28))
            except Exception as exc:
                self._error = exc
            self.cpu_s = time.thread_time() - c0

    def _finish_writer(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finish_writer()
        if self._written == 0 and self._error is None:
            self._staged.unlink(missing_ok=True)
            return
        try:
            if self._error is None:
                found = _frames_in(self._staged)
                if found != self._written:
                    raise OutputError(
                        f"output '{self.label}': the recording is incomplete ({found} of {self._written} frames "
                        "could be read back; is the disk full?)"
                    )
            else:
                raise self._failure()
            os.replace(self._staged, self.path)
        except OSError as exc:
            self._staged.unlink(missing_ok=True)
            raise write_error(self.label, exc) from None
        except BaseException:
            self._staged.unlink(missing_ok=True)
            raise


def _frames_in(path: Path) -> int:
    """How many frames the container says it holds: reads the index only, decodes nothing."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
