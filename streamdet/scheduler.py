"""Moving frames from the sources through inference, in order, with bounded memory.

Threads (all owned by `Scheduler`, all joined by `close()`):

- one capture thread per source: reads frames into that source's inbox;
- one feeder thread: takes frames from the inboxes round-robin and starts an
  inference when a request is free;
- the inference engine's callback threads: hand finished frames to the
  reorder buffer;
- the caller takes finished frames, in submission order, with `take()`.

The lanes, one per source with its inbox, are made here too (`lanes_for`): the
inboxes are sized from the requests in flight, which the engine's backend
decides (streamdet.engines.backend).

Backpressure: the feeder holds a slot for every frame from submit until the
caller `release()`s it, so a slow consumer slows inference down, which fills
the file inboxes and pauses decoding; a live inbox holds one frame and
replaces it, counting the replaced one as dropped.

Errors: the first exception on any of these threads is kept, stops reading,
and is raised by `take()` once the frames already in flight are through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .engines.base import Completed, Engine, Job
from .model.readout import DetectFilter
from .sources import Frame, Source, SourceInfo
from .measures.meters import StageTimer

_POLL_S = 0.5  # how often a blocked thread re-checks for abort; not a busy loop
# A thread may still be inside one inference or one blocking read when the
# run stops; it notices within a poll interval, so joining it is bounded by this.
_JOIN_S = 5.0


class Inbox:
    """Frames of one source waiting for inference. Not locked: the scheduler's condition guards it.

    `newest_wins` (cameras): holds one frame; a new one replaces it and the
    replaced one counts as dropped, so latency never builds up. Otherwise
    (files): holds up to `capacity` and the reader waits, so nothing is lost.
    """

    def __init__(self, capacity: int, newest_wins: bool):
        self.frames: list[Frame] = []
        self.capacity = 1 if newest_wins else capacity
        self.newest_wins = newest_wins
        self.finished = False
        self.dropped = 0

    def has_room(self) -> bool:
        return self.newest_wins or len(self.frames) < self.capacity

    def put(self, frame: Frame) -> None:
        if self.newest_wins and self.frames:
            self.dropped += len(self.frames)
            # The first frame after an outage says how long the camera was away: if it is replaced
            # before inference takes it, the frame that replaces it says so instead.
            if frame.gap_ms is None:
                frame.gap_ms = next((f.gap_ms for f in self.frames if f.gap_ms is not None), None)
            self.frames.clear()
        assert len(self.frames) < self.capacity, "put() without room"
        self.frames.append(frame)

    def take(self) -> Frame | None:
        return self.frames.pop(0) if self.frames else None


class ReorderBuffer:
    """Finished frames arrive in any order from the engine's threads and leave in submission order."""

    def __init__(self) -> None:
        self._ready: dict[int, Completed] = {}
        self.next_seq = 0

    def put(self, completed: Completed) -> None:
        self._ready[completed.job.seq] = completed

    def pop(self) -> Completed | None:
        """The next frame in order, if it has arrived."""
        completed = self._ready.pop(self.next_seq, None)
        if completed is not None:
            self.next_seq += 1
        return completed

    def __len__(self) -> int:
        return len(self._ready)


