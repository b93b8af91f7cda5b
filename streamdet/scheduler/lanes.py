"""The lanes: one per source, with its inbox of frames waiting for the feeder and what each is taken for."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model.readout import DetectFilter
from ..sources import Frame, Source, SourceInfo
from ..sources.rate import DetectRate
from ..measures.meters import StageTimer


class Turn(enum.Enum):
    """What a frame is taken for, decided as it arrives (Scheduler._arrived)."""

    NETWORK = "network"      # inferred
    PREDICTED = "predicted"  # between the frames detect.fps lets the network see
    STILL = "still"          # due, but the motion gate saw nothing move


class Inbox:
    """Frames of one source waiting for the feeder (or for a slot). Not locked: the scheduler's lock guards it.

    `newest_wins` (cameras): a new frame replaces those waiting, counted as dropped, so latency never
    builds up; except behind a frame for the network, where the frames the network will not see wait in
    order, up to `capacity` of them (the oldest goes past that), to be handed on once it has gone to the
    network: a wait of about one inference, which costs them no drop. Otherwise (files): holds up to
    `capacity` and the reader waits, so nothing is lost.
    """

    def __init__(self, capacity: int, newest_wins: bool):
        self.frames: list[Frame] = []
        self.turns: list[Turn] = []  # beside `frames`: what each is taken for
        self.capacity = capacity
        self.newest_wins = newest_wins
        self.finished = False
        self.dropped = 0

    def has_room(self) -> bool:
        return self.newest_wins or len(self.frames) < self.capacity

    def put(self, frame: Frame, turn: Turn = Turn.NETWORK) -> None:
        if self.newest_wins and self.frames:
            if self.network_first() and turn is not Turn.NETWORK:
                start, count = 1, max(0, len(self.frames) - self.capacity)  # behind it: the oldest, when full
            else:
                start, count = 0, len(self.frames)
            if count:
                gone = self.frames[start:start + count]
                del self.frames[start:start + count], self.turns[start:start + count]
                self.dropped += count
                # The first frame after an outage says how long the camera was away: if it goes before
                # inference takes it, the frame after it says so instead.
                after = self.frames[start] if start < len(self.frames) else frame
                if after.gap_ms is None:
                    after.gap_ms = next((f.gap_ms for f in gone if f.gap_ms is not None), None)
        assert self.has_room(), "put() without room"
        self.frames.append(frame)
        self.turns.append(turn)

    def network_first(self) -> bool:
        """Whether the oldest frame waiting is one for the network (it waits for the feeder)."""
        return bool(self.turns) and self.turns[0] is Turn.NETWORK

    def waiting_first(self) -> bool:
        """Whether the oldest frame waiting is one the network will not see: it waits only for room (a slot,
        or its lane's share)."""
        return bool(self.turns) and self.turns[0] is not Turn.NETWORK

    def take(self) -> tuple[Frame, Turn] | None:
        """The oldest frame and what it is taken for, or None."""
        return (self.frames.pop(0), self.turns.pop(0)) if self.frames else None

class ReadClock:
    """The wall time and CPU a source spends producing each frame on the thread that reads it: from when
    the previous frame was dealt with to this one's arrival (for a camera, mostly waiting for it). A frame
    on another thread than the one before (a camera's new reader after a reconnect) starts afresh."""

    def __init__(self, timer: StageTimer):
        self.timer = timer  # the run's decode timer, shared by every lane
        self.cpu_s = 0.0
        self._thread: int | None = None
        self._wall = self._cpu = 0.0

    def lap(self) -> None:
        if self._thread == threading.get_ident():
            self.timer.add((time.perf_counter() - self._wall) * 1000)
            self.cpu_s += time.thread_time() - self._cpu

    def start(self) -> None:
        self._thread, self._wall, self._cpu = threading.get_ident(), time.perf_counter(), time.thread_time()


def frames_ahead(nireq: int) -> int:
    """Frames a source may have read ahead of inference: two per request in flight, at most 16, so a
    burst is smoothed without holding many decoded frames."""
    return min(max(2, 2 * nireq), 16)


@dataclass
class Lane:
    """One source on its way through the scheduler, with its counters."""

    id: int
    source: Source
    info: SourceInfo
    inbox: Inbox
    filter: DetectFilter                # passed to the engine with each frame: the source's threshold and classes
    rate: DetectRate | None = None      # detect.fps: which frames the network sees; None, every frame
    thread: threading.Thread | None = None
    frames_read: int = 0
    frames_taken: int = 0               # given their place in the order (the next one's `Job.seq`); under the lock
    frames_done: int = 0                # handed out by take(); likewise
    blanks_out: int = 0                 # blank frames handed on, not yet released: at most `inbox.capacity`
    reading: ReadClock = field(default_factory=lambda: ReadClock(StageTimer()))
    removed: bool = False               # taken out of the run by a reload: its figures stay for the summary


def lanes_for(sources: Sequence[Source], infos: Sequence[SourceInfo], policies: Sequence[str],
              filters: Sequence[DetectFilter], nireq: int, decode: StageTimer,
              rates: Sequence[float] = ()) -> tuple[Lane, ...]:
    """One lane per source, its inbox sized here. `policies`: each source's `source.policy`: "newest" (or
    "auto" on a live source) keeps only the newest frame; otherwise every frame is kept, up to
    `frames_ahead(nireq)` read ahead. `decode`: the run's decode timer, shared by every lane. `rates`: each
    source's `detect.fps` (0, or none given: every frame)."""
    lanes = []
    for k, (source, info, policy, keep) in enumerate(zip(sources, infos, policies, filters)):
        newest = policy == "newest" or (policy == "auto" and info.live)
        fps = rates[k] if k < len(rates) else 0.0
        lanes.append(Lane(id=k, source=source, info=info, inbox=Inbox(frames_ahead(nireq), newest_wins=newest),
                          filter=keep, reading=ReadClock(decode), rate=DetectRate(fps) if fps else None))
    return tuple(lanes)
