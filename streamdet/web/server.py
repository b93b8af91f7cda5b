"""The web view's HTTP server: aiohttp on a thread and event loop of its own.

aiohttp rather than the standard library's http.server: MJPEG clients stay
connected for hours, and here each is a coroutine instead of a thread, with
back-pressure (`write` waits while a client's socket is full, so a stalled
client is found by a timeout), keep-alive and header limits built in. It is
what Home Assistant proxies camera MJPEG with.

Only the fixed routes exist; a name in a route is looked up among the run's
sources, or among the files this run wrote (streamdet.web.review), never used
as a path. No page or JSON carries a camera's credentials:
sources are shown by name and masked URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import importlib.resources
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from ..config.sections import WebConfig
from ..stats import RunStatus
from .connections import LOG_EVERY_S, SHORT_REQUESTS, SPARE_CONNECTIONS, Counted, Once, Refused, connection_cap, http_log
from .frames import FrameHub
from .metrics import CONTENT_TYPE_LATEST, EventTally, LogTally, MetricsPage, Scrape, WebFigures, recording_sizes
from .responses import HEADERS, file_response, json_response, query_of, segment_listing
from .review import EventStore, ListSegments, detections_of

log = logging.getLogger("streamdet")

_BOUNDARY = "streamdet-frame"
_PAGE_CSP = ("default-src 'none'; img-src 'self'; connect-src 'self'; script-src 'unsafe-inline'; "
             "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The review pages play clips and recordings in <video>: media-src too.
_REVIEW_CSP = _PAGE_CSP.replace("img-src 'self';", "img-src 'self'; media-src 'self';")
# How often a stream waiting for a frame (a camera that is away) checks that its client is still there.
_IDLE_CHECK_S = 1.0
class WebServer:
    """Serves the page, MJPEG streams, snapshots, JSON and /healthz for one run."""

    def __init__(self, sock: socket.socket, web_config: WebConfig, hub: FrameHub, names: list[str],
                 status: Callable[[], RunStatus], extra: Callable[[], dict], store: EventStore | None = None,
                 recordings: dict[str, ListSegments] | None = None, tally: EventTally | None = None,
                 logged: LogTally | None = None):
        self._sock = sock
        self._web = web_config
        self._hub = hub
        self._names = names
        self._index = {name: i for i, name in enumerate(names)}
        self._status = status
        self._extra = extra
        self._store = store or EventStore()
        self._recordings = recordings or {}
        self._tally = tally or EventTally()
        self._logged = logged
        self._metrics = MetricsPage(self._scrape)
        pages = importlib.resources.files(__package__)
        self._page = pages.joinpath("page.html").read_bytes()
        head = pages.joinpath("review-head.html").read_text()
        self._events_page = (head.replace("$title", "streamdet events") + pages.joinpath("events.html").read_text()).encode()
        self._recordings_page = (head.replace("$title", "streamdet recordings")
                                 + pages.joinpath("recordings.html").read_text()).encode()
        self.clients = 0            # open MJPEG streams
        self._short = 0             # other requests in progress (page, snapshots, JSON, /healthz)
        self.most_clients = 0
        self.refused = 0
        self.max_connections = connection_cap(web_config.max_clients)
        self.connections = 0        # open connections of every kind
        self._once = Once(LOG_EVERY_S)
        self.dropped_stalled = 0
        self.error: BaseException | None = None
        self.cpu_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._changed: list[asyncio.Event] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="web-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

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
        self._changed = [asyncio.Event() for _ in self._names]
        self._hub.on_jpeg(self._notify)
        app = web.Application(middlewares=[self._guard], client_max_size=4096)
        routes = {
            "/": self._page_handler,
            "/stream/{name}.mjpg": self._stream,
            "/snapshot/{name}.jpg": self._snapshot,
            "/api/sources": self._sources,
            "/api/stats": self._stats,
            "/healthz": self._healthz,
            "/metrics": self._metrics_handler if self._web.metrics else None,
            "/events": self._events_handler,
            "/api/events": self._events_json,
            "/snapshots/{file}": self._snapshot_file,
            "/clips/{file}": self._clip_file,
            "/recordings/{name}": self._recordings_handler,
            "/api/recordings/{name}": self._recordings_json,
            "/recordings/{name}/{file}": self._segment_file,
            "/api/recordings/{name}/{file}": self._detections_file,
        }
        for path, handler in routes.items():
            if handler is not None:
                app.router.add_get(path, handler)
        self._loop.set_exception_handler(self._loop_error)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0,
                               keepalive_timeout=15.0, logger=http_log)
        await runner.setup()
        listener = None
        try:
            # Accepted here rather than by web.SockSite: aiohttp takes every connection that comes.
            listener = await self._loop.create_server(lambda: self._connection(runner.server), sock=self._sock,
                                                      backlog=64)
            self._ready.set()
            await self._stop.wait()
        finally:
            if listener is not None:
                listener.close()
            for event in self._changed:
                event.set()  # streams waiting for a frame see the stop and end
            await runner.cleanup()

    def _connection(self, handler_factory: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        if self.connections >= self.max_connections:
            self.refused += 1
            if self._once("connections"):
                log.warning("web: refusing connections: %d are open, the most the web view takes (web.max_clients + "
                            "%d, at most a quarter of ulimit -n); raise those if these are real viewers "
                            "(said at most once a minute)", self.connections, SHORT_REQUESTS + SPARE_CONNECTIONS)
            return Refused()
        self.connections += 1
        return Counted(handler_factory(), self._connection_closed, self._loop)

    def _connection_closed(self) -> None:
        self.connections -= 1

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """One line, not asyncio's traceback, for an accept that found no descriptor (the run needs them)."""
        exc = context.get("exception")
        if not isinstance(exc, OSError):
            loop.default_exception_handler(context)
        elif self._once(f"loop-{exc.errno}"):
            log.warning("web: %s (%s); the web view pauses and tries again", context.get("message"), exc.strerror or exc)

    def _notify(self, source_id: int) -> None:
        """On the encoder thread: a new JPEG; the streams waiting for it are woken on the loop."""
        try:
            self._loop.call_soon_threadsafe(self._wake, source_id)
        except RuntimeError:
            pass  # the loop has ended: the run is stopping and nobody waits any more

    def _wake(self, source_id: int) -> None:
        event = self._changed[source_id]
        self._changed[source_id] = asyncio.Event()
        event.set()

    # -------------------------------------------------------- middleware

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if self._web.token and not self._authorised(request):
            return web.Response(status=401, text="a token is needed: send 'Authorization: Bearer TOKEN' or ?token=TOKEN\n",
                                headers={**HEADERS, "WWW-Authenticate": 'Bearer realm="streamdet"'})
        streaming = _long(request.path)
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

    def _authorised(self, request: web.Request) -> bool:
        given = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            given = header[7:].strip()
        return hmac.compare_digest(given.encode(), self._web.token.encode())

    def _source_id(self, request: web.Request) -> int:
        name = request.match_info["name"]
        if name not in self._index:
            raise web.HTTPNotFound(text=f"no source named {name!r} in this run; see /api/sources\n", headers=HEADERS)
        return self._index[name]

    # ----------------------------------------------------------- routes

    async def _page_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": _PAGE_CSP})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        source_id = self._source_id(request)
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}"})
        await response.prepare(request)
        self._hub.watch(source_id, +1)
        sent = 0
        try:
            while not self._stop.is_set():
                jpeg = self._hub.latest(source_id)
                if jpeg is None or jpeg.seq <= sent:
                    changed = self._changed[source_id]
                    try:
                        await asyncio.wait_for(changed.wait(), _IDLE_CHECK_S)
                    except asyncio.TimeoutError:
                        if request.transport is None or request.transport.is_closing():
                            break  # the client left while its camera sent nothing
                    continue
                part = (f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg.data)}\r\n\r\n"
                        .encode() + jpeg.data + b"\r\n")
                try:
                    await asyncio.wait_for(response.write(part), self._web.client_timeout)
                except asyncio.TimeoutError:
                    self.dropped_stalled += 1
                    log.info("web: dropped a viewer of %s that took no frame for %g s (web.client_timeout)",
                             self._names[source_id], self._web.client_timeout)
                    if request.transport is not None:
                        request.transport.abort()
                    break
                sent = jpeg.seq
        except (ConnectionError, RuntimeError):
            pass  # the client went away (aiohttp says so with ClientConnectionResetError or RuntimeError)
        finally:
            self._hub.watch(source_id, -1)
        return response

    async def _snapshot(self, request: web.Request) -> web.Response:
        source_id = self._source_id(request)
        changed = self._changed[source_id]
        seq = self._hub.want(source_id)
        if seq == 0:
            raise web.HTTPServiceUnavailable(text=f"{self._names[source_id]}: no frame yet\n", headers=HEADERS)
        jpeg = self._hub.latest(source_id)
        while jpeg is None or jpeg.seq < seq:
            try:
                await asyncio.wait_for(changed.wait(), self._web.client_timeout)
            except asyncio.TimeoutError:
                raise web.HTTPServiceUnavailable(text="the frame could not be encoded in time\n",
                                                 headers=HEADERS) from None
            if self._stop.is_set():
                raise web.HTTPServiceUnavailable(text="the run is ending\n", headers=HEADERS)
            changed = self._changed[source_id]
            jpeg = self._hub.latest(source_id)
        return web.Response(body=jpeg.data, content_type="image/jpeg")

    async def _sources(self, request: web.Request) -> web.Response:
        status = self._status()
        # Names made from file names may hold '#', '?', '%' or spaces: the links carry them encoded.
        return json_response([{"name": s.name, "url": s.url, "live": s.live, "state": s.state, "width": s.width,
                       "height": s.height, "stream": f"/stream/{quote(s.name, safe='')}.mjpg",
                       "snapshot": f"/snapshot/{quote(s.name, safe='')}.jpg"}
                      for s in status.sources])

    async def _stats(self, request: web.Request) -> web.Response:
        status = self._status()
        watchers = self._hub.watchers()
        sources = [{**dataclasses.asdict(s), "viewers": watchers[i]} for i, s in enumerate(status.sources)]
        inference = dataclasses.asdict(status.inference) if status.inference is not None else None
        return json_response({"uptime_s": round(status.uptime_s, 3), "frames": status.frames, "sources": sources,
                      "inference": inference,
                      "web": {"clients": self.clients, "most_clients": self.most_clients,
                              "max_clients": self._web.max_clients, "refused": self.refused,
                              "connections": self.connections, "max_connections": self.max_connections,
                              "dropped_stalled": self.dropped_stalled, **self._extra()}})

    async def _healthz(self, request: web.Request) -> web.Response:
        offline = self._status().offline
        if offline:
            return web.Response(status=503, text=f"offline: {', '.join(offline)}\n", headers=HEADERS)
        return web.Response(text="ok\n", headers=HEADERS)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        # Off the loop: the status is read under the run's locks, and percentiles are computed.
        text = await asyncio.get_running_loop().run_in_executor(None, self._metrics.text)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _scrape(self) -> Scrape:
        events, clips = self._tally.counts()
        return Scrape(status=self._status(), events=events, clips=clips,
                      logged=self._logged.counts() if self._logged is not None else {},
                      recordings={name: recording_sizes(listing) for name, listing in self._recordings.items()},
                      web=WebFigures(viewers=self._hub.watchers(), connections=self.connections,
                                     refused=self.refused, dropped_stalled=self.dropped_stalled))

    # ------------------------------------------------------- review routes

    async def _events_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._events_page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": _REVIEW_CSP})

    async def _events_json(self, request: web.Request) -> web.Response:
        query = query_of(request)
        found = self._store.find(query)
        more = None
        if len(found) == query.limit:
            params = {k: v for k, v in request.query.items() if k not in ("cursor", "token")}
            params["cursor"] = str(found[-1].id)
            more = "/api/events?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
        return json_response({"events": [e.to_dict() for e in found], "next": more})

    async def _snapshot_file(self, request: web.Request) -> web.StreamResponse:
        return file_response(self._store.snapshot(request.match_info["file"]))

    async def _clip_file(self, request: web.Request) -> web.StreamResponse:
        return file_response(self._store.clip(request.match_info["file"]))

    def _segments(self, request: web.Request) -> list[tuple[Path, float]]:
        name = request.match_info["name"]
        self._source_id(request)  # 404 for a name that is no source of this run
        listing = self._recordings.get(name)
        return listing() if listing is not None else []

    async def _recordings_handler(self, request: web.Request) -> web.Response:
        self._source_id(request)
        return web.Response(body=self._recordings_page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": _REVIEW_CSP})

    async def _recordings_json(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return json_response({"source": name, "recording": name in self._recordings,
                              "segments": segment_listing(name, self._segments(request))})

    async def _segment_file(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["file"]
        return file_response(next((path for path, _ in self._segments(request) if path.name == wanted), None))

    async def _detections_file(self, request: web.Request) -> web.StreamResponse:
        """A segment's detections file: only beside a segment in the camera's record, never any other .jsonl."""
        wanted = request.match_info["file"]
        beside = (detections_of(path) for path, _ in self._segments(request))
        found = next((path for path in beside if path is not None and path.name == wanted), None)
        response = file_response(found)
        response.content_type = "application/jsonl"
        return response


def _long(path: str) -> bool:
    """A request that may last as long as its viewer watches: an MJPEG stream, or a clip or segment that
    a <video> plays while it downloads. These take the viewers' places (web.max_clients), so they
    never crowd out the page, JSON and /healthz."""
    return path.startswith(("/stream/", "/clips/")) or (path.startswith("/recordings/") and path.count("/") >= 3)
