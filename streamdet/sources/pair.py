"""A camera detected on its sub-stream (`detect_url`) and recorded from its main stream (`url`).

Detection, motion, tracking, events and the web view's live picture take the sub-stream's frames; the
main stream is only demuxed, for the copy recording. The boxes are given in the main stream's pixels (what
is recorded): each frame says so (`Frame.space`) and the engines read the network's output out at that size.
Each stream reconnects on its own; the camera counts as offline while either is away, and says which.
Until the main stream has answered once there is no size to give the boxes in: nothing is detected before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import SourceError
from .base import Frame, Source, SourceHealth, SourceInfo
from .cameras import NetworkSource
from .demux import PacketTap
from .live_tap import LiveTap

log = logging.getLogger("streamdet.live")


class CameraPair(Source):
    def __init__(self, main: Source, detect: Source):
        if not isinstance(main, NetworkSource) or not isinstance(detect, NetworkSource):
            raise SourceError("detect_url: url and detect_url must both be network cameras (rtsp:// or http(s)://)")
        self.main, self.detect = main, detect
        main.decode = False  # recorded as it comes: never decoded
        self.name = main.name
        self.display_name = main.display_name
        self._driver: threading.Thread | None = None
        self._error: BaseException | None = None

    def keep_packets(self) -> PacketTap:
        return self.main.keep_packets()

    def show_packets(self) -> LiveTap:
        return self.main.show_packets()

    def open(self) -> SourceInfo:
        # Both at once: a main stream that is away must not hold up the sub-stream for its open timeout.
        opened: dict[str, SourceInfo | BaseException] = {}

        def open_main() -> None:
            try:
                opened["main"] = self.main.open()
            except BaseException as exc:
                opened["main"] = exc

        thread = threading.Thread(target=open_main, name=f"open-{self.name}-main", daemon=True)
        thread.start()
        detect = self.detect.open()
        thread.join()
        if isinstance(opened["main"], BaseException):
            self.detect.close()
            raise opened["main"]
        main = opened["main"]
        self._driver = threading.Thread(target=self._drive, name=f"reader-{self.name}-main", daemon=True)
        self._driver.start()
        return SourceInfo(width=main.width or detect.width, height=main.height or detect.height, fps=detect.fps,
                          frame_count=None, live=True, codec=main.codec, decoder=detect.decoder)

    def _drive(self) -> None:
        """The main stream's watchdog: keeps it connected until stop. Its pictures are never decoded, so
        nothing is handed on."""
        try:
            self.main.feed(lambda frame: True)
        except BaseException as exc:  # an error of the main stream ends the camera's feed with it
            self._error = exc
            self.detect.stop()

    def feed(self, deliver: Callable[[Frame], bool]) -> None:
        waited = False

        def shaped(frame: Frame) -> bool:
            nonlocal waited
            main = self.main.current
            if main is None or not main.width:
                # The boxes are given in the main stream's pixels, so until it has been seen once (a cold
                # start with it away) there is nothing to give them in: the camera is offline, as the status
                # says.
                if not waited:
                    log.info("%s: waiting for the main stream (url) before detecting on the sub-stream: "
                             "the boxes are given in its pixels", self.display_name)
                    waited = True
                return True
            frame.space = (main.width, main.height)
            # Its time and connection are the sub-stream's, which say nothing of where the main stream's
            # packets are (its connection numbers count from 1 too): it is placed by when it was captured.
            frame.camera_pts_ms, frame.connection = None, 0
            return deliver(frame)

        self.detect.feed(shaped)
        if self._error is not None:
            raise self._error

    def health(self) -> SourceHealth:
        main, detect = self.main.health(), self.detect.health()
        away = [f"{what}: {h.last_error or 'offline'}" for what, h in (("main stream (url)", main),
                                                                        ("sub-stream (detect_url)", detect))
                if not h.connected]
        offline = [h.offline_s for h in (main, detect) if h.offline_s is not None]
        return SourceHealth(
            connected=main.connected and detect.connected,
            input_fps=detect.input_fps,
            reconnects=main.reconnects + detect.reconnects,
            offline_s=max(offline) if offline else None,
            attempt=max(main.attempt, detect.attempt),
            next_try_s=min((h.next_try_s for h in (main, detect) if h.next_try_s is not None), default=None),
            last_error="; ".join(away) or None,
        )

    def stop(self) -> None:
        self.main.stop()
        self.detect.stop()

    def close(self) -> None:
        self.main.close()
        self.detect.close()
        if self._driver is not None:
            self._driver.join(timeout=2.0)
