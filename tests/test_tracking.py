"""Tracking, zones, lines and events without a model: the tracker on boxes that move as objects do,
the events stage on tracks walked through zones and across lines, settings and their errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamdet.config.events import EventsConfig, LineConfig, TrackConfig, ZoneConfig
from streamdet.config.loader import load_config
from streamdet.detections import Detections, FrameResult
from streamdet.errors import ConfigError
from streamdet.events import EventStage, Scene, TrackStage
from streamdet.drawing import label_text
from streamdet.sources import Frame
from streamdet.detections import greedy_match, iou
from streamdet.tracking import Tracker


def _dets(boxes, scores, labels=None) -> Detections:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    labels = labels or ["person"] * len(boxes)
    classes = np.array([1 if label == "person" else 3 for label in labels], np.int32)
    return Detections(boxes, np.array(scores, np.float32), classes, tuple(labels))


def _walk(start, step, frames):
    """A 40x100 box whose bottom-middle starts at `start` and moves `step` pixels a frame."""
    for i in range(frames):
        x, y = start[0] + step[0] * i, start[1] + step[1] * i
        yield [x - 20, y - 100, x + 20, y]


@pytest.mark.unit
def test_iou_and_greedy_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], float)
    m = iou(a, b)
    assert m[0, 0] == pytest.approx(1) and m[0, 1] == pytest.approx(1 / 3) and m[1].max() == 0
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.1]]), 0.2) == [(0, 0)]
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.3]]), 0.2) == [(0, 0), (1, 1)]


@pytest.mark.unit
def test_ids_are_born_after_birth_frames_and_kept_through_a_low_score_dip():
    tracker = Tracker(TrackConfig(birth_frames=3), threshold=0.5, end_after=1.0)
    ids, started = [], []
    for i, box in enumerate(_walk((100, 300), (6, 0), 40)):
        score = 0.2 if 15 <= i < 20 else 0.9  # half hidden for 5 frames: below the threshold, above track.low
        reported, update = tracker.update(_dets([box], [score]), i / 25)
        ids.append(reported.track_ids.tolist())
        started += [t.id for t in update.started]
    assert ids[0] == [-1] and ids[1] == [-1]      # seen, reported, no id yet
    assert all(frame == [1] for frame in ids[2:])   # one id from the third frame on, the dip included
    assert started == [1]


@pytest.mark.unit
def test_a_track_ends_after_end_after_and_a_returning_object_gets_a_new_id():
    tracker = Tracker(TrackConfig(birth_frames=1), threshold=0.5, end_after=0.5)
    box = [100, 100, 140, 200]
    tracker.update(_dets([box], [0.9]), 0.0)
    ended_at = None
    for i in range(1, 30):
        _, update = tracker.update(_dets([], []), i / 25)
        if update.ended:
            ended_at = i / 25
            assert update.ended[0].id == 1 and update.ended[0].best_score == pytest.approx(0.9)
            break
    assert ended_at is not None and 0.5 < ended_at <= 0.5 + 1 / 25 + 1e-9
    reported, update = tracker.update(_dets([box], [0.9]), 2.0)
    assert reported.track_ids.tolist() == [2] and [t.id for t in update.started] == [2]


@pytest.mark.unit
def test_two_objects_passing_each_other_keep_their_ids():
    tracker = Tracker(TrackConfig(birth_frames=2), threshold=0.5, end_after=1.0)
    a, b = list(_walk((50, 300), (8, 0), 50)), list(_walk((450, 310), (-8, 0), 50))
    history = []
    for i in range(50):
        reported, _ = tracker.update(_dets([a[i], b[i]], [0.9, 0.8]), i / 25)
        by_bottom = dict(zip(reported.xyxy[:, 3].round().tolist(), reported.track_ids.tolist()))  # a at 300, b at 310
        history.append((by_bottom.get(300), by_bottom.get(310)))
    assert set(history[5:]) == {(1, 2)}, history


@pytest.mark.unit
def test_classes_never_share_a_track():
    tracker = Tracker(TrackConfig(birth_frames=1), threshold=0.5, end_after=1.0)
    box = [100, 100, 140, 200]
    tracker.update(_dets([box], [0.9], ["person"]), 0.0)
    reported, update = tracker.update(_dets([box], [0.9], ["car"]), 0.04)
    assert reported.track_ids.tolist() == [2] and update.started[0].label == "car"


@pytest.mark.unit
def test_cost_at_twenty_objects_is_printed():
    rng = np.random.default_rng(0)
    pos, vel = rng.uniform(0, 1000, (20, 2)), rng.uniform(-5, 5, (20, 2))
    tracker = Tracker(TrackConfig(), threshold=0.5, end_after=2.0)
    times, ids = [], []
    for f in range(200):
        pos += vel
        boxes = np.c_[pos, pos + [60, 150]] + rng.normal(0, 1.5, (20, 4))
        dets = _dets(boxes, rng.uniform(0.3, 0.99, 20))
        t0 = time.perf_counter()
        reported, _ = tracker.update(dets, f / 25)
        times.append(time.perf_counter() - t0)
        ids.append(tuple(reported.track_ids.tolist()))
    print(f"\ntracker, 20 objects: {np.median(times) * 1000:.3f} ms per frame (median), "
          f"p95 {np.percentile(times, 95) * 1000:.3f} ms")
    # The cost is printed (a timed bound flakes on a shared machine); what is asserted is the work done: over
    # the last 4 s every object is reported, in every frame, under one id of its own, and no other track exists.
    assert len(set(ids[-100:])) == 1 and sorted(ids[-1]) == list(range(1, 21)), ids[-100:]


def _result(dets: Detections, i: int) -> FrameResult:
    frame = Frame(image=np.zeros((480, 640, 3), np.uint8), index=i, pts_ms=i * 40.0, captured=time.monotonic())
    return FrameResult(source="door", frame=frame, detections=dets, latency_ms=1.0)


def _events_for(boxes_per_frame, events: EventsConfig, end: bool = True):
    track = TrackStage([Tracker(TrackConfig(birth_frames=1), 0.5, events.end_after)], [False])
    stage = EventStage(track, [events], [Scene.of(events, 640, 480, "door")], ["door"])
    out, last = [], None
    for i, boxes in enumerate(boxes_per_frame):
        last = stage(track(_result(_dets(boxes, [0.9] * len(boxes)), i)))
        out += list(last.events)
    if end:
        out += stage.finish(0, last).events
    return out, stage


@pytest.mark.unit
def test_walking_through_a_zone_and_across_a_line_in_both_directions():
    events = EventsConfig(zones=[ZoneConfig("porch", [[200, 350], [400, 350], [400, 480], [200, 480]])],
                          lines=[LineConfig("gate", [[0.5, 1.0], [0.5, 0.0]])])  # x = 320, drawn bottom to top
    there = list(_walk((100, 400), (10, 0), 40))            # left to right: through the porch, across the gate
    back = list(_walk((500, 300), (-10, 0), 40))             # right to left, above the porch: across the gate only
    found, stage = _events_for([[a, b] for a, b in zip(there, back)], events)
    kinds = [(e.kind, e.track, e.zone or e.line, e.direction) for e in found]
    assert kinds.count(("zone_enter", 1, "porch", None)) == 1 and kinds.count(("zone_exit", 1, "porch", None)) == 1
    assert ("line_cross", 1, "gate", "in") in kinds and ("line_cross", 2, "gate", "out") in kinds
    assert not any(e.track == 2 and e.zone for e in found)
    assert [e.kind for e in found if e.track == 1][0] == "start" and [e.kind for e in found if e.track == 1][-1] == "end"
    counts = stage.counts[0]
    assert counts.lines["gate"] == {"in": 1, "out": 1} and counts.zones["porch"]["enter"] == 1
    assert counts.tracks == {"person": 2}
    enter = next(e for e in found if e.kind == "zone_enter")
    assert enter.source == "door" and enter.label == "person" and enter.pts_s is not None and enter.time.endswith("Z")


@pytest.mark.unit
def test_a_track_that_ends_inside_a_zone_leaves_it():
    events = EventsConfig(zones=[ZoneConfig("porch", [[0, 0], [640, 0], [640, 480], [0, 480]])])
    found, stage = _events_for([[[100, 100, 140, 200]]] * 5, events)
    assert [e.kind for e in found] == ["start", "zone_enter", "zone_exit", "end"]
    assert stage.counts[0].zones["porch"] == {"enter": 1, "exit": 1, "inside": 0}


@pytest.mark.unit
def test_zone_and_line_settings_are_checked():
    with pytest.raises(ValueError, match="at least 3"):
        ZoneConfig("porch", [[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="exactly 2 different"):
        LineConfig("gate", [[0, 0], [0, 0]])
    with pytest.raises(ValueError, match="is not an"):
        ZoneConfig("porch", [[0, 0], [1, -1], [2, 2]])
    with pytest.raises(ValueError, match="given twice"):
        EventsConfig(zones=[ZoneConfig("a", [[0, 0], [1, 0], [1, 1]])], lines=[LineConfig("a", [[0, 0], [1, 1]])])
    with pytest.raises(ConfigError, match=r"zone 'porch': point \[700, 10\] is outside the 640x480 frame"):
        Scene.of(EventsConfig(zones=[ZoneConfig("porch", [[0, 0], [700, 10], [10, 10]])]), 640, 480, "door")
    scene = Scene.of(EventsConfig(lines=[LineConfig("gate", [[0.5, 0], [0.5, 1]])]), 640, 480, "door")
    assert scene.lines["gate"].tolist() == [[320, 0], [320, 480]]


@pytest.mark.unit
def test_zones_per_camera_from_yaml_with_errors_naming_camera_and_line(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("sources:\n  - name: door\n    url: door.mp4\n    events:\n      zones:\n"
                    "        - {name: porch, points: [[0, 0], [10, 0], [10, 10]]}\n  - yard.mp4\n")
    plans = load_config(good).plans()
    assert [z.name for z in plans[0].events.zones] == ["porch"] and plans[1].events.zones == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - name: door\n    url: door.mp4\n    events:\n      zones:\n"
                   "        - {name: porch, points: [[0, 0], [10, 0]]}\n")
    with pytest.raises(ConfigError, match=r"line 6: sources\[0\] \(door\).events.zones\[0\]: zone 'porch' has 2 point"):
        load_config(bad)


@pytest.mark.unit
def test_label_shows_the_track_id():
    assert label_text("person", 17, 0.913) == "person #17 0.91"
    assert label_text("person", -1, 0.913) == "person 0.91"
    assert label_text("car", 3, 0.5, scores=False) == "car #3"
