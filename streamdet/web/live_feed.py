"""One source's live stream as its viewers take it: the init segment, the newest fragments (from the
second-newest keyframe on, at most RING_BYTES) and the newest detections lines, shared by every viewer.

Fragments and lines come in on the thread that makes them (a camera's reader, the live encoder, the output
thread) and wake the viewers waiting on the server's loop. A viewer never has a queue of its own: it keeps a
place (`cursor`) in the shared ring, and one that falls behind (out of the ring, or LAG_S behind its newest
fragment) starts again at the newest keyframe. Nothing is kept while nobody watches.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass

from ..detections import FrameResult
from ..outputs.fmp4 import InitSegment
from ..outputs.sidecar import sidecar_record

RING_BYTES = 16 << 20   # about 2 groups of pictures of an 8 Mbit/s camera with 4 s between keyframes
LAG_S = 2.0             # a viewer this far behind the newest fragment skips to the newest keyframe
LINGER_S = 5.0          # the stream goes on this long after its last viewer left (a page reloaded)
_LINES = 64             # detections lines kept for viewers that are a little behind


# What the detections channel never carries: the source's name as the run shows it (a masked URL for a camera
# without a name) and a file's path. What is drawn is all it needs.
_UNSENT = ("source", "file")


def channel_record(result: FrameResult) -> dict:
    """A processed frame's detections as the channel sends them, without its time (see live_detections)."""
    line = sidecar_record(result, result.frame.size, result.plate)
    for key in _UNSENT:
        line.pop(key, None)
    return line


def channel_text(line: dict, at: float, session: int) -> str:
    return json.dumps({"t": round(at, 4), "session": session, **line}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Piece:
    seq: int
    data: bytes
    key: bool      # a video keyframe's fragment: where a viewer may start
    at: float      # seconds on the stream's timeline


@dataclass(frozen=True)
class Took:
    """What a viewer takes next: the init segment when it starts, the fragments after its place."""

    init: InitSegment | None
    session: int | None
    pieces: list[Piece]
    cursor: int | None
    ended: bool = False     # the stream began again (a camera back with another picture): the player restarts
    skipped: bool = False   # the viewer was too far behind and jumped to the newest keyframe


class LiveFeed:
    """A source's live fragments and detections lines, from producer threads to viewers on the loop."""

    def __init__(self, drawn: bool = False):
        self.drawn = drawn            # the pictures carry the boxes already (drawn by the run's draw stage)
        self._lock = threading.Lock()
        self.init: InitSegment | None = None
        self.session = 0
        self._pieces: deque[Piece] = deque()
        self._bytes = 0
        self._seq = 0
        self._lines: deque[tuple[int, str]] = deque(maxlen=_LINES)
        self._line_seq = 0
        self.viewers = 0              # video viewers now (the loop writes it; producers read it)
        self.starts = 0               # times watching began after nobody watched: producers begin anew
        self.line_viewers = 0
        self._linger_until = 0.0
        self.skipped = 0              # times a viewer jumped to the newest keyframe
        self.sent = 0                 # bytes sent to viewers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._waking = False

    # --------------------------------------------------------------- producers

    @property
    def watched(self) -> bool:
        """Whether anybody watches the video (or did a moment ago): producers check it before any work."""
        return self.viewers > 0 or time.monotonic() < self._linger_until

    def begin(self, init: InitSegment | None) -> None:
        """A new stream: viewers of the old one end; the fragments after this are of `init`."""
        with self._lock:
            self.init = init
            self.session += 1
            self._pieces.clear()
            self._bytes = 0
        self._wake()

    def add(self, data: bytes, key: bool, at: float) -> None:
        with self._lock:
            self._seq += 1
            if key:  # keep from the previous keyframe on: a viewer a little behind goes on without a jump
                keys = [p.seq for p in self._pieces if p.key]
                while keys and self._pieces and self._pieces[0].seq < keys[-1]:
                    self._bytes -= len(self._pieces.popleft().data)
            self._pieces.append(Piece(self._seq, data, key, at))
            self._bytes += len(data)
            while self._bytes > RING_BYTES and len(self._pieces) > 1:
                self._bytes -= len(self._pieces.popleft().data)
        self._wake()

    def add_line(self, text: str) -> None:
        """One processed frame's detections, as the channel sends it."""
        with self._lock:
            self._line_seq += 1
            self._lines.append((self._line_seq, text))
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or self._waking or not (self.viewers or self.line_viewers):
            return
        self._waking = True
        try:
            loop.call_soon_threadsafe(self._woken)
        except RuntimeError:
            pass  # the loop has ended: the run is stopping

    # -------------------------------------------------------------------- loop

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._changed = asyncio.Event()

    def _woken(self) -> None:
        self._waking = False
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def changed(self) -> asyncio.Event:
        """Set at the next fragment or line (take it before `take`, so nothing comes between unseen)."""
        return self._changed

    def end(self) -> None:
        """The run stops: every waiting viewer wakes and sees it."""
        if self._changed is not None:
            self._woken()

    def watch(self, delta: int, lines: bool = False) -> None:
        if lines:
            self.line_viewers += delta
            return
        if delta > 0 and not self.watched:
            with self._lock:  # what the ring holds is the end of a stream nobody watched since: a new one begins
                self.starts += 1
                self.init = None
                self._pieces.clear()
                self._bytes = 0
        self.viewers += delta
        if delta < 0 and self.viewers == 0:
            self._linger_until = time.monotonic() + LINGER_S

    def take(self, cursor: int | None, session: int | None) -> Took:
        with self._lock:
            if session is not None and session != self.session:
                return Took(None, None, [], None, ended=True)
            if self.init is None or not self._pieces:
                return Took(None, session, [], cursor)
            first, newest = self._pieces[0], self._pieces[-1]
            behind = cursor is not None and (cursor + 1 < first.seq or (
                cursor < newest.seq and newest.at - self._pieces[cursor + 1 - first.seq].at > LAG_S))
            if cursor is None or behind:
                start = next((i for i in range(len(self._pieces) - 1, -1, -1) if self._pieces[i].key), None)
                if start is None:
                    return Took(None, session, [], cursor)  # no keyframe yet: wait for one
                pieces = list(self._pieces)[start:]
                init = self.init if session is None else None
                if behind:
                    self.skipped += 1
                return Took(init, self.session, pieces, pieces[-1].seq, skipped=behind)
            pieces = list(self._pieces)[cursor + 1 - first.seq:]
            return Took(None, session, pieces, pieces[-1].seq if pieces else cursor)

    def lines_after(self, cursor: int | None) -> tuple[list[str], int]:
        """The lines after `cursor` (None: only the newest), and the new cursor."""
        with self._lock:
            if cursor is None:
                return ([self._lines[-1][1]] if self._lines else []), self._line_seq
            return [text for seq, text in self._lines if seq > cursor], self._line_seq
