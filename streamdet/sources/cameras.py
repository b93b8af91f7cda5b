"""The two kinds of live source: a network camera or stream (RTSP, HTTP MJPEG/HLS), and a local camera
(an index or /dev/videoN)."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import av
import cv2

from ..config.sections import SourceConfig
from ..errors import SourceError
from ..urls import check_url, mask_url, safe_name
from .base import SourceInfo, blank_image
from .demux import (CameraPacket, Connected, PacketTap, bgr_converter, copyable_sound, decoder_for, pick_hwaccel,
                    stream_format)
from .live_tap import LiveTap
from .live import LiveSource, Picture
from .mailbox import Lost, Opened
from .rate import DetectRate

log = logging.getLogger("streamdet.live")  # name kept: users filter on it

_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


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
        self.decode = True                     # False: read for its packets only (a main stream recorded by copy)
        self.tap: PacketTap | None = None      # where a copy recording takes the packets
        self.live: LiveTap | None = None       # where the web view's live stream takes them while watched
        self._told_silent = False              # the line saying why its sound is not recorded, once a run
        self._device = pick_hwaccel(settings.hwaccel)
        # Frames a second converted to BGR (0: all): under detect.fps, when nothing else needs the pixels of the
        # frames between (streamdet.assembly.plan), only those the network will see are (streamdet.sources.rate).
        self.convert_fps = 0.0
        # What the decoder gave and what was converted, over the run: read by tests and the bench.
        self.decoded = 0
        self.converted = 0

    def keep_packets(self) -> PacketTap:
        """Hand every packet to a copy recording from now on (call before open)."""
        self.tap = self.tap or PacketTap()
        return self.tap

    def show_packets(self) -> LiveTap:
        """Offer every packet to the web view's live stream from now on (call before open)."""
        self.live = self.live or LiveTap()
        return self.live

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

    def _why(self, exc: BaseException) -> str:
        """Why FFmpeg could not open or read the stream. Only the error's class and strerror are used: its
        text holds the URL, password and all."""
        if isinstance(exc, av.error.HTTPUnauthorizedError):
            if urlsplit(self.url).username is None:
                return "the camera asks for credentials (401); give them as rtsp://user:pass@host/path"
            return "the camera refused the credentials (401)"
        if isinstance(exc, av.error.HTTPForbiddenError):
            return "the camera refused access to this stream (403)"
        if isinstance(exc, av.error.HTTPNotFoundError):
            return "the camera has no stream at this path (404)"
        if isinstance(exc, (av.error.FFmpegError, OSError)) and getattr(exc, "strerror", None):
            return f"FFmpeg: {exc.strerror}"
        if isinstance(exc, SourceError):
            return str(exc)
        return f"FFmpeg could not read it ({type(exc).__name__})"

    def _is_rtsp(self) -> bool:
        return self.url.lower().startswith(("rtsp://", "rtsps://"))

    def _read_loop(self, generation: int) -> None:
        container = None
        put = self._mailbox.put
        try:
            options = {"rtsp_transport": self.settings.rtsp_transport} if self._is_rtsp() else {}
            began = time.monotonic()
            try:
                # FFmpeg's own read timeout is a backstop: the watchdog in feed() acts first.
                container = av.open(self.url, options=options,
                                    timeout=(self.settings.open_timeout, self.settings.read_timeout * self._BACKSTOP))
                if not container.streams.video:
                    raise SourceError("the stream has no video")
            except Exception as exc:
                late = time.monotonic() - began >= self.settings.open_timeout
                put(generation, Lost(f"no answer within {self.settings.open_timeout:g} s" if late else self._why(exc)))
                return
            video = container.streams.video[0]
            tap, live = self.tap, self.live
            kept = tap is not None or live is not None
            packets = container.demux([video, *container.streams.audio] if kept else [video])
            # The open watchdog waits open_timeout + 1 s from `began`: the look for sound ends before it.
            sound, silent, held = (copyable_sound(container, packets, until=began + self.settings.open_timeout)
                                   if kept else (None, None, []))
            if silent and not self._told_silent:
                log.info("%s: recorded without sound: %s", self.display_name, silent)
                self._told_silent = True
            fmt = stream_format(video, sound) if kept else None
            if self.decode:
                decoder, where = decoder_for(video, self._device)
                if where == "software":
                    # Slices only: frame threads would hold each frame back by one frame per thread.
                    video.thread_type = "SLICE"
                    video.codec_context.thread_count = self.settings.decode_threads
            else:
                decoder, where = None, "none (recorded only)"
            ctx = video.codec_context
            rate = video.average_rate or video.guessed_rate
            info = SourceInfo(width=ctx.width, height=ctx.height, fps=float(rate) if rate and 0 < rate < 1000 else None,
                              frame_count=None, live=True, codec=ctx.name, decoder=where)
            if not put(generation, Opened(info)):
                return
            if tap is not None:
                tap.connected(generation, fmt)
            if live is not None:
                live.connected(Connected(generation, fmt, time.monotonic()))
            time_base = float(video.time_base) * 1000 if video.time_base else None
            to_bgr = bgr_converter()
            rate = None
            for packet in itertools.chain(held, packets):
                if packet.size == 0:
                    continue  # the empty packet that ends a stream (a camera's first keyframe may have no times)
                now = time.monotonic()
                is_video = packet.stream_index == video.index
                if not is_video and (sound is None or packet.stream_index != sound.stream.index):
                    continue
                if fmt is not None and (tap is not None or live.watched):
                    item = CameraPacket(generation, not is_video, bytes(packet) if is_video else sound.data(packet),
                                        packet.pts, packet.dts, packet.is_keyframe, now)
                    if tap is not None:
                        tap.put(item)
                    if live is not None:
                        live.put(item)
                if not is_video:
                    continue
                pts_ms = packet.pts * time_base if time_base and packet.pts is not None else None
                if decoder is None:
                    if not self._arrive(generation, Picture(None, now, pts_ms, generation)):
                        return
                    continue
                for frame in decoder.decode(packet):
                    self.decoded += 1
                    pts_ms = frame.pts * time_base if time_base and frame.pts is not None else None
                    now = time.monotonic()
                    if self.convert_fps and rate is None:
                        rate = DetectRate(self.convert_fps)
                    # The frame's time as the rate gate will read it (streamdet.sources.rate.camera_time).
                    if self.convert_fps and not rate.due(pts_ms / 1000 if pts_ms is not None else now):
                        picture = Picture(blank_image(frame.width, frame.height), now, pts_ms, generation, blank=True)
                    else:
                        self.converted += 1
                        picture = Picture(to_bgr(frame), time.monotonic(), pts_ms, generation)
                    if not self._arrive(generation, picture):
                        return
            put(generation, Lost("the stream ended"))
        except Exception as exc:  # a backend error must reach the watchdog, not vanish with this thread
            put(generation, Lost(self._why(exc)))
        finally:
            if container is not None:
                container.close()


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

    def _read_loop(self, generation: int) -> None:
        cap = None
        try:
            cap = self._open_capture()
            if not cap.isOpened():
                self._mailbox.put(generation, Lost("the backend could not open it"))
                return
            fps = cap.get(cv2.CAP_PROP_FPS)
            info = SourceInfo(width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                              fps=fps if 0 < fps < 1000 else None, frame_count=None, live=True)
            if not self._mailbox.put(generation, Opened(info)):
                return
            while True:
                ok, image = cap.read()
                if not ok or image is None:
                    self._mailbox.put(generation, Lost("the stream ended or timed out"))
                    return
                if not self._arrive(generation, Picture(image, time.monotonic())):
                    return
        except Exception as exc:  # a backend error must reach the watchdog, not vanish with this thread
            self._mailbox.put(generation, Lost(f"{type(exc).__name__}: {exc}"))
        finally:
            if cap is not None:
                cap.release()

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
