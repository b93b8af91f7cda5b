"""The scheduler without a model: inbox policies, the reorder buffer, and errors on every thread.

`StandInEngine` stands in for OpenVINO's AsyncInferQueue (streamdet.engines.local):
it finishes jobs on a thread of its own, out of order, as a real device does
with several requests. Everything else here is the real scheduler.
"""

from __future__ import annotations

import queue
import random
import threading
import time

import numpy as np
import pytest

from streamdet.detections import Detections
from streamdet.errors import ModelError, SourceError
from streamdet.engines.base import Completed, Job
from streamdet.model.readout import DetectFilter
from streamdet.scheduler import Failure, Inbox, Lane, ReorderBuffer, Scheduler, Turn, lanes_for
from streamdet.sources import Frame, Source, SourceInfo
from streamdet.measures.meters import StageTimer

ALL = DetectFilter(0.0, np.array([], np.int32))  # every class, every score


def _frame(i: int) -> Frame:
    return Frame(image=np.zeros((4, 4, 3), np.uint8), index=i, pts_ms=None, captured=time.monotonic())


class CountingSource(Source):
    """`count` tiny frames; raises `fail` instead of frame `fail_at`."""

    def __init__(self, name: str, count: int, fail_at: int | None = None, fail: BaseException | None = None):
        self.name = name
        self.count, self.fail_at, self.fail = count, fail_at, fail
        self.read_count = 0

    def open(self) -> SourceInfo:
        return SourceInfo(4, 4, 25.0, self.count, live=False)

    def read(self) -> Frame | None:
        if self.read_count == self.fail_at:
            raise self.fail
        if self.read_count >= self.count:
            return None
        self.read_count += 1
        return _frame(self.read_count - 1)

    def close(self) -> None:
        pass


class StandInEngine:
    """Stands in for OpenVINO: `nireq` jobs in flight, finished in shuffled order on a worker thread."""

    def __init__(self, on_done, nireq: int = 3, submit_fails_at: int | None = None, decode_fails_at: int | None = None):
        self.on_done, self.nireq = on_done, nireq
        self.submit_fails_at, self.decode_fails_at = submit_fails_at, decode_fails_at
        self.free = threading.Semaphore(nireq)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.submitted = 0
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()
        self.idle = threading.Event()

    def wait_idle(self) -> None:
        self.free.acquire()
        self.free.release()

    def submit(self, job: Job) -> None:
        if self.submitted == self.submit_fails_at:
            raise ModelError("detector input must be an 8-bit BGR image (stand-in)")
        self.free.acquire()
        self.submitted += 1
        self.jobs.put(job)

    def drain(self) -> None:
        for _ in range(self.nireq):
            self.free.acquire()
        for _ in range(self.nireq):
            self.free.release()
        self.jobs.put(None)

    def _work(self) -> None:
        rng = random.Random(7)
        batch: list[Job] = []
        while True:
            job = self.jobs.get()
            if job is not None:
                batch.append(job)
            if job is None or len(batch) == self.nireq or self.jobs.empty():
                rng.shuffle(batch)
                for done in batch:
                    error = ValueError("bad output tensor") if done.seq == self.decode_fails_at else None
                    self.free.release()
                    self.on_done(Completed(done, Detections.empty(), 1.0, time.monotonic(), error=error))
                batch = []
            if job is None:
                return

    def close(self) -> None:
        """As OpenVINO's queue does when the scheduler closes it: what is in flight finishes."""
        self.jobs.put(None)
        self.worker.join(timeout=5)


def _run(sources, nireq=3, got: list[tuple[int, int]] | None = None, **engine):
    lanes = [Lane(id=i, source=s, info=s.open(), inbox=Inbox(capacity=2 * nireq, newest_wins=False), filter=ALL)
             for i, s in enumerate(sources)]
    scheduler = Scheduler(lanes, lambda on_done: StandInEngine(on_done, nireq, **engine), nireq)
    scheduler.start()
    got = [] if got is None else got
    try:
        while True:
            completed = scheduler.take(5.0)
            if completed is None:
                if scheduler.finished:
                    break
                continue
            got.append((completed.job.source_id, completed.job.frame.index))
            scheduler.release(completed)
    finally:
        stuck = scheduler.close()
    assert stuck == [], stuck
    return got, lanes


