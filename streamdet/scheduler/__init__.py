"""Moving frames from the sources through inference, in order, with bounded memory.

Threads (all owned by `Scheduler`, all joined by `close()`):

- one capture thread per source: runs the source's `feed`, which hands each
  frame to `_arrived`, into that source's inbox or straight on to the
  consumer when the network will not see them (below). A file is read on
  it; a camera is read on its source's reader thread, which then makes
  these calls itself (the capture thread is its watchdog: streamdet.sources.live);
- one feeder thread: takes frames from the inboxes round-robin and starts an
  inference when a request is free;
- the inference engine's callback threads: hand finished frames to the
  reorder buffer;
- the caller takes finished frames, each source's in its order, with `take()`.

The lanes, one per source with its inbox, are made in `lanes` (`lanes_for`):
the inboxes are sized from the requests in flight, which the engine's backend
decides (streamdet.engines.backend).

Backpressure: every frame holds a slot from the moment it takes its place in
the order (the feeder's before submit, an arriving frame's as it is handed
on) until the caller `release()`s it, so a slow consumer slows inference down,
which fills the file inboxes and pauses decoding; a live inbox keeps only the
newest frame, and the frames between behind one for the network
(streamdet.scheduler.lanes.Inbox), counting the replaced ones as dropped. A
blank frame (decoded, not converted: it holds no pixels) holds a place in its
own lane's share instead, as many as its inbox holds: the frames between of
a camera waiting behind its frame in the network then never take the slots
that other cameras' frames need.

Which frames the network sees is decided as each frame arrives, so the
checks of many cameras run side by side rather than one after another on the
feeder (`Turn`): the detection rate (`detect.fps`, streamdet.sources.rate)
picks the due frames, evenly spaced in the camera's own time whatever the
camera sends (what Frigate's `detect: fps`, DeepStream's `interval` and DL
Streamer's `inference-interval` do too), and the motion gate
(streamdet.motion), where the source has it, looks at those. A frame the
network will not see is handed on as `Completed(inferred=False)` (marked
`predicted` between detections: the tracking stage gives it the tracks'
predicted boxes) in its camera's order: at once by the thread it arrived on
when there is room (below) and no frame of its camera waits for the network,
else behind that frame as soon as the feeder has taken it, or as soon as a
frame released makes room (`_hand_on`), so the one feeder thread carries
only the frames for the network.

Errors: the first exception on any of these threads is kept, stops reading,
and is raised by `take()` once the frames already in flight are through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..detections import Detections
from ..engines.base import Completed, Engine, Job
from ..sources import Frame
from ..sources.rate import camera_time
from .lanes import Inbox, Lane, Turn, frames_ahead, lanes_for
from .order import Failure, ReorderBuffer

__all__ = ["Failure", "Inbox", "Lane", "ReorderBuffer", "Scheduler", "Turn", "frames_ahead", "lanes_for"]

_POLL_S = 0.5  # how often a blocked thread re-checks for abort; not a busy loop
# A thread may still be inside one inference or one blocking read when the
# run stops; it notices within a poll interval, so joining it is bounded by this.
_JOIN_S = 5.0


class Scheduler:
    def __init__(self, lanes: list[Lane], make_engine: Callable[[Callable[[Completed], None]], Engine], nireq: int,
                 wants_inference: Callable[[int, Frame], bool] | None = None):
        """`wants_inference(source_id, frame)`: the motion gate (streamdet.motion.MotionGate), asked on the
        thread each frame arrives on (one at a time per source) about each frame the detection rate lets through."""
        self.lanes = lanes
        self._wants_inference = wants_inference
        # One lock, three conditions: each wakes only the threads its change concerns (a camera's frame
        # handed on wakes the consumer, not the feeder), since every needless wake costs a trip through
        # the interpreter's lock with dozens of camera threads waiting for it.
        self._lock = threading.Lock()
        self._frames_in = threading.Condition(self._lock)  # the feeder: a frame in an inbox, a lane finished
        self._room = threading.Condition(self._lock)       # file captures: room in their inbox
        self._out = threading.Condition(self._lock)        # the consumer: a finished frame, the end, a wake
        self._stopping = threading.Event()
        self._aborted = threading.Event()
        # Two results per request may wait for the consumer: enough to absorb
        # jitter in rendering without letting frames pile up; past 8 requests
        # the extra is capped, so frames held stay few whatever nireq is. And one
        # per lane: a camera's frames handed on wait behind its own frame in the
        # network, not for another camera's.
        self._slots = threading.Semaphore(nireq + frames_ahead(nireq) + len(lanes))
        self._buffer = ReorderBuffer()
        self._submitted = 0
        self._feeding_done = False
        self.failure = Failure(on_first=self.stop)
        self._engine = make_engine(self._on_done)
        self._feeder: threading.Thread | None = None
        self._starved: dict[int, Lane] = {}  # lanes whose oldest frame waits for room only (a slot, or its share)
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
        with self._lock:
            assert lane.id == len(self.lanes), "a new lane takes the next id"
            self.lanes.append(lane)
            self._slots.release()
            self._frames_in.notify_all()
        if self._stopping.is_set():
            lane.source.stop()  # stopping already: the capture reads nothing and the lane finishes at once
        self._start_capture(lane)

    def hold(self, held: bool) -> None:
        """While held, sources that have all finished (a reload removing every camera before adding the new
        ones) do not end the run."""
        with self._lock:
            self._held = held
            self._frames_in.notify_all()

    def wake(self) -> None:
        """`take()` returns now (None if no frame is ready): the output loop has a reload to apply."""
        with self._lock:
            self._woken = True
            self._out.notify_all()

    def _capture(self, lane: Lane) -> None:
        try:
            if not self._stopping.is_set():
                lane.source.feed(lambda frame: self._arrived(lane, frame))
        except BaseException as exc:
            self.failure.record(exc)
        finally:
            with self._lock:
                lane.inbox.finished = True
                self._frames_in.notify()

    def _arrived(self, lane: Lane, frame: Frame) -> bool:
        """A frame of the lane's source, on the thread it was read on: into the inbox, or handed on. False:
        stop reading."""
        lane.reading.lap()
        turn = self._turn(lane, frame)
        inbox = lane.inbox
        with self._lock:
            while not inbox.has_room() and not self._stopping.is_set():
                self._room.wait()
            if not inbox.has_room():
                return False  # stopping with a full inbox: this frame is not kept, nor counted as read
            inbox.put(frame, turn)
            lane.frames_read += 1
            self._hand_on(lane)
            if inbox.network_first():
                self._frames_in.notify()
        lane.reading.start()
        return not self._stopping.is_set()

    def _turn(self, lane: Lane, frame: Frame) -> Turn:
        # A frame the camera left blank (not converted: streamdet.sources.cameras) is never due.
        if lane.rate is not None and (frame.blank or not lane.rate.due(camera_time(frame))):
            return Turn.PREDICTED
        if self._wants_inference is not None and not self._wants_inference(lane.id, frame):
            return Turn.STILL
        return Turn.NETWORK

    def _place(self, lane: Lane, frame: Frame) -> Job:
        """The frame's place in its source's order (`Job.seq`). Under the lock, with its place held (a slot, or
        for a blank frame its lane's share)."""
        job = Job(seq=lane.frames_taken, source_id=lane.id, frame=frame, filter=lane.filter)
        self._submitted += 1
        lane.frames_taken += 1
        return job

    def _hand_on(self, lane: Lane) -> None:
        """The frames the network will not see at the head of the lane's inbox, handed on while there is room
        (behind its frame gone to the network, or none); the lane waits for room in `_starved` if not. Under
        the lock."""
        inbox = lane.inbox
        handed = False
        while inbox.waiting_first():
            if not self._room_for(lane, inbox.frames[0]):
                self._starved[lane.id] = lane
                break
            self._pass_on(lane, *inbox.take())
            handed = True
        else:
            self._starved.pop(lane.id, None)
        if handed and not inbox.newest_wins:
            self._room.notify_all()
        if handed and inbox.finished and not inbox.frames:
            self._frames_in.notify()  # the feeder may end now

    def _room_for(self, lane: Lane, frame: Frame) -> bool:
        """A place for a frame handed on: in its lane's share when blank, else a slot. Under the lock."""
        if not frame.blank:
            return self._slots.acquire(blocking=False)
        if lane.blanks_out >= lane.inbox.capacity:
            return False
        lane.blanks_out += 1
        return True

    def _pass_on(self, lane: Lane, frame: Frame, turn: Turn) -> None:
        """A frame the network will not see, handed on in its place. Under the lock, with its place held."""
        self._buffer.put(Completed(self._place(lane, frame), Detections.empty(), 0.0, time.monotonic(),
                                   inferred=False, predicted=turn is Turn.PREDICTED))
        self._out.notify()

    def _next_frame(self, start: int) -> tuple[Lane, Job] | None:
        """The next frame for the network, round-robin over the inboxes; waits while there is none. None when
        all are done. The frame's place in the order is taken here, under the lock, so a frame of its lane
        handed on later comes after it."""
        with self._lock:
            while not self._aborted.is_set():
                count = len(self.lanes)
                for k in range(count):
                    lane = self.lanes[(start + k) % count]
                    if lane.inbox.network_first():
                        job = self._place(lane, lane.inbox.take()[0])
                        self._hand_on(lane)  # the frames behind it go on now, after it in the order
                        if not lane.inbox.newest_wins:
                            self._room.notify_all()
                        return lane, job
                if all(lane.inbox.finished and not lane.inbox.frames for lane in self.lanes) and not (
                        self._held and not self._stopping.is_set()):
                    return None
                self._frames_in.wait()
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
                lane, job = picked
                turn = lane.id + 1
                try:
                    self._engine.submit(job)
                except BaseException as exc:
                    # Its place in the order was taken: it comes out as failed, so the frames before it
                    # still come out and the run then ends with this error.
                    self._on_done(Completed(job, Detections.empty(), 0.0, time.monotonic(), error=exc))
                    raise
            self._engine.drain()
        except BaseException as exc:
            self.failure.record(exc)
        finally:
            with self._lock:
                self._feeding_done = True
                self._out.notify_all()

    def _on_done(self, completed: Completed) -> None:
        if completed.error is not None:
            self.failure.record(completed.error)
        with self._lock:
            self._buffer.put(completed)
            self._out.notify()

    # -------------------------------------------------------------- consumer

    def take(self, timeout: float) -> Completed | None:
        """The next finished frame (each source's in order); None when none came within `timeout` or the run is over.

        Raises the first error of any thread once nothing more will come.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._aborted.is_set():
                completed = self._buffer.pop()
                if completed is not None:
                    if completed.error is None:
                        self.lanes[completed.job.source_id].frames_done += 1
                        return completed
                    self._free(completed)  # a frame that failed in inference is not handed on
                    continue
                if self.finished_locked():
                    break
                if self._woken:
                    self._woken = False
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._out.wait(remaining)
        if self.failure.error is not None:
            raise self.failure.error
        return None

    def finished_locked(self) -> bool:
        return self._feeding_done and self._buffer.handed >= self._submitted

    @property
    def finished(self) -> bool:
        """Every frame is through (or the run was aborted)."""
        with self._lock:
            return self._aborted.is_set() or self.finished_locked()

    def release(self, completed: Completed) -> None:
        """The consumer is done with a frame from `take()`: its place may carry the next one."""
        with self._lock:
            self._free(completed)

    def _free(self, completed: Completed) -> None:
        """A frame's place given back, and the lanes waiting for room served. Under the lock."""
        if completed.job.frame.blank:
            lane = self.lanes[completed.job.source_id]
            lane.blanks_out -= 1
            if lane.id in self._starved:
                self._hand_on(lane)
            return
        self._slots.release()
        for lane in list(self._starved.values()):
            self._hand_on(lane)

    def source_done(self, lane: Lane) -> bool:
        """Every frame of this source has been read, inferred and handed out, without error."""
        with self._lock:
            return (lane.inbox.finished and not lane.inbox.frames and lane.frames_done == lane.frames_taken
                    and self.failure.error is None)

    # -------------------------------------------------------------- stopping

    def stop(self) -> None:
        """Stop reading; frames already read are still inferred and handed out."""
        self._stopping.set()
        with self._lock:
            lanes = list(self.lanes)
            self._wake_all()
        for lane in lanes:
            lane.source.stop()

    def abort(self) -> None:
        """Stop now: frames in flight are not handed out."""
        self.stop()
        self._aborted.set()
        with self._lock:
            self._wake_all()

    def _wake_all(self) -> None:
        for condition in (self._frames_in, self._room, self._out):
            condition.notify_all()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def close(self) -> list[str]:
        """Stop and join every thread; the names of any still blocked (in a read that ignores stop) after the wait."""
        self.stop()
        deadline = time.monotonic() + _JOIN_S
        with self._lock:
            lanes = list(self.lanes)
        threads = [t for t in [lane.thread for lane in lanes] + [self._feeder] if t is not None]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not (self._feeder is not None and self._feeder.is_alive()):
            # Nothing submits any more: the engine lets its requests in flight finish, so no completion
            # arrives from OpenVINO's threads while the process is ending.
            self._engine.close()
        return [t.name for t in threads if t.is_alive()]
