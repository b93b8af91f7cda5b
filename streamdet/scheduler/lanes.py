"""The lanes: one per source, with its inbox of frames waiting for the feeder and what each is taken for."""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model.readout import DetectFilter
from ..sources import Frame, Source, SourceInfo
from ..sources.rate import DetectRate
from ..measures.meters import StageTimer


class Turn(enum.Enum):
    """What a frame is taken for, decided on its lane's capture thread."""

    NETWORK = "network"      # inferred
    PREDICTED = "predicted"  # between the frames detect.fps lets the network see
    STILL = "still"          # due, but the motion gate saw nothing move


class Inbox:
    """Frames of one source waiting for inference. Not locked: the scheduler's condition guards it.

    `newest_wins` (cameras): holds the newest frame, and a new one replaces it, the replaced one counting
    as dropped, so latency never builds up. A frame for the network is the exception when a frame the
    network will not see comes: it keeps its place, and the newest of those waits behind it, handed on in
    order once it has gone to the network (a wait of one inference at most). A frame for the network
    replaced by one that is not leaves its turn to it. Otherwise (files): holds up to `capacity` and the
    reader waits, so nothing is lost.
    """

    def __init__(self, capacity: int, newest_wins: bool):
        self.frames: list[Frame] = []
        self.turns: list[Turn] = []  # beside `frames`: what each is taken for
        self.capacity = 2 if newest_wins else capacity
        self.newest_wins = newest_wins
        self.finished = False
        self.dropped = 0

    def has_room(self) -> bool:
        return self.newest_wins or len(self.frames) < self.capacity

    def put(self, frame: Frame, turn: Turn = Turn.NETWORK) -> None:
        if self.newest_wins and self.frames:
            keep = 1 if self.turns[0] is Turn.NETWORK and turn is not Turn.NETWORK else 0
            replaced = self.frames[keep:]
            self.dropped += len(replaced)
            # The first frame after an outage says how long the camera was away: if it is replaced before
            # inference takes it, the frame that replaces it says so instead.
            if frame.gap_ms is None:
                frame.gap_ms = next((f.gap_ms for f in replaced if f.gap_ms is not None), None)
            if Turn.NETWORK in self.turns[keep:] and not frame.blank:
                turn = Turn.NETWORK
            del self.frames[keep:], self.turns[keep:]
        assert len(self.frames) < self.capacity, "put() without room"
        self.frames.append(frame)
        self.turns.append(turn)

    def take(self) -> tuple[Frame, Turn] | None:
        """The oldest frame and what it is taken for, or None."""
        return (self.frames.pop(0), self.turns.pop(0)) if self.frames else None

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
    frames_taken: int = 0               # given their place in the order (the next one's `Job.seq`); under the condition
    frames_done: int = 0                # handed out by take(); likewise
    decode_cpu_s: float = 0.0
    decode: StageTimer = field(default_factory=StageTimer)
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
                          filter=keep, decode=decode, rate=DetectRate(fps) if fps else None))
    return tuple(lanes)
