"""Frame sources: video files, still images and folders of images.

Every source hands out `Frame`s through `read()` and says whether it is live.
The pipeline decides the queueing policy from `Source.live`: files must never
drop a frame, live sources must never build up latency.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError

# OpenCV serialises every FFmpeg open behind one process-wide lock unless told
# that FFmpeg is thread-safe (it is since FFmpeg 4). With the lock, a camera
# that hangs while opening holds up every other open - other cameras'
# reconnects and files alike - for its whole open timeout.
os.environ.setdefault("OPENCV_FFMPEG_IS_THREAD_SAFE", "1")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(slots=True)
class Frame:
    """One decoded picture.

    ``captured`` is ``time.monotonic()`` when decoding finished: every latency
    and frame-age figure is measured from it. ``gap_ms`` is set on the first
    frame after a live source lost its stream: how long it had no frames.
    """

    image: np.ndarray
    index: int
    pts_ms: float | None
    captured: float
    gap_ms: float | None = None


@dataclass(frozen=True, slots=True)
class SourceInfo:
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    live: bool


class Source(ABC):
    """A stream of frames. Not thread-safe: one thread owns `read()`."""

    name: str
    live: bool = False

    @abstractmethod
    def open(self) -> SourceInfo:
        """Open the source or raise SourceError saying why it cannot be read."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""

    @abstractmethod
    def close(self) -> None: ...

    def stop(self) -> None:
        """Ask a blocking `read()` in another thread to give up soon."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise SourceError(f"source '{path}': no such file; check the path")
    if path.is_file() and path.stat().st_size == 0:
        raise SourceError(f"source '{path}': the file is empty (0 bytes); give a {what}")
    if not os.access(path, os.R_OK):
        raise SourceError(f"source '{path}': permission denied; make the file readable")


class VideoFileSource(Source):
    def __init__(self, path: str | os.PathLike, loop: bool = False, decode_threads: int = 0):
        self.path = Path(path)
        self.name = self.path.stem
        self.loop = loop
        self._decode_threads = decode_threads
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._pts_offset = 0.0
        self._last_pts = 0.0
        self._frame_ms = 0.0

    def _open_capture(self) -> cv2.VideoCapture:
        params = []
        if self._decode_threads:
            params = [cv2.CAP_PROP_N_THREADS, self._decode_threads]
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            raise SourceError(
                f"source '{self.path}': cannot be opened as video (not a video file, or a codec FFmpeg lacks)"
            )
        return cap

    def open(self) -> SourceInfo:
        _check_file(self.path, "video file")
        self._cap = self._open_capture()
        cap = self._cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            cap.release()
            raise SourceError(f"source '{self.path}': no video stream in the file")
        self._frame_ms = 1000.0 / fps if fps and fps > 0 else 0.0
        return SourceInfo(
            width=width,
            height=height,
            fps=fps if fps and fps > 0 else None,
            frame_count=None if self.loop or count <= 0 else count,
            live=False,
        )

    def read(self) -> Frame | None:
        assert self._cap is not None, "open() first"
        ok, image = self._cap.read()
        if not ok and self.loop and self._index > 0:
            # Reopen rather than seek: seeking to 0 is unreliable for some
            # containers, and timestamps continue after the previous pass.
            self._cap.release()
            self._cap = self._open_capture()
            self._pts_offset = self._last_pts + self._frame_ms
            ok, image = self._cap.read()
        if not ok:
            if self._index == 0:
                raise SourceError(f"source '{self.path}': no frame could be decoded (damaged or not a video)")
            return None
        pts = self._pts_offset + self._cap.get(cv2.CAP_PROP_POS_MSEC)
        self._last_pts = pts
        frame = Frame(image=image, index=self._index, pts_ms=pts, captured=time.monotonic())
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFilesSource(Source):
    """One image, or every image in a folder in name order."""

    def __init__(self, path: str | os.PathLike, loop: bool = False):
        self.path = Path(path)
        self.name = self.path.stem if self.path.is_file() else self.path.name
        self.loop = loop
        self.files: list[Path] = []
        self._pos = 0
        self._index = 0

    def open(self) -> SourceInfo:
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self.files:
                suffixes = " ".join(sorted(IMAGE_SUFFIXES))
                raise SourceError(f"source '{self.path}': the folder holds no images ({suffixes})")
        else:
            _check_file(self.path, "image")
            self.files = [self.path]
        first = self._load(self.files[0])
        height, width = first.shape[:2]
        return SourceInfo(
            width=width,
            height=height,
            fps=None,
            frame_count=None if self.loop else len(self.files),
            live=False,
        )

    def _load(self, path: Path) -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"source '{path}': cannot be decoded as an image")
        return image

    def read(self) -> Frame | None:
        if self._pos >= len(self.files):
            if not self.loop:
                return None
            self._pos = 0
        path = self.files[self._pos]
        self._pos += 1
        frame = Frame(image=self._load(path), index=self._index, pts_ms=None, captured=time.monotonic())
        self._index += 1
        return frame

    def current_path(self) -> Path:
        """The file the last `read()` returned, for naming annotated output images."""
        return self.files[self._pos - 1]

    def close(self) -> None:
        pass


def open_source(spec: str, *, loop: bool = False, decode_threads: int = 0, **live_options) -> Source:
    """Pick the source kind from how `spec` looks; does not open it yet.

    `live_options` (timeouts, reconnect backoff, camera size) apply to cameras
    and network streams only.
    """
    from . import live

    if live.is_live_spec(spec):
        return live.open_live(spec, **live_options)
    path = Path(spec)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource(path, loop=loop)
    return VideoFileSource(path, loop=loop, decode_threads=decode_threads)