@pytest.mark.unit
def test_inbox_keeps_every_file_frame_and_only_the_newest_camera_frame():
    files = Inbox(capacity=2, newest_wins=False)
    files.put(_frame(0))
    files.put(_frame(1))
    assert not files.has_room() and files.dropped == 0
    assert [files.take()[0].index, files.take()[0].index, files.take()] == [0, 1, None]
    camera = Inbox(capacity=8, newest_wins=True)
    for i in range(5):
        assert camera.has_room()
        camera.put(_frame(i))
    assert camera.take()[0].index == 4 and camera.dropped == 4 and camera.take() is None
    # The frame that says how long the camera was away is replaced: the newer frame says it instead.
    back = _frame(5)
    back.gap_ms = 1500.0
    camera.put(back)
    camera.put(_frame(6))
    taken, _ = camera.take()
    assert taken.index == 6 and taken.gap_ms == 1500.0
    # A frame for the network keeps its place: the frames it will not see after it wait behind it in order,
    # up to the inbox's capacity (then the oldest of them goes); a newer frame for the network replaces all.
    dropped = camera.dropped
    camera.put(_frame(7), Turn.NETWORK)
    for i, turn in ((8, Turn.PREDICTED), (9, Turn.STILL), (10, Turn.PREDICTED)):
        camera.put(_frame(i), turn)
    assert not camera.waiting_first() and camera.dropped == dropped
    assert [(f.index, t) for f, t in (camera.take(), camera.take())] == [(7, Turn.NETWORK), (8, Turn.PREDICTED)]
    assert camera.waiting_first()
    camera.take(), camera.take()
    small = Inbox(capacity=2, newest_wins=True)
    small.put(_frame(11), Turn.NETWORK)
    away = _frame(12)
    away.gap_ms = 900.0
    for frame in (away, _frame(13), _frame(14)):
        small.put(frame, Turn.PREDICTED)
    assert [f.index for f in small.frames] == [11, 13, 14] and small.dropped == 1 and small.frames[1].gap_ms == 900.0
    small.put(_frame(15), Turn.NETWORK)
    assert small.take()[0].index == 15 and small.take() is None and small.dropped == 4


class TimedSource(CountingSource):
    """A 25 fps camera's frames timed by its stream; those in `blank` come unconverted (streamdet.sources.cameras)."""

    def __init__(self, name: str, count: int, blank: frozenset[int] = frozenset()):
        super().__init__(name, count)
        self.blank = blank

    def read(self) -> Frame | None:
        frame = super().read()
        if frame is not None:
            frame.camera_pts_ms = frame.index * 40.0
            frame.blank = frame.index in self.blank
        return frame


@pytest.mark.unit
def test_a_detection_rate_sends_the_due_frames_to_the_network_and_hands_the_rest_on_predicted():
    rated, every = TimedSource("rated", 100, blank=frozenset({50})), CountingSource("every", 60)
    sources = [rated, every]
    lanes = list(lanes_for(sources, [s.open() for s in sources], ["all", "all"], [ALL, ALL], nireq=3,
                           decode=StageTimer(), rates=[5.0, 0.0]))
    inferred: list[tuple[int, int]] = []

    class Recording(StandInEngine):
        def submit(self, job: Job) -> None:
            inferred.append((job.source_id, job.frame.index))
            super().submit(job)

    scheduler = Scheduler(lanes, lambda on_done: Recording(on_done, 3), 3)
    scheduler.start()
    got = []
    try:
        while (completed := scheduler.take(5.0)) is not None or not scheduler.finished:
            if completed is not None:
                got.append((completed.job.source_id, completed.job.frame.index, completed.inferred,
                            completed.predicted))
                scheduler.release(completed)
    finally:
        assert scheduler.close() == []
    # One frame in five of the 25 fps camera went to the network, evenly spaced in its time; frame 50 came
    # blank, so the turn passed to the next frame; the camera without a rate had every frame inferred.
    due = [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 51, 55, 60, 65, 70, 75, 80, 85, 90, 95]
    assert sorted(i for s, i in inferred if s == 0) == due
    assert sorted(i for s, i in inferred if s == 1) == list(range(60))
    # Every frame came out, in its camera's order, the ones between marked predicted and not inferred.
    assert [i for s, i, _, _ in got if s == 0] == list(range(100))
    assert [i for s, i, _, _ in got if s == 1] == list(range(60))
    assert all(inf != pred and pred == (s == 0 and i not in due) for s, i, inf, pred in got)
    assert lanes[0].frames_taken == lanes[0].frames_done == 100


