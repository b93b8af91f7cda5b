"""File sources: video files, still images and folders of images.

Files never drop a frame, and a file that ends early because it is damaged
is an error, not a normal end of stream.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from ..config.sections import SourceConfig
from ..errors import SourceError
from .base import Frame, Source, SourceInfo

log = logging.getLogger("streamdet.sources")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # read, and written by outputs.images


def _check_file(path: Path, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceError(f"source '{path}': no such file; check the path") from None
    except OSError as exc:
        raise SourceError(f"source '{path}': cannot be read ({exc.strerror})") from None
    if stat.S_ISREG(mode) and path.stat().st_size == 0:
        raise SourceError(f"source '{path}': the file is empty (0 bytes); give a {what}")
    if not os.access(path, os.R_OK):
        raise SourceError(f"source '{path}': permission denied; make the file readable")


def _open_within(path: Path, timeout: float, open_capture):
    """Open a pipe or device on a helper thread: with no writer behind it FFmpeg would wait forever.

    On time-out a FIFO is opened for writing once and closed, which ends the
    blocked open with end-of-file, so the helper thread does not linger.
    """
    box: dict = {}

    def work() -> None:
        try:
            box["cap"] = open_capture()
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name=f"open-{path.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if stat.S_ISFIFO(path.stat().st_mode):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # the reader went away meanwhile
        thread.join(1.0)
        if "cap" in box:
            box["cap"].release()
        raise SourceError(
            f"source '{path}': nothing could be read within {timeout:g} s (a pipe with no writer, or a device "
            "that blocks); start what feeds it first, or raise source.open_timeout"
        )
    if "error" in box:
        raise box["error"]
    return box["cap"]


class VideoFileSource(Source):
    def __init__(self, path: str | os.PathLike, settings: SourceConfig = SourceConfig()):
        self.path = Path(path)
        self.name = self.path.stem
        self.display_name = str(self.path)
        self.settings = settings
        _check_file(self.path, "video file")
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._expected: int | None = None
        self._pass_start = 0  # index of the first frame of the current pass over the file
        self._pts_offset = 0.0
        self._last_pts = 0.0
        self._frame_ms = 0.0

    @property
    def input_paths(self) -> list[str]:
        return [str(self.path)]

    def _open_capture(self) -> cv2.VideoCapture:
        params = []
        if self.settings.decode_threads:
            params = [cv2.CAP_PROP_N_THREADS, self.settings.decode_threads]

        def open_capture() -> cv2.VideoCapture:
            return cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, params)

        if stat.S_ISREG(self.path.stat().st_mode):
            cap = open_capture()
        else:
            cap = _open_within(self.path, self.settings.open_timeout, open_capture)
        if not cap.isOpened():
            raise SourceError(
                f"source '{self.path}': cannot be opened as video (not a video file, or a codec FFmpeg lacks)"
            )
        return cap

    def open(self) -> SourceInfo:
        self._cap = self._open_capture()
        cap = self._cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            cap.release()
            raise SourceError(f"source '{self.path}': no video stream in the file")
        self._frame_ms = 1000.0 / fps if fps and fps > 0 else 0.0
        self._expected = count if count > 0 else None
        return SourceInfo(
            width=width,
            height=height,
            fps=fps if fps and fps > 0 else None,
            frame_count=None if self.settings.loop or count <= 0 else count,
            live=False,
        )

    def _ended_early(self, decoded: int) -> bool:
        # The container's count is exact for mp4 and estimated from the
        # duration for others (mkv, avi): allow that estimate its rounding.
        expected = self._expected
        return expected is not None and decoded < expected - max(2, expected // 100)

    def read(self) -> Frame | None:
        assert self._cap is not None, "open() first"
        ok, image = self._cap.read()
        if not ok:
            if self._index == 0:
                raise SourceError(f"source '{self.path}': no frame could be decoded (damaged or not a video)")
            decoded = self._index - self._pass_start
            if self._ended_early(decoded):
                message = (f"source '{self.path}': decoding stopped at frame {decoded} of {self._expected} "
                           "(the file is damaged or cut short)")
                if not self.settings.ignore_errors:
                    raise SourceError(message + "; pass --ignore-errors to keep the frames before the damage")
                log.warning("%s; going on (ignore_errors)", message)
            if not self.settings.loop:
                return None
            # Reopen rather than seek: seeking to 0 is unreliable for some
            # containers, and timestamps continue after the previous pass.
            self._cap.release()
            self._cap = self._open_capture()
            self._pass_start = self._index
            self._pts_offset = self._last_pts + self._frame_ms
            ok, image = self._cap.read()
            if not ok:
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
    """One image, or every image in a folder in name order.

    In a folder a picture that cannot be decoded is skipped with a warning and
    counted; one bad file does not stop a run over thousands.
    """

    def __init__(self, path: str | os.PathLike, settings: SourceConfig = SourceConfig()):
        self.path = Path(path)
        self.folder = self.path.is_dir()
        self.name = self.path.name if self.folder else self.path.stem
        self.display_name = str(self.path)
        self.settings = settings
        self.files: list[Path] = []
        self.skipped = 0
        if not self.folder:
            _check_file(self.path, "image")
        self._pos = 0
        self._index = 0

    @property
    def input_paths(self) -> list[str]:
        return [str(self.path)]

    def listing(self) -> list[Path]:
        """The images this source will read, in order (cheap: names only)."""
        if not self.folder:
            return [self.path]
        try:
            return sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as exc:
            raise SourceError(f"source '{self.path}': the folder cannot be read ({exc.strerror})") from None

    def open(self) -> SourceInfo:
        self.files = self.listing()
        if not self.files:
            suffixes = " ".join(sorted(IMAGE_SUFFIXES))
            raise SourceError(f"source '{self.path}': the folder holds no images ({suffixes})")
        first = self._next_image()
        if first is None:
            raise SourceError(f"source '{self.path}': none of its {len(self.files)} images could be decoded")
        self._pos -= 1  # read() hands the first image out again
        height, width = first[1].shape[:2]
        return SourceInfo(width=width, height=height, fps=None,
                          frame_count=None if self.settings.loop else len(self.files) - self.skipped,
                          live=False, still=not self.folder)

    def _next_image(self) -> tuple[Path, np.ndarray] | None:
        while self._pos < len(self.files):
            path = self.files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return path, image
            if not self.folder:
                raise SourceError(f"source '{path}': cannot be decoded as an image")
            self.skipped += 1
            log.warning("%s: cannot be decoded as an image; skipped", path)
        return None

    def read(self) -> Frame | None:
        got = self._next_image()
        if got is None and self.settings.loop and self._index > 0:
            self._pos = 0
            got = self._next_image()
        if got is None:
            return None
        path, image = got
        frame = Frame(image=image, index=self._index, pts_ms=None, captured=time.monotonic(), file=path.name)
        self._index += 1
        return frame

    def close(self) -> None:
        pass
