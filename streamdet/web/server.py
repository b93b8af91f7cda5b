"""The web view's HTTP server: aiohttp on a thread and event loop of its own, the connections it holds and
who it lets in (a token, and places for long and short requests).

aiohttp rather than the standard library's http.server: MJPEG clients stay
connected for hours, and here each is a coroutine instead of a thread, with
back-pressure (`write` waits while a client's socket is full, so a stalled
client is found by a timeout), keep-alive and header limits built in. It is
what Home Assistant proxies camera MJPEG with.

Only the fixed routes exist, from route tables: what the run shows now
(streamdet.web.live_routes), what it left behind (streamdet.web.review_routes),
the pages' files (streamdet.web.static) and the admin's changes to the run
(streamdet.web.config_routes); each marks its long routes, which take the
viewers' places.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..config.web import WebConfig
from ..measures.figures import RunStatus
from .access import Gate
from .config_routes import ConfigRoutes
from .connections import (LOG_EVERY_S, SHORT_REQUESTS, SPARE_CONNECTIONS, Counted, Load, Once, Refused, connection_cap,
                          http_log)
from .frames import FrameHub
from .listener import listener_url
from .live_detections import LiveDetections
from .live_feed import LiveFeed
from .live_routes import LiveRoutes
from .login_routes import LoginRoutes
from .logins import Logins
from .live_video import LiveVideo
from .metrics import EventTally, LogTally
from .responses import HEADERS
from .review import EventStore, ListSegments
from .review_routes import ReviewRoutes
from .route import Route
from .static import StaticFiles
from .tls import HANDSHAKE_S

if TYPE_CHECKING:
    from ..assembly.changes import Reload

log = logging.getLogger("streamdet")


class WebServer:
    """Serves the page, MJPEG streams, snapshots, JSON, the review pages and /healthz for one run."""

    def __init__(self, sock: socket.socket, web_config: WebConfig, hub: FrameHub, names: list[str],
                 status: Callable[[], RunStatus], extra: Callable[[], dict], store: EventStore | None = None,
                 recordings: dict[str, ListSegments] | None = None, tally: EventTally | None = None,
                 logged: LogTally | None = None, tls: ssl.SSLContext | None = None, config_file: Path | None = None,
                 reload: Callable[[], Reload] | None = None, feeds: dict[int, LiveFeed] | None = None):
        """`tls`: serve HTTPS with it (streamdet.web.tls), else plain HTTP; `feeds`: per source id, its live
        H.264 stream (streamdet.web.live_video)."""
        self._sock = sock
        self._tls = tls
        self._web = web_config
        recordings = recordings if recordings is not None else {}  # shared: a reload adds a camera's to it
        self._video = LiveVideo(web_config, feeds if feeds is not None else {}, {name: i for i, name in enumerate(names)})
        self._live = LiveRoutes(web_config, hub, names, status, extra, self.load, recordings, tally or EventTally(),
                                logged, self._video.viewers)
        self._review = ReviewRoutes(names, store or EventStore(), recordings)
        self._detections = LiveDetections(web_config, self._video)
        self._static = StaticFiles()
        self._config = ConfigRoutes(config_file, reload)
        # With web.users: logins, checked against the file (a missing or broken one is one line here).
        self.logins = Logins(web_config.users, web_config.session_idle * 60) if web_config.users else None
        self._login = LoginRoutes(self.logins)
        self._gate = Gate(web_config, self.logins)
        self._long: set[web.AbstractResource] = set()  # long routes' resources (GET and HEAD alike)
        self._routes: dict[web.AbstractRoute, Route] = {}  # what each of aiohttp's routes is (who may use it)
        self.clients = 0            # open long requests (MJPEG streams, clips and segments playing)
        self._short = 0             # other requests in progress (page, snapshots, JSON, /healthz)
        self.most_clients = 0
        self.refused = 0
        self.max_connections = connection_cap(web_config.max_clients)
        self.connections = 0        # open connections of every kind
        self._once = Once(LOG_EVERY_S)
        self.error: BaseException | None = None
        self.cpu_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="web-server", daemon=True)

    @property
    def url(self) -> str:
        return listener_url(self._sock, self._tls is not None)

    @property
    def dropped_stalled(self) -> int:
        """Viewers dropped for taking no frame within web.client_timeout."""
        return self._live.dropped_stalled + self._video.dropped_stalled + self._detections.dropped_stalled

    def live_figures(self) -> dict:
        """The live streams' figures for /api/stats: viewers, bytes sent, skips to the newest keyframe."""
        feeds = self._video.feeds.values()
        return {"live_viewers": sum(f.viewers for f in feeds), "live_bytes": sum(f.sent for f in feeds),
                "live_skipped": sum(f.skipped for f in feeds),
                "live_dropped_stalled": self._video.dropped_stalled + self._detections.dropped_stalled}

    def load(self) -> Load:
        return Load(clients=self.clients, most_clients=self.most_clients, refused=self.refused,
                    connections=self.connections, max_connections=self.max_connections)

    def add_source(self, source_id: int, name: str, feed: LiveFeed) -> None:
        """A camera added by a reload: its routes answer from now on, its live stream from `feed`."""
        self._video.add(source_id, name, feed)
        self._live.add_source(source_id, name)
        self._review.add_source(source_id, name)

    def remove_source(self, name: str) -> None:
        """A camera removed by a reload: gone from the live routes, its recordings still listed."""
        self._live.remove_source(name)
        self._video.remove(name)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop ended already
        self._thread.join(timeout=10)

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        c0 = time.thread_time()
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # raised by the web view on the output thread's next write
            self.error = exc
            log.debug("web server failed", exc_info=True)
        finally:
            self.cpu_s = time.thread_time() - c0
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._live.start(self._loop, self._stop)
        self._video.start(self._loop, self._stop)
        self._detections.start(self._stop)
        # Room for a camera's entry with its zones and masks (PUT /api/config/sources/{name}); no route takes more.
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        for route in self.routes():
            self._add(app, route)
        self._loop.set_exception_handler(self._loop_error)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0,
                               keepalive_timeout=15.0, logger=http_log)
        await runner.setup()
        listener = None
        try:
            # Accepted here rather than by web.SockSite: aiohttp takes every connection that comes.
            listener = await self._loop.create_server(lambda: self._connection(runner.server), sock=self._sock,
                                                      backlog=64, ssl=self._tls,
                                                      ssl_handshake_timeout=HANDSHAKE_S if self._tls else None)
            self._ready.set()
            await self._stop.wait()
        finally:
            if listener is not None:
                listener.close()
            self._live.end()
            self._video.end()
            await runner.cleanup()
            if self.logins is not None:
                self.logins.end()

    def routes(self) -> list[Route]:
        """Every route the server serves, from its route tables."""
        return [*self._live.routes(), *self._video.routes(), *self._detections.routes(), *self._review.routes(),
                *self._login.routes(), *self._static.routes(), *self._config.routes()]

    def _add(self, app: web.Application, route: Route) -> None:
        added = app.router.add_route(route.method, route.path, route.handler)
        self._routes[added] = route
        if route.method == "GET":
            self._routes[app.router.add_route("HEAD", route.path, route.handler)] = route
        if route.long:
            self._long.add(added.resource)

    def _connection(self, handler_factory: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        if self.connections >= self.max_connections:
            self.refused += 1
            if self._once("connections"):
                log.warning("web: refusing connections: %d are open, the most the web view takes (web.max_clients + "
                            "%d, at most a quarter of ulimit -n); raise those if these are real viewers "
                            "(said at most once a minute)", self.connections, SHORT_REQUESTS + SPARE_CONNECTIONS)
            return Refused()
        self.connections += 1
        return Counted(handler_factory(), self._connection_closed, self._loop,
                       handshake_s=HANDSHAKE_S if self._tls is not None else None)

    def _connection_closed(self) -> None:
        self.connections -= 1

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """One line, not asyncio's traceback, for an accept that found no descriptor (the run needs them)."""
        exc = context.get("exception")
        if not isinstance(exc, OSError):
            loop.default_exception_handler(context)
        elif self._once(f"loop-{exc.errno}"):
            log.warning("web: %s (%s); the web view pauses and tries again", context.get("message"), exc.strerror or exc)

    # -------------------------------------------------------- middleware

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        refused = self._gate.admit(request, self._routes.get(request.match_info.route))
        if refused is not None:
            return refused
        streaming = request.match_info.route.resource in self._long
        if streaming and self.clients >= self._web.max_clients:
            self.refused += 1
            return web.Response(status=503, text=f"busy: {self._web.max_clients} viewers already (web.max_clients)\n",
                                headers={**HEADERS, "Retry-After": "5"})
        if not streaming and self._short >= SHORT_REQUESTS:
            self.refused += 1
            return web.Response(status=503, text="busy: too many requests at once\n",
                                headers={**HEADERS, "Retry-After": "1"})
        if streaming:
            self.clients += 1
            self.most_clients = max(self.most_clients, self.clients)
        else:
            self._short += 1
        try:
            response = await handler(request)
        finally:
            if streaming:
                self.clients -= 1
            else:
                self._short -= 1
        if not response.prepared:
            for key, value in HEADERS.items():
                response.headers.setdefault(key, value)
        return response
