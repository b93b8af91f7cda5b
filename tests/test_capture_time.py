"""Every frame's line says when its picture was captured, and events, JSON lines and recording names take that
time from one conversion (streamdet.clock), measured against the wall clock as it is now, not once at start."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import numpy as np
import pytest

from streamdet import clock
from streamdet.config.events import EventsConfig
from streamdet.detections import Detections, FrameResult
from streamdet.events import EventStage, TrackStage
from streamdet.outputs.jsonl import JsonlOutput
from streamdet.scene import Scene
from streamdet.sources.base import Frame
from streamdet.tracking import Track, TrackUpdate


def _camera_frame(captured: float) -> FrameResult:
    """A network camera's frame as its reader hands it over: no place in a file, only when it was captured."""
    frame = Frame(np.zeros((144, 176, 3), np.uint8), 7, None, captured, camera_pts_ms=280.0, connection=1)
    found = Detections(np.array([[10, 20, 60, 120]], np.float32), np.array([0.9], np.float32),
                       np.array([1], np.int32), ("person",))
    return FrameResult("cam", frame, found, latency_ms=30.0)


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.unit
def test_a_cameras_json_line_carries_its_capture_time_in_iso_8601_and_epoch_ms(tmp_path):
    captured = time.monotonic() - 0.5  # decoded half a second before it is written
    out = JsonlOutput(str(tmp_path / "cam.jsonl"))
    out.write(_camera_frame(captured))
    out.close()
    line = json.loads((tmp_path / "cam.jsonl").read_text())
    expected = time.time() - 0.5
    assert line["time"].endswith("Z") and _epoch(line["time"]) == pytest.approx(expected, abs=0.05)
    assert isinstance(line["epoch_ms"], int) and line["epoch_ms"] / 1000 == pytest.approx(expected, abs=0.05)


@pytest.mark.unit
def test_events_and_lines_follow_the_wall_clock_when_it_is_corrected_during_a_run(tmp_path, monkeypatch):
    stage = EventStage(TrackStage([None], [False]), [EventsConfig()], [Scene({}, {})], ["cam"])
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)  # NTP steps the wall clock an hour on
    monkeypatch.setattr(clock, "ANCHOR_S", 0.0)  # measured again at once (every second in a run)
    track = Track(np.zeros(8), np.eye(8), 1, "person", np.array([10, 20, 60, 120], np.float32), 0.0, 0.0, id=1,
                  best_score=0.9)
    result = stage(dataclasses.replace(_camera_frame(time.monotonic()), tracks=TrackUpdate(started=(track,))))
    (event,) = result.events
    assert _epoch(event.time) == pytest.approx(real_time() + 3600.0, abs=0.1), "the event keeps the start's clock"
    out = JsonlOutput(str(tmp_path / "cam.jsonl"))
    out.write(result)
    out.close()
    line = json.loads((tmp_path / "cam.jsonl").read_text())
    assert line["time"] == event.time  # one conversion: a frame's line and its event name the same moment
