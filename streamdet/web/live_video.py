"""Each source's live H.264 stream as fragmented MP4 (`/live/{name}.mp4`), starting at its newest keyframe:
a camera's own packets where the run has them (streamdet.web.live_camera), else its frames encoded once while
watched (streamdet.web.live_encoder).

The same route answers two ways. A WebSocket (what the page uses): a text message first, {"mime", "drawn"},
then the init segment and each fragment as binary messages. A plain GET: chunked HTTP with the MIME type as
Content-Type, for players and tools (ffplay, VLC, curl). The page uses the WebSocket because a browser opens
at most six HTTP/1.1 connections to a server: one stream per camera would leave a grid of six cameras with
none for the page's own requests, while WebSockets have a pool of their own.

A viewer is a long request (web.max_clients). It never queues: it takes from the feed's shared ring, skips to
the newest keyframe when it falls behind, and is dropped when it takes nothing for web.client_timeout.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from ..config.web import WebConfig
from ..outputs.fmp4 import InitSegment
from .live_feed import LiveFeed
from .responses import HEADERS, source_id
from .access import named_camera
from .connections import drop_stalled
from .route import Route


IDLE_CHECK_S = 1.0  # how often a viewer waiting for the stream checks that it is still there
# The kernel's send buffer for a live viewer (Linux doubles it): on loopback it would grow to megabytes, seconds
# of a camera's stream that a viewer gone silent would hold unseen before web.client_timeout could notice.
SEND_BUFFER = 128 << 10


class Stalled(Exception):
    """A viewer took nothing for web.client_timeout."""


async def until_closed(ws: web.WebSocketResponse) -> None:
    """Reads a WebSocket until the client closes it (the page sends nothing else)."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


def unanswered(ws: web.WebSocketResponse) -> bool:
    """Whether the client was dropped for answering no ping within the heartbeat (web.client_timeout)."""
    return isinstance(ws.exception(), asyncio.TimeoutError)


async def wait_either(changed: asyncio.Event, gone: asyncio.Future | None) -> None:
    """Until the feed changes, the client goes (`gone` done), or IDLE_CHECK_S passes."""
    waiter = asyncio.ensure_future(changed.wait())
    try:
        await asyncio.wait([waiter] + ([gone] if gone is not None else []), timeout=IDLE_CHECK_S,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


class LiveVideo:
    """The live streams' route and the feeds behind them, keyed by the source's place in the run."""

    def __init__(self, web_config: WebConfig, feeds: dict[int, LiveFeed], index: dict[str, int]):
        self._web = web_config
        self.feeds = feeds
        self._index = index
        self.dropped_stalled = 0
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def routes(self) -> list[Route]:
        return [Route("/live/{name}.mp4", self._stream, long=True, camera=named_camera)]

    def add(self, source_id: int, name: str, feed: LiveFeed) -> None:
        """A camera added by a reload (on the output thread): its stream answers from now on."""
        self.feeds[source_id] = feed
        if self._loop is not None:
            feed.attach(self._loop)
        self._index[name] = source_id

    def remove(self, name: str) -> None:
        """A camera removed by a reload: its stream is gone (a viewer still on it ends with the feed)."""
        self._index.pop(name, None)

    def viewers(self, source: int) -> int:
        """The source's live H.264 viewers now."""
        feed = self.feeds.get(source)
        return feed.viewers if feed is not None else 0

    def start(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self._stop, self._loop = stop, loop
        for feed in self.feeds.values():
            feed.attach(loop)

    def end(self) -> None:
        for feed in self.feeds.values():
            feed.end()

    def feed(self, request: web.Request) -> LiveFeed:
        """The named source's feed; 404 for a name that is none of the run's."""
        source = source_id(request, self._index)
        feed = self.feeds.get(source)
        if feed is None:
            raise web.HTTPNotFound(text="this source has no live stream\n", headers=HEADERS)
        return feed

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        feed = self.feed(request)
        sock = request.transport.get_extra_info("socket") if request.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        feed.watch(+1)
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._websocket(request, feed)
            return await self._chunked(request, feed)
        except Stalled:
            self.dropped_stalled += 1
            drop_stalled(request, "a live viewer", request.match_info["name"], self._web.client_timeout)
            return web.Response(status=408)  # never sent: the connection is gone
        finally:
            feed.watch(-1)

    async def _websocket(self, request: web.Request, feed: LiveFeed) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=4096, heartbeat=self._web.client_timeout)
        await ws.prepare(request)
        gone = asyncio.ensure_future(until_closed(ws))

        async def start(init: InitSegment) -> None:
            await self._send(ws.send_str(json.dumps({"mime": init.mime, "drawn": feed.drawn})))

        async def send(data: bytes) -> None:
            await self._send(ws.send_bytes(data))

        try:
            await self._pump(feed, request, start, send, gone)
        except (ConnectionError, RuntimeError):
            pass  # the client went away (aiohttp says so with ClientConnectionResetError or RuntimeError)
        finally:
            gone.cancel()
            if not ws.closed:
                await ws.close()
        if unanswered(ws):
            raise Stalled
        return ws

    async def _chunked(self, request: web.Request, feed: LiveFeed) -> web.StreamResponse:
        response = web.StreamResponse(headers=HEADERS)

        async def start(init: InitSegment) -> None:
            response.headers["Content-Type"] = init.mime
            await response.prepare(request)

        async def send(data: bytes) -> None:
            await self._send(response.write(data))

        try:
            await self._pump(feed, request, start, send, None)
        except (ConnectionError, RuntimeError):
            pass
        if not response.prepared:
            return web.Response(status=503, text="the run is ending\n", headers=HEADERS)
        return response

    async def _send(self, sending: Awaitable) -> None:
        try:
            await asyncio.wait_for(sending, self._web.client_timeout)
        except asyncio.TimeoutError:
            raise Stalled from None

    async def _pump(self, feed: LiveFeed, request: web.Request, start: Callable[[InitSegment], Awaitable[None]],
                    send: Callable[[bytes], Awaitable[None]], gone: asyncio.Future | None) -> None:
        """Fragments to one viewer until it leaves, the stream begins again (the player starts over) or the
        run stops; a camera that sends nothing keeps the viewer waiting while it is still there."""
        cursor = session = None
        while not self._stop.is_set() and not (gone is not None and gone.done()):
            changed = feed.changed()
            took = feed.take(cursor, session)
            if took.ended:
                return
            if took.init is not None:
                await start(took.init)
                await send(took.init.data)
            for piece in took.pieces:
                await send(piece.data)
                feed.sent += len(piece.data)
            cursor, session = took.cursor, took.session
            if not took.pieces:
                if request.transport is None or request.transport.is_closing():
                    return
                await wait_either(changed, gone)