def _camera_frame(i: int, blank: bool) -> Frame:
    frame = _frame(i)
    frame.camera_pts_ms, frame.blank = i * 40.0, blank
    return frame


@pytest.mark.unit
def test_blank_frames_between_wait_in_their_cameras_share_and_leave_the_slots_to_the_others():
    """Driven frame by frame on this thread, as readers and the feeder call it: a camera's blank frames
    (nothing needs their pixels) behind its frame in the network hold places of their camera's own, so another
    camera's frames between still find slots; releasing one lets the next blank frame on, in order."""
    cams = [CountingSource("blanks", 0), CountingSource("pixels", 0)]
    live = SourceInfo(4, 4, 25.0, None, live=True)
    lanes = list(lanes_for(cams, [live, live], ["auto", "auto"], [ALL, ALL], nireq=1, decode=StageTimer(),
                           rates=[5.0, 5.0]))
    scheduler = Scheduler(lanes, lambda on_done: StandInEngine(on_done, 1), 1)  # 1 + 2 + 2 lanes = 5 slots
    blanks, pixels = lanes
    assert blanks.inbox.capacity == 2
    try:
        assert scheduler._arrived(blanks, _camera_frame(0, blank=False))  # due: waits for the feeder
        scheduler._slots.acquire()  # the feeder's slot, as _feed takes it
        lane, job = scheduler._next_frame(0)
        assert lane is blanks and job.frame.index == 0
        for i in range(1, 5):
            scheduler._arrived(blanks, _camera_frame(i, blank=True))
        # Two in its share; the next waits for room in the inbox, where the newest wins (3 dropped).
        assert blanks.blanks_out == 2 and [f.index for f in blanks.inbox.frames] == [4] and blanks.inbox.dropped == 1
        # The other camera's frames between (converted: they hold pixels) take the four slots left.
        assert scheduler._arrived(pixels, _camera_frame(0, blank=False))
        scheduler._slots.acquire()
        assert scheduler._next_frame(1)[0] is pixels  # its due frame: a slot; three left
        for i in range(1, 5):
            scheduler._arrived(pixels, _camera_frame(i, blank=False))
        assert pixels.frames_taken == 4 and [f.index for f in pixels.inbox.frames] == [4]
        scheduler._on_done(Completed(job, Detections.empty(), 1.0, time.monotonic()))
        out = [scheduler.take(1.0) for _ in range(3)]
        assert [(c.job.frame.index, c.inferred, c.predicted) for c in out] == [(0, True, False), (1, False, True),
                                                                                 (2, False, True)]
        scheduler.release(out[1])  # a blank one's place: the next blank one goes on, not the other camera's
        assert not blanks.inbox.frames and blanks.blanks_out == 2 and blanks.frames_taken == 4
        assert [f.index for f in pixels.inbox.frames] == [4]
        scheduler.release(out[0])  # a slot: the other camera's frame waiting for one goes on
        assert not pixels.inbox.frames and pixels.frames_taken == 5
    finally:
        scheduler.abort()
        scheduler.close()


@pytest.mark.unit
def test_reorder_buffer_hands_out_in_submission_order():
    buffer = ReorderBuffer()
    jobs = {seq: Completed(Job(seq, 0, _frame(seq), ALL), Detections.empty(), 0.0, 0.0) for seq in range(5)}
    out = []
    for seq in (2, 0, 4, 1, 3):
        buffer.put(jobs[seq])
        while (done := buffer.pop()) is not None:
            out.append(done.job.seq)
    assert out == [0, 1, 2, 3, 4] and len(buffer) == 0


@pytest.mark.unit
def test_failure_keeps_the_first_error_and_stops_once():
    stops = []
    failure = Failure(on_first=lambda: stops.append(1))
    first, second = SourceError("first"), SourceError("second")
    failure.record(first)
    failure.record(second)
    assert failure.error is first and stops == [1]


