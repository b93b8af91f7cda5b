"""What a reload adds to or changes in a run that goes. Stages the run had none of: a camera that tracks added to a
run without tracking gets its events written; a camera with clips added to a run that draws nothing gets drawn
clips. Files: a camera changed by a reload keeps its own detections and events files (appended: the run wrote them
itself), its recording of one file goes on in a new file beside it; nothing the run wrote is replaced, and no camera
added may write a file the run writes for another, --overwrite or not. The real pipeline (`Pipeline.reload`, the
real model) with MJPEG cameras on loopback at a low rate; and the draw stage a reload adds, with the web view's
encoder, on real frames without a model.
"""

from __future__ import annotations

import json
import threading
import urllib.request

import av
import numpy as np
import pytest

from helpers import MjpegCamera, decode, read_jsonl, run_alongside, settings_from, wait_for
from media import clip
from streamdet.assembly.running import DrawSome
from streamdet.config.sections import OverlayConfig
from streamdet.config.web import WebConfig
from streamdet.detections import Detections, FrameResult
from streamdet.drawing import Annotator, class_color
from streamdet.pipeline import Pipeline
from streamdet.sources.base import Frame
from streamdet.stages import Annotate
from streamdet.web.frames import FrameHub

FPS = 8  # the cameras' rate: enough for a track to start, little work for a shared 2-core machine
BASE = "display: {show: 'no'}\nlogging: {quiet: true}\n"
OVERWRITE = "output: {overwrite: true}\n"


def _camera(name: str, camera: MjpegCamera, extra: str = "") -> str:
    return f"  - name: {name}\n    url: http://127.0.0.1:{camera.port}/video.mjpg\n{extra}"


def _person_pixels(image: np.ndarray) -> int:
    """Pixels of the person box's colour: carphone has next to none of its own."""
    return int((np.abs(image.astype(np.int16) - np.array(class_color(1), np.int16)).max(axis=2) <= 12).sum())


@pytest.fixture
def cameras():
    made = [MjpegCamera(fps=FPS), MjpegCamera(fps=FPS)]
    yield made
    for camera in made:
        camera.close()


@pytest.mark.services
def test_a_camera_that_tracks_added_to_a_run_without_tracking_writes_its_events(tmp_path, cameras,
                                                                                pedestrian_detector):
    one, two = cameras
    events, detections = tmp_path / "two-events.jsonl", tmp_path / "all.jsonl"
    shared = f"output: {{json: {detections}}}\n" + BASE  # a run-wide detections file: the camera added joins it
    start = settings_from(tmp_path, "start", "sources:\n" + _camera("one", one) + shared)
    later = settings_from(tmp_path, "later", "sources:\n" + _camera("one", one)
                      + _camera("two", two, f"    output: {{events: {events}}}\n") + shared)
    outcomes = []

    def add_two(pipeline) -> None:
        wait_for(lambda: pipeline.status().sources[0].frames_processed >= 3, 60, "one's frames")
        assert pipeline._parts.events is None  # nothing tracks yet: no tracking or events stage
        outcomes.append(pipeline.reload(later))
        wait_for(lambda: events.exists() and any(e["kind"] == "start" for e in read_jsonl(events)), 60,
                 "two's first event")
        # Read again unchanged: nothing restarts (the camera that joined a shared file is as the file gives it).
        outcomes.append(pipeline.reload(later))

    with Pipeline(start, detector=pedestrian_detector) as pipeline:
        run_alongside(pipeline, add_two)
    assert outcomes[0].added == ("two",) and outcomes[0].error is None, outcomes[0]
    assert outcomes[1].line() == "reload: no camera changed"
    seen = read_jsonl(events)
    assert {e["source"] for e in seen} == {"two"}
    starts = {e["track"] for e in seen if e["kind"] == "start"}
    assert starts and starts == {e["track"] for e in seen if e["kind"] == "end"}  # its tracks ended with the run
    lines = read_jsonl(detections)
    assert {"one", "two"} == {line["source"] for line in lines}
    assert any(d.get("track") for line in lines if line["source"] == "two" for d in line["detections"])


