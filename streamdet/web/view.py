"""The web view as one of a run's outputs: frames in, a page, streams and JSON out."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.web import WebConfig
from ..detections import FrameResult
from ..errors import OutputError
from ..outputs import Output
from ..measures.figures import RunStatus
from ..sources.live_tap import LiveTap
from .frames import Draw, FrameHub
from .live_camera import CameraFeed
from .live_encoder import LiveEncoder
from .live_feed import LiveFeed
from .listener import bind_listener  # noqa: F401  part of streamdet.web's API
from .metrics import EventTally, LogTally
from .review import EventStore, Holds, ListSegments
from .server import WebServer

if TYPE_CHECKING:
    from ..assembly.changes import Reload

log = logging.getLogger("streamdet")


class WebView(Output):
    """Serves the run in a browser while it goes on (see streamdet.web.server for the routes)."""

    label = "web view"
    takes_events = True  # the review page lists the tracks that end, also with their source

    def __init__(self, sock: socket.socket, web: WebConfig, names: list[str], status: Callable[[], RunStatus],
                 draw: Draw | None, recordings: dict[str, ListSegments] | None = None,
                 clips: dict[str, Callable[[], int]] | None = None, holds: Holds | None = None,
                 tls: ssl.SSLContext | None = None, config_file: Path | None = None,
                 reload: Callable[[], Reload] | None = None, taps: dict[int, LiveTap] | None = None,
                 fps: list[float | None] | None = None, drawn: bool = False):
        """`draw`: the draw stage's drawing, when the web view draws for itself (no stage drew the frames);
        `recordings`: per source name, its recording's segments now (see streamdet.web.review); `clips`: per
        source name, the clips its clips output has written so far; `tls`: serve HTTPS with it; `config_file` and
        `reload`: the run's config file and its reload, for the admin's camera API and POST /api/reload (None: the
        run has none); `taps`: per source, the camera's packets for its live stream (the others' frames are
        encoded while watched, at `fps`); `drawn`: the frames carry the boxes already."""
        self._sock = sock
        self.hub = FrameHub(len(names), web, draw)
        taps, fps = taps or {}, fps or [None] * len(names)
        self._drawn = drawn
        self.cameras: dict[int, CameraFeed] = {}
        self.encoder = LiveEncoder(web.max_width)
        feeds = {i: self._live_feed(i, taps.get(i), fps[i]) for i in range(len(names))}
        self._closed = False
        self._recordings = recordings if recordings is not None else {}  # these grow with a camera a reload adds
        self._clips = clips if clips is not None else {}
        self._writers: list = []  # a new camera's clips and snapshots outputs
        self.events = EventStore(holds=None if holds is None else
                                 lambda path: holds(path) or any(o.holds(path) for o in self._writers))
        self.tally = EventTally(self._clips)  # events by source, kind and class, and clips, for /metrics
        self.logged = LogTally()   # warnings and errors logged while it serves, for /metrics
        log.addHandler(self.logged)
        try:
            self.server = WebServer(sock, web, self.hub, names, status, self._figures, self.events, self._recordings,
                                    self.tally, self.logged, tls, config_file, reload, feeds)
            self.server.start()
        except BaseException:
            log.removeHandler(self.logged)
            self.hub.stop()
            self.encoder.stop()
            sock.close()
            raise
        log.info("web view on %s%s", self.server.url, " (token required)" if web.token else "")

    def add_source(self, source_id: int, name: str, recordings: dict[str, ListSegments],
                   clips: dict[str, Callable[[], int]], writers: list, tap: LiveTap | None = None,
                   fps: float | None = None) -> None:
        """A camera added by a reload (on the output thread), with what its own outputs let the web view serve
        (streamdet.assembly.wiring.served_files) and its live stream: the camera's own packets (`tap`), else its
        frames encoded while watched (at `fps`); its frames come after this."""
        assert self.hub.add_source() == source_id, "a new source takes the next id"
        self._recordings.update(recordings)
        self._clips.update(clips)
        self._writers += writers
        self.server.add_source(source_id, name, self._live_feed(source_id, tap, fps))

    def _live_feed(self, source_id: int, tap: LiveTap | None, fps: float | None) -> LiveFeed:
        """A source's live stream: the camera's own packets (`tap`), else its frames encoded while watched."""
        feed = LiveFeed(drawn=self._drawn and tap is None)
        if tap is not None:
            self.cameras[source_id] = CameraFeed(feed, tap)
        else:
            self.encoder.add(source_id, feed, fps)
        return feed

    def remove_source(self, name: str) -> None:
        """A camera removed by a reload: no more live routes; its recordings, events and clips stay listed."""
        self.server.remove_source(name)

    def _figures(self) -> dict:
        encode, live = self.hub.encode_ms.summary(), self.encoder.encode_ms.summary()
        return {"jpeg_frames": encode.count, "jpeg_ms_mean": encode.mean_ms, "jpeg_ms_p95": encode.p95_ms,
                "live_encoded_frames": live.count, "live_encode_ms_mean": live.mean_ms, **self.server.live_figures()}

    def _check(self) -> None:
        error = self.hub.error or self.encoder.error or self.server.error
        if error is not None:
            raise OutputError(f"web view: {error}") from error

    def write(self, result: FrameResult) -> None:
        self._check()
        if result.events:
            self.events.add(result.events)
            self.tally.add(result.events)
        self.hub.publish(result.source_id, result)
        camera = self.cameras.get(result.source_id)
        if camera is not None:
            camera.frame(result)
        else:
            self.encoder.publish(result.source_id, result)

    def flush(self) -> None:
        self._check()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        t0 = time.monotonic()
        self.server.stop()
        self.hub.stop()
        self.encoder.stop()
        self._sock.close()
        log.removeHandler(self.logged)
        self.cpu_s = self.hub.cpu_s + self.encoder.cpu_s + self.server.cpu_s
        log.debug("web view closed in %.2f s", time.monotonic() - t0)
        self._check()
