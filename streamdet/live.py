"""Live sources: webcams and network cameras (RTSP, HTTP MJPEG/HLS).

A live source never gives up on its own: when the stream stops it reopens it
with exponential backoff, and `read()` blocks meanwhile (woken at once by
`stop()`). Credentials in URLs never reach a log line, an error or a name.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import cv2

from .errors import SourceError
from .sources import Frame, Source, SourceInfo

log = logging.getLogger("streamdet.live")

_URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
_SECRET_KEYS = re.compile(r"pass|pwd|token|key|secret|auth|sig", re.IGNORECASE)
# OpenCV reads FFmpeg options from this variable at open time, for the whole process.
_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_open_lock = threading.Lock()


def is_live_spec(spec: str) -> bool:
    text = str(spec)
    return text.isdigit() or text.startswith("/dev/video") or text.lower().startswith(_URL_SCHEMES)


def mask_url(url: str) -> str:
    """The URL with user, password and secret-looking query values replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = ("***:***" if ":" in userinfo else "***") + "@" + host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _safe_name(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "camera"
    port = f"_{parts.port}" if parts.port else ""
    path = re.sub(r"[^A-Za-z0-9]+", "_", parts.path).strip("_")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{host}{port}" + (f"_{path}" if path else ""))


@dataclass
class LiveStats:
    frames_read: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str | None = None
    input_fps: float | None = None


@dataclass(frozen=True)
class LiveOptions:
    rtsp_transport: str = "tcp"
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 30.0
    reconnect_attempts: int = 0  # 0 = never give up
    width: int = 0
    height: int = 0
    fps: float = 0.0


class LiveSource(Source):
    """Common reconnecting read loop; subclasses say how to open the capture."""

    live = True

    def __init__(self, options: LiveOptions):
        self.options = options
        self.stats = LiveStats()
        self._cap: cv2.VideoCapture | None = None
        self._stop = threading.Event()
        self._index = 0
        self._lost_at: float | None = None
        self._fps_window: list[float] = []
        self.display_name = ""

    def _open_capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _try_open(self) -> bool:
        cap = self._open_capture()
        if cap.isOpened():
            self._cap = cap
            self.stats.connected = True
            return True
        cap.release()
        return False

    def open(self) -> SourceInfo:
        if not self._try_open():
            self.stats.last_error = "could not open"
            log.warning("%s: could not open; will keep retrying", self.display_name)
            self._lost_at = time.monotonic()
            return SourceInfo(0, 0, None, None, live=True)
        cap = self._cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        return SourceInfo(
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=fps if 0 < fps < 1000 else None,
            frame_count=None,
            live=True,
        )

    def _reconnect(self) -> bool:
        """Reopen with backoff until it works, stop() is called, or attempts run out."""
        delay = self.options.reconnect_initial
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            if self._try_open():
                self.stats.reconnects += 1
                log.info("%s: reconnected after %d attempt(s)", self.display_name, attempt)
                return True
            if self.options.reconnect_attempts and attempt >= self.options.reconnect_attempts:
                log.error("%s: giving up after %d attempts", self.display_name, attempt)
                return False
            log.warning("%s: reconnect attempt %d failed; next try in %.1f s", self.display_name, attempt, delay)
            if self._stop.wait(delay):
                return False
            delay = min(delay * 2, self.options.reconnect_max)
        return False

    def read(self) -> Frame | None:
        while not self._stop.is_set():
            if self._cap is None and not self._reconnect():
                return None
            ok, image = self._cap.read()
            if ok and image is not None:
                now = time.monotonic()
                gap = None
                if self._lost_at is not None:
                    gap = (now - self._lost_at) * 1000
                    self._lost_at = None
                self._tick(now)
                frame = Frame(image=image, index=self._index, pts_ms=None, captured=now, gap_ms=gap)
                self._index += 1
                self.stats.frames_read += 1
                return frame
            # The backend gave up (read timeout, server gone): drop it and reconnect.
            self._cap.release()
            self._cap = None
            self.stats.connected = False
            self.stats.last_error = "stream lost"
            if self._lost_at is None:
                self._lost_at = time.monotonic()
            log.warning("%s: stream lost; reconnecting", self.display_name)
        return None

    def _tick(self, now: float) -> None:
        window = self._fps_window
        window.append(now)
        while window and now - window[0] > 2.0:
            window.pop(0)
        if len(window) > 1:
            self.stats.input_fps = (len(window) - 1) / (window[-1] - window[0])

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class NetworkSource(LiveSource):
    def __init__(self, url: str, options: LiveOptions):
        super().__init__(options)
        parts = urlsplit(url)
        if not parts.hostname:
            raise SourceError(f"source '{mask_url(url)}': the URL has no host; write it as rtsp://host:port/path")
        self.url = url
        self.display_name = mask_url(url)
        self.name = _safe_name(url)

    def _open_capture(self) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.options.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.options.read_timeout * 1000),
        ]
        with _open_lock:
            previous = os.environ.get(_FFMPEG_OPTIONS_ENV)
            if self.url.lower().startswith(("rtsp://", "rtsps://")):
                os.environ[_FFMPEG_OPTIONS_ENV] = f"rtsp_transport;{self.options.rtsp_transport}"
            try:
                return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
            finally:
                if previous is None:
                    os.environ.pop(_FFMPEG_OPTIONS_ENV, None)
                else:
                    os.environ[_FFMPEG_OPTIONS_ENV] = previous


class CameraSource(LiveSource):
    def __init__(self, spec: str, options: LiveOptions):
        super().__init__(options)
        self.device = Path(f"/dev/video{spec}" if spec.isdigit() else spec)
        what = f"index {spec}" if spec.isdigit() else str(self.device)
        if not self.device.exists():
            raise SourceError(
                f"no camera at {what} ({self.device} does not exist); connect one, or pass a file or URL"
            )
        self.display_name = str(self.device)
        self.name = self.device.name

    def _open_capture(self) -> cv2.VideoCapture:
        params = []
        if self.options.width:
            params += [cv2.CAP_PROP_FRAME_WIDTH, self.options.width]
        if self.options.height:
            params += [cv2.CAP_PROP_FRAME_HEIGHT, self.options.height]
        if self.options.fps:
            params += [cv2.CAP_PROP_FPS, int(self.options.fps)]
        return cv2.VideoCapture(str(self.device), cv2.CAP_V4L2, params)

    def open(self) -> SourceInfo:
        info = super().open()
        if not self.stats.connected:
            raise SourceError(f"camera {self.device}: cannot be opened (busy or not a capture device)")
        return info


def open_live(spec: str, **options) -> LiveSource:
    opts = LiveOptions(**options)
    text = str(spec)
    if text.isdigit() or text.startswith("/dev/video"):
        return CameraSource(text, opts)
    return NetworkSource(text, opts)
