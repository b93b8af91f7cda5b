"""systemd's notify protocol (sd_notify(3)) for `streamdet run` under `Type=notify`, without libsystemd:
datagrams of `KEY=value` lines to the socket `$NOTIFY_SOCKET` names (a path, or `@name` for an abstract
one). Without that variable nothing at all is sent, so every call is safe outside systemd.

    READY=1       once the run is put together: every camera tried, the web view listening
    STATUS=...    the cameras' states by name ("3 cameras: 2 online, 1 offline (yard)"), when they change
    WATCHDOG=1    every WATCHDOG_USEC/2, only while the pipeline's output loop goes round: a stage or an
                  output that hangs stops it, and systemd restarts the run after WatchdogSec
    STOPPING=1    when a signal or the end stops the run
    RELOADING=1   with MONOTONIC_USEC, as Type=notify-reload asks, before a reload; READY=1 after it
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ..measures.figures import RunStatus

if TYPE_CHECKING:
    from ..pipeline import Pipeline

log = logging.getLogger("streamdet")

# The status line is worked out at most this often; it is sent only when it changed.
STATUS_EVERY_S = 2.0
# The output loop goes round at least every 0.5 s (pipeline._IDLE_S) plus one frame's stages and writes:
# a heartbeat this old, or half the watchdog's time if that is longer, means the loop is stuck.
FRESH_S = 2.0
_ORDER = ("online", "starting", "offline", "ended")


def status_line(status: RunStatus) -> str:
    """The sources' states by name, never by URL: "3 cameras: 2 online, 1 offline (yard)"."""
    sources = status.sources
    noun = "camera" if sources and all(s.live for s in sources) else "source"
    states = sorted({s.state for s in sources}, key=lambda s: _ORDER.index(s) if s in _ORDER else len(_ORDER))
    parts = []
    for state in states:
        names = [s.name for s in sources if s.state == state]
        parts.append(f"{len(names)} {state}" + ("" if state == "online" else f" ({', '.join(names)})"))
    return f"{len(sources)} {noun}{'' if len(sources) == 1 else 's'}: " + ", ".join(parts)


class Notifier:
    """Tells systemd how the run is doing; one per run, owned by `streamdet run` (see `watch`)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        where = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + where[1:] if where.startswith("@") else where if where.startswith("/") else None
        if where and self._address is None:
            log.warning("NOTIFY_SOCKET %r is neither a path nor an @abstract socket: systemd is not told how the "
                        "run is doing", where)
        self.watchdog_s = _watchdog_s(env) if self._address else None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if self._address else None
        self._stopping = False
        self._failed = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def send(self, *lines: str) -> None:
        """One datagram of `KEY=value` lines; a failure is said once and the run goes on (systemd's watchdog,
        if any, then restarts it: that is what it is for)."""
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd at NOTIFY_SOCKET (%s); trying on", exc.strerror or exc)

    def ready(self) -> None:
        self.send("READY=1")

    def reloading(self) -> None:
        # Type=notify-reload wants the time on CLOCK_MONOTONIC, which time.monotonic reads on Linux.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        """STOPPING=1, once however often it is called (a signal, then the end); safe in a signal handler."""
        if not self._stopping:
            self._stopping = True
            self.send("STOPPING=1")

    @contextlib.contextmanager
    def watch(self, pipeline: Pipeline) -> Iterator[None]:
        """READY=1 now (the pipeline is put together), then STATUS and WATCHDOG on a thread of its own while
        the block runs the pipeline; STOPPING=1 and the thread joined when it ends."""
        if self._sock is None:
            yield
            return
        line = status_line(pipeline.status())
        self.send("READY=1", f"STATUS={line}")
        self._thread = threading.Thread(target=self._watch, args=(pipeline, line), name="systemd-notify", daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self.stopping()
            self._done.set()
            self._thread.join()
            self._sock.close()
        if self.error is not None:
            raise self.error

    def _watch(self, pipeline: Pipeline, sent: str) -> None:
        ping = self.watchdog_s / 2 if self.watchdog_s else None
        fresh = max(FRESH_S, ping or 0.0)
        tick = min(ping or STATUS_EVERY_S, STATUS_EVERY_S)
        next_status = time.monotonic() + STATUS_EVERY_S
        try:
            while not self._done.wait(tick):
                now = time.monotonic()
                if pipeline.ending:
                    self.stopping()  # the outputs are being finalised: the watchdog no longer applies
                    return
                if ping and now - pipeline.heartbeat <= fresh:
                    self.send("WATCHDOG=1")
                if now >= next_status:
                    next_status = now + STATUS_EVERY_S
                    line = status_line(pipeline.status())
                    if line != sent:
                        self.send(f"STATUS={line}")
                        sent = line
        except BaseException as exc:  # a bug of ours: the run stops rather than go on unwatched
            self.error = exc
            pipeline.stop("systemd notifications failed")


def _watchdog_s(env: Mapping[str, str]) -> float | None:
    """WATCHDOG_USEC in seconds, when set and meant for this process (WATCHDOG_PID, if given, is ours)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 and pid == os.getpid() else None
