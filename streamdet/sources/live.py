"""Live sources: what webcams and network cameras (streamdet.sources.cameras) have in common.

A live source never gives up on its own: when the stream stops it reopens it
with exponential backoff, and `feed()` goes on meanwhile (ended at once by
`stop()`). Credentials in URLs never reach a log line, an error or a name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config.sections import SourceConfig
from ..errors import SourceError
from ..measures.meters import RateMeter
from .base import Frame, Source, SourceHealth, SourceInfo
from .mailbox import Lost, Mailbox, Opened

log = logging.getLogger("streamdet.live")  # name kept: users filter on it


@dataclass(frozen=True, slots=True)
class Picture:
    """What a reader thread decoded, as it hands it to `LiveSource._arrive`."""

    image: np.ndarray | None   # None: a packet of a stream read only for its packets (a recorded main stream)
    captured: float
    camera_pts_ms: float | None = None
    connection: int = 0
    blank: bool = False        # decoded, not converted: `image` is a blank picture of its size (base.blank_image)


@dataclass
class LiveStats:
    """Written by the reader and the watchdog, read by the pipeline's status line: guarded by `lock`."""

    reconnects: int = 0
    losses: int = 0                    # times the stream was lost (backend error or watchdog)
    connected: bool = False
    last_error: str | None = None
    lost_at: float | None = None       # monotonic time the current outage began
    attempt: int = 0                   # failed attempts in the current outage
    next_try: float | None = None      # monotonic time of the next full open
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class LiveSource(Source):
    """Reads a camera or stream on a reader thread of its own, watched by `feed()`.

    The reader thread owns the capture: it opens it, reads frames and hands
    each on to `feed`'s consumer itself, as it is decoded (`_arrive`): dozens
    of cameras' frames then cross no thread on their way in, each crossing
    being a trip through the interpreter's lock. `feed()` is the watchdog, on
    the caller's thread, woken only by the reader's news and its timeouts:
    when the reader has produced nothing for `read_timeout` seconds
    (`open_timeout` while opening) the stream counts as lost even if the
    backend is still blocked inside FFmpeg or V4L2, because some backends
    ignore their own timeouts. A blocked reader cannot be interrupted, so it
    is retired: it releases its capture and ends by itself once the backend
    returns (for FFmpeg, its own read timeout, set to twice ours, bounds
    that), and a fresh reader reconnects meanwhile. A retired reader hands on
    nothing more.
    """

    # While a camera is away, how often its port is tried with a bare TCP
    # connect: a SYN every quarter second costs the camera nothing, and the
    # full open (seconds of FFmpeg work) starts within that of the camera
    # accepting connections again, however long the outage was.
    _PROBE_S = 0.25
    # Reader threads still blocked in a backend after being retired; past this
    # many, reconnecting waits for one to come back instead of piling up more.
    _MAX_STALLED = 4
    # FFmpeg's own read timeout, as a multiple of ours: the watchdog acts
    # first, FFmpeg's timeout only frees a retired reader.
    _BACKSTOP = 2.0

    def __init__(self, settings: SourceConfig):
        self.settings = settings
        self.stats = LiveStats()
        self.display_name = ""
        self._mailbox = Mailbox()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._retired: list[threading.Thread] = []
        self._index = 0
        self._lost_at: float | None = None
        self._deliver: Callable[[Frame], bool] | None = None
        self._fed = threading.Event()     # feed() has begun (or stop()): the reader may hand frames on
        self._handing = threading.Lock()  # one reader hands on at a time; a retired one, never again
        self._last_frame = 0.0            # time.monotonic() the current reader last handed a picture on
        self._failure: BaseException | None = None  # what `deliver` raised: feed() raises it
        self._input_rate = RateMeter(window_s=2.0)  # what the camera delivers
        self.current: SourceInfo | None = None      # the stream as the newest connection opened it

    def _reachable(self) -> str | None:
        """None when a full open may work now; else why not (cheap: no FFmpeg involved)."""
        return None

    def health(self) -> SourceHealth:
        stats = self.stats
        with stats.lock:
            now = time.monotonic()
            return SourceHealth(
                connected=stats.connected,
                input_fps=self._input_rate.rate() if stats.connected else None,
                reconnects=stats.reconnects,
                offline_s=None if stats.connected or stats.lost_at is None else now - stats.lost_at,
                attempt=stats.attempt,
                next_try_s=None if stats.connected or stats.next_try is None else max(0.0, stats.next_try - now),
                last_error=None if stats.connected else stats.last_error,
            )

    # ------------------------------------------------------------- reader thread

    def _read_loop(self, generation: int) -> None:
        """The reader thread: open the stream, tell the mailbox Opened under `generation`, hand each
        Picture to `_arrive`, and tell Lost when the stream fails; end as soon as either refuses (retired)."""
        raise NotImplementedError

    def _arrive(self, generation: int, picture: Picture) -> bool:
        """On the reader thread: hand a picture on as the next frame. False when this reader is retired or
        the source stopped: the reader ends."""
        self._fed.wait()  # opened but not yet fed: the picture waits, as it would in the camera's socket
        with self._handing:
            if self._stop.is_set() or not self._mailbox.current(generation):
                return False
            # When it came, not when it was decoded: the first picture may have waited for feed() to start.
            self._last_frame = time.monotonic()
            gap = None
            if self._lost_at is not None:
                gap = (picture.captured - self._lost_at) * 1000
                self._lost_at = None
                with self.stats.lock:
                    self.stats.lost_at = None
            self._input_rate.tick(picture.captured)
            if picture.image is None:
                return True  # a stream read for its packets only: alive, nothing to hand on
            frame = Frame(image=picture.image, index=self._index, pts_ms=None, captured=picture.captured,
                          gap_ms=gap, camera_pts_ms=picture.camera_pts_ms, connection=picture.connection,
                          blank=picture.blank)
            self._index += 1
            try:
                wanted = self._deliver(frame)
            except BaseException as exc:  # the consumer's, not the stream's: feed() raises it on its thread
                self._failure = exc
                self._mailbox.close()
                return False
            if not wanted:
                self.stop()  # the consumer wants no more: the watchdog ends too
            return wanted

    def _start_reader(self) -> None:
        generation = self._mailbox.new_generation()
        self._reader = threading.Thread(
            target=self._read_loop, args=(generation,), name=f"reader-{self.name}", daemon=True
        )
        self._reader.start()

    def _retire_reader(self) -> None:
        """Give up on the current reader; it ends by itself when its backend call returns."""
        self._mailbox.new_generation()
        if self._reader is not None and self._reader.is_alive():
            self._retired.append(self._reader)
        self._reader = None
        self._retired = [t for t in self._retired if t.is_alive()]

    # ------------------------------------------------------------------ watchdog

    def _connect(self) -> SourceInfo | None:
        """One attempt: a new reader, and its capture opened within open_timeout (None if not)."""
        self._retired = [t for t in self._retired if t.is_alive()]
        if len(self._retired) >= self._MAX_STALLED:
            with self.stats.lock:
                self.stats.last_error = f"{len(self._retired)} earlier connections still blocked in the backend"
            return None
        self._start_reader()
        item = self._mailbox.take(self.settings.open_timeout + 1.0)
        if isinstance(item, Lost) and item.fatal:
            self._retire_reader()
            raise SourceError(f"{self.display_name}: {item.reason}")
        if isinstance(item, Opened):
            if self.current is None or _shown(self.current) != _shown(item.info):
                log.info("%s: %s", self.display_name, _shown(item.info))
            self.current = item.info
            self._last_frame = time.monotonic()  # the read timeout runs from the open
            with self.stats.lock:
                self.stats.connected = True
            return item.info
        with self.stats.lock:
            self.stats.last_error = item.reason if isinstance(item, Lost) else (
                f"did not open within {self.settings.open_timeout:g} s")
        self._retire_reader()
        return None

    def open(self) -> SourceInfo:
        unreachable = self._reachable()
        info = self._connect() if unreachable is None else None
        if info is None:
            with self.stats.lock:
                self.stats.last_error = unreachable or self.stats.last_error
                self.stats.lost_at = self._lost_at = time.monotonic()
            log.warning("%s: could not open (%s); will keep retrying", self.display_name, self.stats.last_error)
            return SourceInfo(0, 0, None, None, live=True)
        return info

    def _reconnect(self) -> bool:
        """Reconnect until it works, stop() is called, or attempts run out.

        Full opens follow the backoff (reconnect_initial doubling up to
        reconnect_max); a full open whose port does not answer fails without
        FFmpeg. Between them the port is probed every _PROBE_S, and the moment
        it starts answering a full open is made at once, outside the backoff:
        a camera that comes back is not left waiting for a long backoff.
        """
        delay = self.settings.reconnect_initial
        next_try = time.monotonic()
        was_reachable: bool | None = None
        while not self._stop.is_set():
            unreachable = self._reachable()
            if self._stop.is_set():
                return False
            came_up = unreachable is None and was_reachable is False
            was_reachable = unreachable is None
            if came_up or time.monotonic() >= next_try:
                if came_up:
                    log.info("%s: the camera answers again; opening the stream", self.display_name)
                lost_at = self._lost_at  # the new reader's first frame clears it, maybe before the line below
                if unreachable is None and self._connect() is not None:
                    with self.stats.lock:
                        self.stats.reconnects += 1
                        attempts, self.stats.attempt, self.stats.next_try = self.stats.attempt + 1, 0, None
                    log.info("%s: reconnected after %d attempt(s), %.1f s without frames", self.display_name,
                             attempts, time.monotonic() - (lost_at or time.monotonic()))
                    return True
                with self.stats.lock:
                    self.stats.last_error = unreachable or self.stats.last_error
                    self.stats.attempt += 1
                    attempt = self.stats.attempt
                    self.stats.next_try = next_try = time.monotonic() + delay
                if self.settings.reconnect_attempts and attempt >= self.settings.reconnect_attempts:
                    log.error("%s: giving up after %d attempts (%s)", self.display_name, attempt, self.stats.last_error)
                    return False
                probing = f", watching for it every {self._PROBE_S:g} s" if self._probes and unreachable else ""
                log.warning("%s: reconnect attempt %d failed (%s); next try in %.1f s%s",
                            self.display_name, attempt, self.stats.last_error, delay, probing)
                delay = min(delay * 2, self.settings.reconnect_max)
            wait = next_try - time.monotonic()
            if self._probes and not was_reachable:
                wait = min(wait, self._PROBE_S)  # watch for the moment it comes back
            if self._stop.wait(max(0.0, wait)):
                return False
        return False

    _probes = False  # whether _reachable() is worth calling between full opens

    def _lose(self, reason: str) -> None:
        with self._handing:  # a frame being handed on now still finds the stream connected
            self._retire_reader()
        self._input_rate.clear()  # or the first frames after the reconnect are measured across the gap
        with self.stats.lock:
            self.stats.connected = False
            self.stats.losses += 1
            self.stats.last_error = reason
            if self._lost_at is None:
                self._lost_at = time.monotonic()
            self.stats.lost_at = self._lost_at
        log.warning("%s: stream lost (%s); reconnecting", self.display_name, reason)

    def feed(self, deliver: Callable[[Frame], bool]) -> None:
        """The watchdog, on the caller's thread, while the reader hands each frame to `deliver` on its own
        (one at a time, in order). Returns on stop(), when `deliver` says so, or when reconnecting gives up;
        raises what `deliver` raised."""
        self._deliver = deliver
        # The read timeout runs from now: the run may have started long after the open (a model compiled).
        self._last_frame = time.monotonic()
        self._fed.set()
        timeout = self.settings.read_timeout
        while not self._stop.is_set():
            if self._reader is None and not self._reconnect():
                break
            item = self._mailbox.take(max(0.0, self._last_frame + timeout - time.monotonic()))
            if self._stop.is_set() or self._failure is not None:
                break
            if item is None and time.monotonic() - self._last_frame < timeout:
                continue  # frames came meanwhile: the timeout runs from the newest
            # Opened cannot come here: _connect() took it before the reader hands anything on.
            self._lose(item.reason if isinstance(item, Lost) else f"no frame for {timeout:g} s")
        if self._failure is not None:
            self._retire_reader()
            raise self._failure

    def stop(self) -> None:
        self._stop.set()
        self._fed.set()  # a reader waiting for feed() sees the stop
        self._mailbox.close()

    def close(self) -> None:
        self.stop()
        # The reader releases its capture as soon as its current backend call
        # returns; wait a little so a normal close leaves no thread behind.
        for thread in [self._reader, *self._retired]:
            if thread is not None:
                thread.join(timeout=1.0)
        self._reader = None


def _shown(info: SourceInfo) -> str:
    """`h264 1280x720 at 25 fps, decoded in software`: what a connection brought, for the log."""
    codec = f"{info.codec} " if info.codec else ""
    rate = f" at {info.fps:.3g} fps" if info.fps else ""
    decoder = "" if info.decoder is None else (
        f", decoded in {info.decoder}" if info.decoder == "software" else
        f", {info.decoder}" if info.decoder.startswith("none") else f", decoded on {info.decoder}")
    return f"{codec}{info.width}x{info.height}{rate}{decoder}"