@pytest.mark.unit
def test_frames_come_out_in_order_per_source_with_none_lost():
    got, lanes = _run([CountingSource("a", 40), CountingSource("b", 25)], nireq=4)
    for lane in lanes:
        indexes = [i for sid, i in got if sid == lane.id]
        assert indexes == list(range(lane.source.count))
        assert lane.frames_read == lane.frames_taken == lane.frames_done == lane.source.count
    assert len(got) == 65


@pytest.mark.unit
def test_a_capture_error_ends_the_run_with_that_error_after_the_frames_before_it():
    error = SourceError("decoding stopped at frame 12 of 40")
    with pytest.raises(SourceError, match="frame 12 of 40"):
        _run([CountingSource("a", 40, fail_at=12, fail=error)])


@pytest.mark.unit
def test_a_feeder_error_ends_the_run_with_that_error_not_a_normal_end():
    # A custom source giving a frame the model cannot take: submit raises on the feeder thread.
    with pytest.raises(ModelError, match="8-bit BGR"):
        _run([CountingSource("a", 40)], submit_fails_at=5)


@pytest.mark.unit
def test_an_error_in_a_completion_callback_ends_the_run_and_that_frame_is_not_handed_out():
    handed: list[tuple[int, int]] = []
    with pytest.raises(ValueError, match="bad output tensor"):
        _run([CountingSource("a", 30)], got=handed, decode_fails_at=7)
    assert handed and (0, 7) not in handed


@pytest.mark.unit
def test_abort_ends_every_thread_even_with_frames_waiting():
    lanes = [Lane(id=0, source=CountingSource("a", 10_000), info=SourceInfo(4, 4, 25.0, None, live=False),
                  inbox=Inbox(capacity=6, newest_wins=False), filter=ALL)]
    scheduler = Scheduler(lanes, lambda on_done: StandInEngine(on_done, 3), 3)
    scheduler.start()
    assert scheduler.take(5.0) is not None  # one frame taken and never released: the consumer is gone
    scheduler.abort()
    assert scheduler.take(0.1) is None and scheduler.finished
    assert scheduler.close() == []
    assert lanes[0].source.read_count < 10_000


@pytest.mark.unit
def test_frames_held_stay_bounded_however_many_requests():
    """A consumer that never lets go: the scheduler stops at its slot limit instead of reading on."""
    lanes = [Lane(id=0, source=CountingSource("a", 10_000), info=SourceInfo(4, 4, 25.0, None, live=False),
                  inbox=Inbox(capacity=16, newest_wins=False), filter=ALL)]
    scheduler = Scheduler(lanes, lambda on_done: StandInEngine(on_done, 64), 64)
    scheduler.start()
    held = 0
    while scheduler.take(0.5) is not None:
        held += 1
    assert held == 64 + 16 + 1  # nireq plus at most 16 waiting and one per lane, not 3 x 64
    assert lanes[0].frames_read <= held + 16 + 1
    scheduler.abort()
    assert scheduler.close() == []


def test_lanes_size_their_inboxes_from_the_requests_in_flight_and_each_sources_policy():
    sources = [CountingSource(name, 1) for name in ("file", "camera", "file-newest", "camera-all")]
    infos = [SourceInfo(4, 4, 25.0, 1, live=False), SourceInfo(4, 4, 25.0, None, live=True)] * 2
    decode = StageTimer()
    lanes = lanes_for(sources, infos, ["auto", "auto", "newest", "all"], [ALL] * 4, nireq=3, decode=decode)
    assert [lane.id for lane in lanes] == [0, 1, 2, 3]
    assert [(lane.inbox.capacity, lane.inbox.newest_wins) for lane in lanes] == [(6, False), (6, True), (6, True),
                                                                                (6, False)]
    assert all(lane.reading.timer is decode and lane.source is s for lane, s in zip(lanes, sources))
    many = lanes_for(sources[:1], infos[:1], ["auto"], [ALL], nireq=20, decode=decode)
    assert many[0].inbox.capacity == 16  # read-ahead is capped, whatever the requests in flight
