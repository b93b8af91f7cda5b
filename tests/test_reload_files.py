"""A camera changed by a reload keeps its files: its own detections and events files go on (appended: the run wrote
them itself), its recording of one file goes on in a new file beside it; nothing the run wrote is replaced, and no
camera added may write a file the run writes for another, --overwrite or not. The real pipeline (`Pipeline.reload`,
the real model) with MJPEG cameras on loopback at a low rate.
"""

from __future__ import annotations

import json

import av
import pytest

from helpers import MjpegCamera, read_jsonl, run_alongside, wait_for
from streamdet.config.loader import load_config
from streamdet.pipeline import Pipeline

FPS = 8
BASE = "display: {show: 'no'}\nlogging: {quiet: true}\noutput: {overwrite: true}\n"


def _settings(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    config = load_config(path)
    config.check()
    return config


def _frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture
def cameras():
    made = [MjpegCamera(fps=FPS), MjpegCamera(fps=FPS)]
    yield made
    for camera in made:
        camera.close()


@pytest.mark.services
def test_a_changed_camera_goes_on_in_its_own_files_and_none_is_replaced(tmp_path, cameras, pedestrian_detector):
    door, yard = cameras
    rec = tmp_path / "rec"
    rec.mkdir()
    own = f"    output: {{json: '{tmp_path}/det_{{name}}.jsonl', events: '{tmp_path}/ev_{{name}}.jsonl', " \
          f"video: '{rec}/{{name}}.mp4'}}\n"

    def settings(name: str, threshold: float, gate: str = "") -> object:
        return _settings(tmp_path, name, "sources:\n"
                         f"  - name: door\n    url: http://127.0.0.1:{door.port}/a.mjpg\n{own}"
                         f"    detect: {{threshold: {threshold}}}\n"
                         f"  - name: yard\n    url: http://127.0.0.1:{yard.port}/b.mjpg\n"
                         f"    output: {{json: {tmp_path}/yard.jsonl}}\n" + gate + BASE)

    detections, events = tmp_path / "det_door.jsonl", tmp_path / "ev_door.jsonl"
    outcomes, before = [], {}

    def lines(path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    def change_door(pipeline) -> None:
        for step, threshold in enumerate((0.45, 0.4)):
            wait_for(lambda: len(lines(detections)) >= len(before.get(detections, [])) + 2 * FPS
                     and "start" in events.read_text(), 60, "door's detections and events")
            before.update({detections: lines(detections), events: lines(events)})
            outcomes.append(pipeline.reload(settings(f"changed{step}", threshold)))
        wait_for(lambda: len(lines(detections)) >= len(before[detections]) + 2 * FPS, 60, "door's lines after")
        # Another camera may not take a file the run wrote for door, even with --overwrite.
        gate = (f"  - name: gate\n    url: http://127.0.0.1:{yard.port}/c.mjpg\n"
                f"    output: {{video: '{rec}/door.mp4'}}\n")
        outcomes.append(pipeline.reload(settings("gate", 0.4, gate)))

    with Pipeline(settings("start", 0.5), detector=pedestrian_detector) as pipeline:
        run_alongside(pipeline, change_door)
    assert [o.changed for o in outcomes[:2]] == [("door",), ("door",)] and outcomes[0].error is None, outcomes
    assert outcomes[2].error == (f"output '{rec}/door.mp4' is written by this run for the camera 'door'; "
                                 "give each camera its own path (with {name} in it)"), outcomes[2]
    # Every line written before each change is still there, first, and the file goes on after it.
    after = lines(detections)
    assert after[:len(before[detections])] == before[detections] and len(after) > len(before[detections])
    assert lines(events)[:len(before[events])] == before[events]
    assert all(json.loads(line)["source"] == "door" for line in after) and read_jsonl(events)
    # Each instance's tracks end with it: as many ends as starts, across the two restarts.
    kinds = [e["kind"] for e in read_jsonl(events)]
    assert kinds.count("start") == kinds.count("end") >= 3, kinds
    # The recording: one file per instance of the camera, each whole; none replaced.
    assert sorted(p.name for p in rec.glob("*.mp4")) == ["door-1.mp4", "door-2.mp4", "door.mp4"]
    assert all(_frames(rec / name) >= FPS for name in ("door.mp4", "door-1.mp4", "door-2.mp4"))
    assert read_jsonl(tmp_path / "yard.jsonl")
