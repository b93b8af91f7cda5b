"""The web view's live routes: the page, each source's MJPEG stream and snapshot, the sources and figures
as JSON, /healthz and /metrics.

A source's name in a route is looked up among the run's sources, never used otherwise; sources are shown
by name and masked URL, never with a camera's credentials. The streams wait on the server's loop for the
JPEG encoder's next frame (`start` hooks the encoder's notice onto that loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.resources
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from ..config.web import WebConfig
from ..measures.figures import RunStatus
from .access import access_of, named_camera
from .connections import Load, drop_stalled
from .frames import FrameHub
from .metrics import CONTENT_TYPE_LATEST, EventTally, LogTally, MetricsPage, Scrape, WebFigures, recording_sizes
from .responses import HEADERS, PAGE_CSP, json_response, source_id
from .review import ListSegments
from .route import Route


_BOUNDARY = "streamdet-frame"
# How often a stream waiting for a frame (a camera that is away) checks that its client is still there.
_IDLE_CHECK_S = 1.0


class LiveRoutes:
    """What the run shows now, for the server's loop."""

    def __init__(self, web_config: WebConfig, hub: FrameHub, names: list[str], status: Callable[[], RunStatus],
                 extra: Callable[[], dict], load: Callable[[], Load], recordings: dict[str, ListSegments],
                 tally: EventTally, logged: LogTally | None, live_viewers: Callable[[int], int] | None = None):
        """`extra`: more figures for /api/stats' "web"; `load`: the server's admission figures now;
        `live_viewers`: a source's live H.264 viewers now (streamdet.web.live_video)."""
        self._web = web_config
        self._hub = hub
        self._names = names
        self._index = {name: i for i, name in enumerate(names)}
        self._status = status
        self._extra = extra
        self._load = load
        self._recordings = recordings
        self._tally = tally
        self._logged = logged
        self._live_viewers = live_viewers or (lambda source: 0)
        self._metrics = MetricsPage(self._scrape)
        self._page = importlib.resources.files(__package__).joinpath("page.html").read_bytes()
        self.dropped_stalled = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: dict[int, asyncio.Event] = {}  # per source id, on the loop; a source added later gets its own
        self._stop: asyncio.Event | None = None

    def routes(self) -> list[Route]:
        routes = [Route("/", self._page_handler, shows="nothing"),
                  Route("/stream/{name}.mjpg", self._stream, long=True, camera=named_camera),
                  Route("/snapshot/{name}.jpg", self._snapshot, camera=named_camera),
                  Route("/api/sources", self._sources, shows="cameras"),
                  Route("/api/stats", self._stats, shows="cameras"),
                  Route("/healthz", self._healthz, shows="cameras")]
        if self._web.metrics:
            # Every camera's figures and the run's: an admin's, or web.metrics_token's (Prometheus).
            routes.append(Route("/metrics", self._metrics_handler, admin=True, metrics=True))
        return routes

    # ------------------------------------------------------ frames to the loop

    def start(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        """On the server's loop, before it serves: the encoder's new frames wake the streams waiting there,
        which end once `stop` is set."""
        self._loop = loop
        self._stop = stop
        self._changed = {i: asyncio.Event() for i in range(len(self._names))}
        self._hub.on_jpeg(self._notify)

    def end(self) -> None:
        """On the loop, once the server has stopped: streams waiting for a frame see the stop and end."""
        for event in list(self._changed.values()):
            event.set()

    def _notify(self, source_id: int) -> None:
        """On the encoder thread: a new JPEG; the streams waiting for it are woken on the loop."""
        try:
            self._loop.call_soon_threadsafe(self._wake, source_id)
        except RuntimeError:
            pass  # the loop has ended: the run is stopping and nobody waits any more

    def _wake(self, source_id: int) -> None:
        event = self._changed.get(source_id)
        self._changed[source_id] = asyncio.Event()
        if event is not None:
            event.set()

    def add_source(self, source_id: int, name: str) -> None:
        """A camera added by a reload (on the output thread): its routes answer from now on."""
        assert source_id == len(self._names), "a new source takes the next id"
        self._names.append(name)
        self._index[name] = source_id

    def remove_source(self, name: str) -> None:
        """A camera removed by a reload: its stream and snapshot routes answer 404 from now on."""
        self._index.pop(name, None)

    def _viewers(self, status: RunStatus) -> list[int]:
        """The MJPEG and live H.264 streams open now for each source of `status`, in its order."""
        watchers = self._hub.watchers()
        ids = [self._index.get(s.name) for s in status.sources]
        return [watchers[i] + self._live_viewers(i) if i is not None and i < len(watchers) else 0 for i in ids]

    # ----------------------------------------------------------------- routes

    async def _page_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": PAGE_CSP})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        source = source_id(request, self._index)
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}"})
        await response.prepare(request)
        self._hub.watch(source, +1)
        sent = 0
        try:
            while not self._stop.is_set():
                jpeg = self._hub.latest(source)
                if jpeg is None or jpeg.seq <= sent:
                    if not await self._changed_or_still_there(source, request):
                        break  # the client left while its camera sent nothing
                    continue
                if not await self._send(response, request, source, jpeg.data):
                    break
                sent = jpeg.seq
        except (ConnectionError, RuntimeError):
            pass  # the client went away (aiohttp says so with ClientConnectionResetError or RuntimeError)
        finally:
            self._hub.watch(source, -1)
        return response

    async def _changed_or_still_there(self, source: int, request: web.Request) -> bool:
        """Wait for the source's next frame; False when none came in a while and the client has gone."""
        try:
            await asyncio.wait_for(self._changed.setdefault(source, asyncio.Event()).wait(), _IDLE_CHECK_S)
        except asyncio.TimeoutError:
            return not (request.transport is None or request.transport.is_closing())
        return True

    async def _send(self, response: web.StreamResponse, request: web.Request, source: int, jpeg: bytes) -> bool:
        """One JPEG of the stream; False (and the connection dropped) when the client took none in time."""
        part = (f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                .encode() + jpeg + b"\r\n")
        try:
            await asyncio.wait_for(response.write(part), self._web.client_timeout)
        except asyncio.TimeoutError:
            self.dropped_stalled += 1
            drop_stalled(request, "a viewer", self._names[source], self._web.client_timeout)
            return False
        return True

    async def _snapshot(self, request: web.Request) -> web.Response:
        source = source_id(request, self._index)
        changed = self._changed.setdefault(source, asyncio.Event())
        seq = self._hub.want(source)
        if seq == 0:
            raise web.HTTPServiceUnavailable(text=f"{self._names[source]}: no frame yet\n", headers=HEADERS)
        jpeg = self._hub.latest(source)
        while jpeg is None or jpeg.seq < seq:
            try:
                await asyncio.wait_for(changed.wait(), self._web.client_timeout)
            except asyncio.TimeoutError:
                raise web.HTTPServiceUnavailable(text="the frame could not be encoded in time\n",
                                                 headers=HEADERS) from None
            if self._stop.is_set():
                raise web.HTTPServiceUnavailable(text="the run is ending\n", headers=HEADERS)
            changed = self._changed.setdefault(source, asyncio.Event())
            jpeg = self._hub.latest(source)
        return web.Response(body=jpeg.data, content_type="image/jpeg")

    async def _sources(self, request: web.Request) -> web.Response:
        status, access = self._status(), access_of(request)
        # Names made from file names may hold '#', '?', '%' or spaces: the links carry them encoded.
        return json_response([{"name": s.name, "url": s.url, "live": s.live, "state": s.state, "width": s.width,
                               "height": s.height, "stream": f"/stream/{quote(s.name, safe='')}.mjpg",
                               "snapshot": f"/snapshot/{quote(s.name, safe='')}.jpg",
                               "video": f"/live/{quote(s.name, safe='')}.mp4",
                               "detections": f"/live/{quote(s.name, safe='')}.detections"}
                              for s in status.sources if access.may_see(s.name)])

    async def _stats(self, request: web.Request) -> web.Response:
        status, access = self._status(), access_of(request)
        sources = [{**dataclasses.asdict(s), "viewers": n} for s, n in zip(status.sources, self._viewers(status))
                   if access.may_see(s.name)]
        inference = dataclasses.asdict(status.inference) if status.inference is not None else None
        load = self._load()
        return json_response({"uptime_s": round(status.uptime_s, 3), "frames": status.frames, "sources": sources,
                              "inference": inference,
                              "web": {"clients": load.clients, "most_clients": load.most_clients,
                                      "max_clients": self._web.max_clients, "refused": load.refused,
                                      "connections": load.connections, "max_connections": load.max_connections,
                                      "dropped_stalled": self.dropped_stalled, **self._extra()}})

    async def _healthz(self, request: web.Request) -> web.Response:
        access = access_of(request)
        offline = [name for name in self._status().offline if access.may_see(name)]
        if offline:
            return web.Response(status=503, text=f"offline: {', '.join(offline)}\n", headers=HEADERS)
        return web.Response(text="ok\n", headers=HEADERS)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        # Off the loop: the status is read under the run's locks, and percentiles are computed.
        text = await asyncio.get_running_loop().run_in_executor(None, self._metrics.text)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _scrape(self) -> Scrape:
        events, clips = self._tally.counts()
        load = self._load()
        status = self._status()
        return Scrape(status=status, events=events, clips=clips,
                      logged=self._logged.counts() if self._logged is not None else {},
                      recordings={name: recording_sizes(listing) for name, listing in list(self._recordings.items())},
                      web=WebFigures(viewers=self._viewers(status), connections=load.connections,
                                     refused=load.refused, dropped_stalled=self.dropped_stalled))