class Failure:
    """The first error raised on any thread of a run; later ones are consequences and are dropped."""

    def __init__(self, on_first: Callable[[], None]):
        self._lock = threading.Lock()
        self._on_first = on_first
        self.error: BaseException | None = None

    def record(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is not None:
                return
            self.error = exc
        self._on_first()


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
    thread: threading.Thread | None = None
    frames_read: int = 0
    frames_taken: int = 0               # taken from the inbox for inference; under the scheduler's condition
    frames_done: int = 0                # handed out by take(); likewise
    decode_cpu_s: float = 0.0
    decode: StageTimer = field(default_factory=StageTimer)
    removed: bool = False               # taken out of the run by a reload: its figures stay for the summary


def lanes_for(sources: Sequence[Source], infos: Sequence[SourceInfo], policies: Sequence[str],
              filters: Sequence[DetectFilter], nireq: int, decode: StageTimer) -> tuple[Lane, ...]:
    """One lane per source, its inbox sized here. `policies`: each source's `source.policy`: "newest" (or
    "auto" on a live source) keeps only the newest frame; otherwise every frame is kept, up to
    `frames_ahead(nireq)` read ahead. `decode`: the run's decode timer, shared by every lane."""
    lanes = []
    for k, (source, info, policy, keep) in enumerate(zip(sources, infos, policies, filters)):
        newest = policy == "newest" or (policy == "auto" and info.live)
        lanes.append(Lane(id=k, source=source, info=info, inbox=Inbox(frames_ahead(nireq), newest_wins=newest),
                          filter=keep, decode=decode))
    return tuple(lanes)


class Scheduler:
    def __init__(self, lanes: list[Lane], make_engine: Callable[[Callable[[Completed], None]], Engine], nireq: int):
        self.lanes = lanes
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._aborted = threading.Event()
        # Two results per request may wait for the consumer: enough to absorb
        # jitter in rendering without letting frames pile up; past 8 requests
        # the extra is capped, so frames held stay few whatever nireq is.
        self._slots = threading.Semaphore(nireq + frames_ahead(nireq))
        self._buffer = ReorderBuffer()
        self._submitted = 0
        self._feeding_done = False
        self.failure = Failure(on_first=self.stop)
        self._engine = make_engine(self._on_done)
        self._feeder: threading.Thread | None = None
        self._held = False   # a reload is under way: lanes all finished do not end the run yet
        self._woken = False  # take() returns at once: the output loop has work besides frames (a reload)

    # ------------------------------------------------------------- threads

    def start(self) -> None:
        for lane in self.lanes:
            self._start_capture(lane)
        self._feeder = threading.Thread(target=self._feed, name="feeder", daemon=True)
        self._feeder.start()

    def _start_capture(self, lane: Lane) -> None:
        lane.thread = threading.Thread(target=self._capture, args=(lane,), name=f"capture-{lane.source.name}",
                                       daemon=True)
        lane.thread.start()

    def add_lane(self, lane: Lane) -> None:
        """A source added while the run goes (a reload): its lane joins the round-robin and its capture starts.
        `lane.id` is the next index of `lanes`: ids are never reused, a removed source's lane stays, finished."""
        with self._cond:
            assert lane.id == len(self.lanes), "a new lane takes the next id"
            self.lanes.append(lane)
            self._cond.notify_all()
        if self._stopping.is_set():
            lane.source.stop()  # stopping already: the capture reads nothing and the lane finishes at once
        self._start_capture(lane)

    def hold(self, held: bool) -> None:
        """While held, sources that have all finished (a reload removing every camera before adding the new
        ones) do not end the run."""
        with self._cond:
            self._held = held
            self._cond.notify_all()

    def wake(self) -> None:
        """`take()` returns now (None if no frame is ready): the output loop has a reload to apply."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _capture(self, lane: Lane) -> None:
        inbox, cond = lane.inbox, self._cond
        try:
            while not self._stopping.is_set():
                t0, c0 = time.perf_counter(), time.thread_time()
                frame = lane.source.read()
                if frame is None:
                    break
                lane.decode.add((time.perf_counter() - t0) * 1000)
                lane.decode_cpu_s += time.thread_time() - c0
                with cond:
                    while not inbox.has_room() and not self._stopping.is_set():
                        cond.wait()
                    if not inbox.has_room():
                        break  # stopping with a full inbox: this frame is not kept, nor counted as read
                    inbox.put(frame)
                    lane.frames_read += 1
                    cond.notify_all()
        except BaseException as exc:
            self.failure.record(exc)
        finally:
            with cond:
                inbox.finished = True
                cond.notify_all()

    def _next_frame(self, start: int) -> tuple[Lane, Frame] | None:
        """Round-robin over the inboxes; waits while all are empty. None when all are done."""
        with self._cond:
            while not self._aborted.is_set():
                count = len(self.lanes)
                for k in range(count):
                    lane = self.lanes[(start + k) % count]
                    frame = lane.inbox.take()
                    if frame is not None:
                        lane.frames_taken += 1
                        self._cond.notify_all()
                        return lane, frame
                if all(lane.inbox.finished for lane in self.lanes) and not (self._held and not self._stopping.is_set()):
                    return None
                self._cond.wait()
            return None

    def _feed(self) -> None:
        turn = 0
        try:
            while not self._aborted.is_set():
                while not self._slots.acquire(timeout=_POLL_S):
                    if self._aborted.is_set():
                        return
                # Wait for a free request before taking a frame: a live frame
                # taken now is the newest one, not one that aged in our hands.
                self._engine.wait_idle()
                picked = self._next_frame(turn)
                if picked is None:
                    self._slots.release()
                    break
                lane, frame = picked
                turn = lane.id + 1
                self._engine.submit(Job(seq=self._submitted, source_id=lane.id, frame=frame, filter=lane.filter))
                with self._cond:
                    self._submitted += 1
            self._engine.drain()
        except BaseException as exc:
            self.failure.record(exc)
        finally:
            with self._cond:
                self._feeding_done = True
                self._cond.notify_all()

    def _on_done(self, completed: Completed) -> None:
        if completed.error is not None:
            self.failure.record(completed.error)
        with self._cond:
            self._buffer.put(completed)
            self._cond.notify_all()

    # -------------------------------------------------------------- consumer

    def take(self, timeout: float) -> Completed | None:
        """The next finished frame in order; None when none came within `timeout` or the run is over.

        Raises the first error of any thread once nothing more will come.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._aborted.is_set():
                completed = self._buffer.pop()
                if completed is not None:
                    if completed.error is None:
                        self.lanes[completed.job.source_id].frames_done += 1
                        return completed
                    self._slots.release()  # a frame that failed in inference is not handed on
                    continue
                if self.finished_locked():
                    break
                if self._woken:
                    self._woken = False
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
        if self.failure.error is not None:
            raise self.failure.error
        return None

    def finished_locked(self) -> bool:
        return self._feeding_done and self._buffer.next_seq >= self._submitted

    @property
    def finished(self) -> bool:
        """Every frame is through (or the run was aborted)."""
        with self._cond:
            return self._aborted.is_set() or self.finished_locked()

    def release(self) -> None:
        """The consumer is done with a frame from `take()`: its slot may carry the next one."""
        self._slots.release()

    def source_done(self, lane: Lane) -> bool:
        """Every frame of this source has been read, inferred and handed out, without error."""
        with self._cond:
            return (lane.inbox.finished and not lane.inbox.frames and lane.frames_done == lane.frames_taken
                    and self.failure.error is None)

    # -------------------------------------------------------------- stopping

    def stop(self) -> None:
        """Stop reading; frames already read are still inferred and handed out."""
        self._stopping.set()
        with self._cond:
            lanes = list(self.lanes)
            self._cond.notify_all()
        for lane in lanes:
            lane.source.stop()

    def abort(self) -> None:
        """Stop now: frames in flight are not handed out."""
        self.stop()
        self._aborted.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def close(self) -> list[str]:
        """Stop and join every thread; the names of any still blocked (in a read that ignores stop) after the wait."""
        self.stop()
        deadline = time.monotonic() + _JOIN_S
        with self._cond:
            lanes = list(self.lanes)
        threads = [t for t in [lane.thread for lane in lanes] + [self._feeder] if t is not None]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not (self._feeder is not None and self._feeder.is_alive()):
            # Nothing submits any more: the engine lets its requests in flight finish, so no completion
            # arrives from OpenVINO's threads while the process is ending.
            self._engine.close()
        return [t.name for t in threads if t.is_alive()]