@pytest.mark.services
def test_a_camera_with_clips_added_to_a_run_that_draws_nothing_gets_drawn_clips(tmp_path, cameras,
                                                                               pedestrian_detector):
    """The run draws for its web view alone (no stage draws): the camera added gets a draw stage of its own, its
    clips show the boxes as those of a run started with it would; the other camera's frames stay undrawn."""
    one, two = cameras
    folder = tmp_path / "clips"
    folder.mkdir()
    web = "web: {listen: '127.0.0.1:0'}\n"
    start = settings_from(tmp_path, "start", "sources:\n" + _camera("one", one) + web + BASE)
    later = settings_from(tmp_path, "later", "sources:\n" + _camera("one", one) + _camera(
        "two", two, f"    events: {{clips: {folder}, pre_capture: 1, post_capture: 1}}\n") + web + BASE)
    drawn: dict[str, list[bool]] = {"one": [], "two": []}

    def add_two(pipeline) -> None:
        wait_for(lambda: pipeline.status().sources[0].frames_processed >= 3, 60, "one's frames")
        assert pipeline.reload(later).added == ("two",)
        wait_for(lambda: sum(drawn["two"]) >= 3 * FPS, 60, "three seconds of two's frames drawn")
        with urllib.request.urlopen(f"{pipeline.web_url.rstrip('/')}/snapshot/two.jpg", timeout=10) as answer:
            assert answer.status == 200

    def seen(result: FrameResult) -> None:
        drawn[result.source].append(result.drawn)
        if result.source == "one":  # undrawn, as before the reload: no box colour on it
            assert _person_pixels(result.frame.image) < 20

    with Pipeline(start, detector=pedestrian_detector) as pipeline:
        run_alongside(pipeline, add_two, seen)
    assert drawn["one"] and not any(drawn["one"]) and all(drawn["two"])
    made = sorted(folder.glob("two_*.mp4"))
    assert made, "no clip of two"
    with av.open(str(made[0])) as container:
        boxed = [_person_pixels(f.to_ndarray(format="bgr24")) > 100 for f in container.decode(video=0)]
    assert len(boxed) >= FPS and sum(boxed) >= len(boxed) // 2, boxed  # the man's box, drawn


@pytest.mark.unit
def test_the_draw_stage_a_reload_adds_draws_its_cameras_alone_and_the_web_view_draws_the_rest():
    image = decode(clip("carphone_pristine"), 1)[0]
    box = Detections(xyxy=np.array([[40, 20, 150, 140]], np.float32), scores=np.array([0.9], np.float32),
                     class_ids=np.array([1]), labels=("person",))

    def result(source_id: int) -> FrameResult:
        return FrameResult(source=f"cam{source_id}", frame=Frame(image.copy(), 0, 0.0, 0.0), detections=box,
                           latency_ms=1.0, source_id=source_id)

    stage = DrawSome(Annotator(OverlayConfig()))
    stage.sources.add(1)
    kept, drawn = stage(result(0)), stage(result(1))
    assert not kept.drawn and (kept.frame.image == image).all() and _person_pixels(kept.frame.image) < 20
    assert drawn.drawn and _person_pixels(drawn.frame.image) > 100
    painted: list[int] = []
    paint = Annotate(Annotator(OverlayConfig())).paint
    hub = FrameHub(2, WebConfig(fps=30), lambda picture, r: (painted.append(r.source_id), paint(picture, r)))
    done = threading.Event()
    hub.on_jpeg(lambda source_id: done.set() if source_id == 1 else None)
    try:
        hub.publish(0, kept)
        hub.publish(1, drawn)
        hub.want(0)
        hub.want(1)
        wait_for(lambda: done.is_set() and hub.latest(0) is not None, 10, "both JPEGs")
    finally:
        hub.stop()
    assert painted == [0]  # the web view draws the frame no stage drew, and not the one drawn already


def _frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.services
def test_a_changed_camera_goes_on_in_its_own_files_and_none_is_replaced(tmp_path, cameras, pedestrian_detector):
    door, yard = cameras
    rec = tmp_path / "rec"
    rec.mkdir()
    own = f"    output: {{json: '{tmp_path}/det_{{name}}.jsonl', events: '{tmp_path}/ev_{{name}}.jsonl', " \
          f"video: '{rec}/{{name}}.mp4'}}\n"

    def settings(name: str, threshold: float, gate: str = "") -> object:
        return settings_from(tmp_path, name, "sources:\n"
                         f"  - name: door\n    url: http://127.0.0.1:{door.port}/a.mjpg\n{own}"
                         f"    detect: {{threshold: {threshold}}}\n"
                         f"  - name: yard\n    url: http://127.0.0.1:{yard.port}/b.mjpg\n"
                         f"    output: {{json: {tmp_path}/yard.jsonl}}\n" + gate + BASE + OVERWRITE)

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
