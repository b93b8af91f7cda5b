"""The two kinds of live source: a network camera or stream (RTSP, HTTP MJPEG/HLS), and a local camera
(an index or /dev/videoN)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import cv2

from ..config.sections import SourceConfig
from ..errors import SourceError
from ..urls import check_url, mask_url, safe_name
from .base import SourceInfo
from .live import LiveSource

log = logging.getLogger("streamdet.live")  # name kept: users filter on it

_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
# OpenCV reads FFmpeg options from this variable at open time, for the whole process.
_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_env_lock = threading.Lock()


def _use_rtsp_transport(transport: str) -> None:
    """Put rtsp_transport in OpenCV's FFmpeg options, keeping any other options already there.

    The variable is read at every open and is process-wide, so it is set
    once and left set: switching it around each open would race with an open
    that hangs on another thread.
    """
    wanted = f"rtsp_transport;{transport}"
    with _env_lock:
        options = [o for o in os.environ.get(_FFMPEG_OPTIONS_ENV, "").split("|") if o]
        others = [o for o in options if not o.startswith("rtsp_transport;")]
        if len(others) < len(options) and wanted not in options:
            log.warning("RTSP transport changes to %s for every RTSP source in this process", transport)
        os.environ[_FFMPEG_OPTIONS_ENV] = "|".join([*others, wanted])


class NetworkSource(LiveSource):
    def __init__(self, url: str, settings: SourceConfig):
        super().__init__(settings)
        try:
            check_url(url)
        except ValueError as exc:
            raise SourceError(f"source {exc}") from None
        parts = urlsplit(url)
        self.url = url
        self.display_name = mask_url(url)
        self.name = safe_name(url)
        self._probe_done = threading.Event()
        self._address = (parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme.lower()])

    _probes = True

    def _reachable(self) -> str | None:
        # On a thread of its own, so that stop() need not wait for a connect or
        # a name lookup (which has no timeout at all) in progress; a probe left
        # behind ends by itself with its connect timeout or lookup.
        outcome: list[str | None] = []
        done = self._probe_done = threading.Event()
        if self._stop.is_set():
            return "stopped"
        threading.Thread(target=self._probe, args=(outcome, done), name=f"probe-{self.name}", daemon=True).start()
        done.wait()
        return outcome[0] if outcome else "stopped"

    def _probe(self, outcome: list[str | None], done: threading.Event) -> None:
        try:
            with socket.create_connection(self._address, timeout=self._PROBE_S):
                outcome.append(None)
        except OSError as exc:
            outcome.append(f"nothing answers at {self._address[0]}:{self._address[1]} ({exc.strerror or 'timed out'})")
        finally:
            done.set()

    def stop(self) -> None:
        super().stop()
        self._probe_done.set()  # after _stop is set: a probe starting now sees it

    def _why_not_opened(self, timeout: float) -> str:
        # OpenCV drops FFmpeg's error code, so the open is tried once more
        # through PyAV (FFmpeg too) to learn it; a camera that refuses answers
        # at once. Only the error's class and strerror are used: its text
        # holds the URL, password and all.
        import av

        options = {"rtsp_transport": self.settings.rtsp_transport} if self._is_rtsp() else {}
        try:
            av.open(self.url, options=options, timeout=(timeout, min(timeout, self.settings.read_timeout))).close()
        except av.error.HTTPUnauthorizedError:
            if urlsplit(self.url).username is None:
                return "the camera asks for credentials (401); give them as rtsp://user:pass@host/path"
            return "the camera refused the credentials (401)"
        except av.error.HTTPForbiddenError:
            return "the camera refused access to this stream (403)"
        except av.error.HTTPNotFoundError:
            return "the camera has no stream at this path (404)"
        except av.error.FFmpegError as exc:
            return f"FFmpeg: {exc.strerror}"
        except Exception as exc:  # a diagnosis only: the open has failed whatever it says
            return f"FFmpeg could not open it ({type(exc).__name__})"
        return "FFmpeg could not open it (it opens now: a passing failure)"

    def _is_rtsp(self) -> bool:
        return self.url.lower().startswith(("rtsp://", "rtsps://"))

    def _open_capture(self) -> cv2.VideoCapture:
        if self._is_rtsp():
            _use_rtsp_transport(self.settings.rtsp_transport)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.settings.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.settings.read_timeout * self._BACKSTOP * 1000),
        ]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)


class CameraSource(LiveSource):
    def __init__(self, spec: str, settings: SourceConfig):
        super().__init__(settings)
        self.device = Path(f"/dev/video{spec}" if spec.isdigit() else spec)
        what = f"index {spec}" if spec.isdigit() else str(self.device)
        if not self.device.exists():
            raise SourceError(
                f"no camera at {what} ({self.device} does not exist); connect one, or pass a file or URL"
            )
        self.display_name = str(self.device)
        self.name = self.device.name

    _probes = True

    def _reachable(self) -> str | None:
        # A USB camera unplugged and plugged in again: its device node is back before it can stream.
        return None if self.device.exists() else f"{self.device} is gone (unplugged?)"

    def _open_capture(self) -> cv2.VideoCapture:
        params = []
        if self.settings.width:
            params += [cv2.CAP_PROP_FRAME_WIDTH, self.settings.width]
        if self.settings.height:
            params += [cv2.CAP_PROP_FRAME_HEIGHT, self.settings.height]
        if self.settings.fps:
            params += [cv2.CAP_PROP_FPS, int(self.settings.fps)]
        return cv2.VideoCapture(str(self.device), cv2.CAP_V4L2, params)

    def open(self) -> SourceInfo:
        info = super().open()
        if not self.stats.connected:
            raise SourceError(f"camera {self.device}: cannot be opened (busy or not a capture device)")
        return info
