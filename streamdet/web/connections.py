"""The web view's connections, bounded: at most `connection_cap` at once (well below the process's
descriptors, which recordings and cameras need), refused beyond it, dropped when their first headers do
not arrive in time, and malformed requests logged as one line without the request (it may hold a token)."""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("streamdet")

# The page, snapshots, JSON and /healthz end in milliseconds; they have places of their own, so a
# health probe is answered even while every viewer place is taken.
SHORT_REQUESTS = 16
# Connections beyond viewers and short requests: a browser keeps a few idle keep-alive ones per page.
SPARE_CONNECTIONS = 48
# A connection that has not sent its first request's headers by then is dropped.
_HEADER_TIMEOUT_S = 5.0
# The same complaint (a kind of malformed request, refused connections) is logged at most this often.
LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class Load:
    """What the web view holds and has turned away, at one moment (for /api/stats and /metrics)."""

    clients: int            # long requests open now (MJPEG streams, clips and segments playing)
    most_clients: int
    refused: int            # requests and connections turned away (busy)
    connections: int        # open connections of every kind
    max_connections: int


def drop_stalled(request, viewer: str, source: str, timeout: float) -> None:
    """A viewer that took nothing within web.client_timeout is dropped (its connection aborted) and said so in one
    line; `viewer`: what it watched ("a viewer", "a live viewer", "a detections viewer")."""
    log.info("web: dropped %s of %s that took nothing for %g s (web.client_timeout)", viewer, source, timeout)
    if request.transport is not None:
        request.transport.abort()


def connection_cap(max_clients: int) -> int:
    """How many connections the web view holds at once: never more than a quarter of the process's
    descriptors, so recordings, cameras and MQTT always get theirs however many clients come."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    share = (1 << 20) if soft == resource.RLIM_INFINITY else soft // 4
    return max(1, min(max_clients + SHORT_REQUESTS + SPARE_CONNECTIONS, share))


class Once:
    """Says yes to a kind of message at most once per `every` seconds."""

    def __init__(self, every: float):
        self._every = every
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, kind: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -math.inf) < self._every:
                return False
            self._last[kind] = now
            return True


class _BadRequests(logging.Filter):
    """aiohttp logs a malformed request with a traceback whose text quotes the request line, and with it
    any ?token=: say it in one line instead, without the request, at most once a minute per kind."""

    def __init__(self) -> None:
        super().__init__()
        self._once = Once(LOG_EVERY_S)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # anything else is a bug of ours and keeps its traceback
        kind = type(exc).__name__
        if self._once(kind):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
            log.info("web: a malformed request (%s) from %s was answered %s; more like it are not logged for %g s",
                     kind, remote, exc.code or 400, LOG_EVERY_S)
        return False


# aiohttp's request handlers log through this logger (AppRunner(logger=...)), never aiohttp.server.
http_log = logging.getLogger("streamdet.web.http")
http_log.addFilter(_BadRequests())


class Refused(asyncio.Protocol):
    """A connection over the cap: told so and closed at once, so it holds no descriptor."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = b"busy: too many connections to the web view\n"
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        transport.close()


class Counted(asyncio.Protocol):
    """aiohttp's handler of one connection, which gives its place back when the connection ends and
    drops a connection whose first request's headers are not all in within _HEADER_TIMEOUT_S (aiohttp
    before 3.14 waits for them for ever; after a response its keep-alive timeout takes over).

    Under TLS (`handshake_s`: the handshake's time limit) the handshake comes first, and asyncio tells this
    protocol nothing of one that fails (a plain-HTTP request to the HTTPS port, a scanner): no
    connection_made, no connection_lost. Such a connection's place is given back once the handshake's time
    is up, when asyncio has closed it either way."""

    def __init__(self, handler: asyncio.Protocol, release: Callable[[], None], loop: asyncio.AbstractEventLoop,
                 handshake_s: float | None = None):
        self._handler = handler
        self._release: Callable[[], None] | None = release
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the end of what came so far: a blank line may arrive split over two reads
        self._made = False  # the handler has the connection
        if handshake_s is not None:  # a little later than asyncio's own limit, so its verdict is in
            self._timer = loop.call_later(handshake_s + 0.5, self._no_handshake)

    def _no_handshake(self) -> None:
        self._timer = None
        if not self._made and self._release is not None:
            log.debug("web: a connection ended before its TLS handshake did (plain HTTP to the HTTPS port?)")
            self._release()
            self._release = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._stop_timer()
        if self._release is None:  # its place was given back already: it came too late
            transport.abort()
            return
        self._made = True
        self._timer = self._loop.call_later(_HEADER_TIMEOUT_S, transport.abort)
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._stop_timer()
            else:
                self._tail = seen[-3:]
        self._handler.data_received(data)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timer()
        try:
            if self._made:
                self._handler.connection_lost(exc)
        finally:
            if self._release is not None:
                self._release()
                self._release = None
