"""Recordings: H.264 a browser plays, that survive kill -9 and keep real time (real encoder, real Chromium)."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from clirun import cli_env, streamdet
from helpers import MjpegCamera, run_alongside, video_props, wait_for
from media import clip, pedestrian_pb

from streamdet.config.sections import Config
from streamdet.model.detector import load
from streamdet.pipeline import Pipeline

def _timestamps_s(path: Path) -> list[float]:
    """Every frame's presentation time, read by PyAV (FFmpeg), not by the writer."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(float(p.pts * p.time_base) for p in container.demux(stream) if p.pts is not None)


def _plays_in_chromium(videos: list[Path], tmp_path: Path, chromium) -> dict[str, dict]:
    """Load each video in headless Chromium and report what the page sees."""
    page_dir = tmp_path / "page"
    page_dir.mkdir()
    for video in videos:
        shutil.copy(video, page_dir / video.name)
    results = {}
    page = chromium.new_page()
    try:
        for video in videos:
            (page_dir / "index.html").write_text(f'<video id="v" src="{video.name}" muted preload="auto"></video>')
            page.goto((page_dir / "index.html").as_uri())
            page.wait_for_function("() => { const v = document.getElementById('v'); "
                                   "return v.readyState >= 2 || v.error; }", timeout=20_000)
            results[video.name] = page.evaluate("() => { const v = document.getElementById('v'); return "
                                                "{width: v.videoWidth, ready: v.readyState, duration: v.duration, "
                                                "error: v.error ? v.error.message || String(v.error.code) : null}; }")
    finally:
        page.close()
    return results


@pytest.mark.services
def test_recordings_play_in_chromium_even_after_kill_9(tmp_path, model_cache, chromium):
    env = cli_env(model_cache)
    finished = tmp_path / "finished.mp4"
    proc = streamdet("run", "-s", str(clip("bikes")), "--model", str(pedestrian_pb()), "-o", str(finished), env=env)
    assert proc.returncode == 0, proc.stderr
    assert video_props(finished)[:3] == (250, 640, 272)
    with av.open(str(finished)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")

    killed, js = tmp_path / "killed.mp4", tmp_path / "killed.jsonl"
    run = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "-s", str(clip("bikes")), "--loop", "--model",
                            str(pedestrian_pb()), "-o", str(killed), "--json", str(js)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_for(lambda: js.exists() and js.read_text().count("\n") >= 150, 60, "150 frames recorded")
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    processed = js.read_text().count("\n")  # JSON lines lag the recording (they are flushed every 0.5 s)
    kept = video_props(killed)[0]
    print(f"\nkill -9 after {processed}+ frames processed: {kept} frames play")
    # All but the fragment being written (a keyframe a second = 25 frames) and the writer's queue (8).
    assert kept >= processed - 25 - 8

    seen = _plays_in_chromium([finished, killed], tmp_path, chromium)
    for name in ("finished.mp4", "killed.mp4"):
        assert seen[name]["error"] is None and seen[name]["width"] == 640 and seen[name]["ready"] >= 2, seen
    assert abs(seen["finished.mp4"]["duration"] - 10.0) < 0.1, seen


def test_mp4v_is_recorded_on_request(tmp_path, model_cache):
    """MPEG-4 Part 2 (which browsers refuse: the reason H.264 is the default) is still written when asked for."""
    mp4v, config = tmp_path / "mp4v.mp4", tmp_path / "mp4v.yaml"
    config.write_text("recording:\n  codec: mp4v\n")
    proc = streamdet("run", "--config", str(config), "-s", str(clip("carphone_pristine")), "--model",
                     str(pedestrian_pb()), "-o", str(mp4v), env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    with av.open(str(mp4v)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert video_props(mp4v)[:3] == (120, 176, 144)


def test_a_camera_recording_keeps_real_time_through_drops_and_an_outage(tmp_path, pedestrian_xml):
    """A 25 fps camera faster than its slow consumer (half its frames dropped) and off for 5 s: the recording
    is as long as the time that passed, and the outage is a 5 s jump, not a cut."""
    cam = MjpegCamera(fps=25)
    port = cam.port
    config = Config(sources=[f"http://127.0.0.1:{port}/v.mjpg"])
    config.display.show = "no"
    config.logging.status_interval = 0
    config.output.video = str(tmp_path / "cam.mp4")
    captured: list[float] = []
    config.inference.nireq = 1
    detector = load(pedestrian_xml, hint="LATENCY", threads=1)
    events: dict[str, float] = {}

    def outage(pipeline: Pipeline) -> None:
        source = pipeline.lanes[0].source
        wait_for(lambda: len(captured) >= 40, 30, "frames before the outage")
        cam.close()
        wait_for(lambda: (source.health().offline_s or 0) >= 5.0, 20, "a 5 s outage", poll=0.05)
        events["back"] = time.monotonic()
        events["cam"] = MjpegCamera(fps=25, port=port)
        wait_for(lambda: sum(1 for c in list(captured) if c > events["back"]) >= 40, 30, "frames after it")

    def slow_output(result) -> None:
        # An output that takes 80 ms a frame (a slow disk, a busy uplink): the camera's 25 fps outrun it and
        # the newest-frame policy drops about half, whatever the speed of inference on this machine.
        captured.append(result.frame.captured)
        time.sleep(0.08)

    with Pipeline(config, detector=detector) as pipeline:
        run_alongside(pipeline, outage, slow_output)
        summary = pipeline.summary()
    events["cam"].close()
    source = summary.sources[0]
    assert source.frames_dropped > 0.3 * source.frames_read, source  # the newest-frame policy at work

    stamps = _timestamps_s(tmp_path / "cam.mp4")
    assert len(stamps) == len(captured)
    wall = captured[-1] - captured[0]
    print(f"\ncamera recording: {stamps[-1] - stamps[0]:.2f} s of video for {wall:.2f} s of capture, "
          f"{source.frames_dropped} of {source.frames_read} frames dropped")
    assert abs((stamps[-1] - stamps[0]) - wall) <= 0.05 * wall
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) >= 5.0 and sorted(gaps)[-2] < 1.0  # one jump: the outage


def _starts(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f"{name}_2") and p.suffix == ".mp4")


@pytest.mark.services  # Chromium plays a segment
def test_camera_segments_rotate_and_expire_per_camera_touching_nothing_else(tmp_path, pedestrian_detector, chromium):
    """Two cameras into one folder: door keeps 4 s of 1 s segments, yard keeps at most 1 byte (so only the file
    being written); files not in a camera's record, and the other camera's, are never touched."""
    rec = tmp_path / "rec"
    rec.mkdir()
    decoys = ["door_notes.txt", "door_20200101-000000.mp4.bak", "porch_20200101-000000.mp4", "door_latest.mp4",
              "yard.mp4",
              # A door segment by its name and age, but not in door's record (copied in, another program's): it stays.
              "door_20200101-000000.mp4"]
    for name in decoys:
        (rec / name).write_bytes(b"not ours")
    door, yard = MjpegCamera(fps=25), MjpegCamera(fps=25)
    config_file = tmp_path / "site.yaml"
    config_file.write_text(f"""
output:
  video: {rec}/{{name}}_{{start}}.mp4
recording:
  segment_seconds: 1
sources:
  - name: door
    url: http://127.0.0.1:{door.port}/v.mjpg
    recording: {{keep_hours: {4 / 3600}}}
  - name: yard
    url: http://127.0.0.1:{yard.port}/v.mjpg
    recording: {{keep_gb: 0.000000001}}
""")
    from streamdet.config.loader import load_config

    config = load_config(config_file)
    config.display.show = "no"
    config.logging.status_interval = 0
    made: set[str] = set()

    def enough() -> bool:
        made.update(_starts(rec, "door"))
        return len(made) >= 8

    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline:
            run_alongside(pipeline, lambda _: wait_for(enough, 60, "eight door segments", poll=0.1))
    finally:
        door.close()
        yard.close()
    kept = _starts(rec, "door")
    print(f"\ndoor: {len(made)} segments made, {len(kept)} kept: {kept}; yard kept {_starts(rec, 'yard')}")
    kept.remove("door_20200101-000000.mp4")  # a decoy
    assert 2 <= len(kept) <= 6 and len(made) > len(kept), kept  # about 4 s of 1 s segments (names keep whole seconds)
    assert len(_starts(rec, "yard")) == 1  # only the segment being written when the run ended
    for name in decoys:
        assert (rec / name).read_bytes() == b"not ours", name
    for name in kept[:-1]:  # every finished segment is about a second long and plays
        stamps = _timestamps_s(rec / name)
        assert 0.8 <= stamps[-1] - stamps[0] + 0.04 <= 1.3 and video_props(rec / name)[0] == len(stamps), name
    seen = _plays_in_chromium([rec / kept[0]], tmp_path, chromium)
    assert seen[kept[0]]["error"] is None and seen[kept[0]]["width"] == 176, seen


def test_a_camera_recording_with_on_error_continue_survives_its_folder_vanishing(tmp_path, caplog, pedestrian_detector):
    caplog.set_level(logging.INFO)
    rec = tmp_path / "rec"
    rec.mkdir()
    cam = MjpegCamera(fps=25)
    config = Config(sources=[f"http://127.0.0.1:{cam.port}/v.mjpg"])
    config.display.show = "no"
    config.logging.status_interval = 0
    config.output.video = str(rec / "{name}_{start}.mp4")
    config.recording.on_error = "continue"
    frames: list[float] = []

    def vanish(pipeline: Pipeline) -> None:
        wait_for(lambda: len(frames) >= 30, 30, "recording under way")
        shutil.rmtree(rec)
        wait_for(lambda: any("recording again" in m for m in caplog.messages), 20, "the error to be logged")
        rec.mkdir()
        wait_for(lambda: any(rec.iterdir()), 20, "a new recording in the folder made again")
        after = len(frames)
        wait_for(lambda: len(frames) >= after + 30, 30, "frames after it")

    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline:
            run_alongside(pipeline, vanish, lambda result: frames.append(result.frame.captured))
    finally:
        cam.close()
    assert any("No such file or directory" in m for m in caplog.messages), caplog.messages
    (segment,) = [p for p in rec.iterdir() if not p.name.startswith(".")]  # beside the camera's hidden record
    assert video_props(segment)[0] > 10  # the new file plays


_WRITE_UNTIL_KILLED = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from helpers import decode
from media import clip
from streamdet.config.sections import RecordingConfig
from streamdet.outputs.video import Encoder

encoder = Encoder(Path(sys.argv[1]), (640, 272), 25, RecordingConfig())
for i, image in enumerate(decode(clip("bikes"), 200)):
    encoder.add(image, i * 40)
print(i + 1, flush=True)  # every frame handed to the muxer
sys.stdin.read()  # never closed: killed here
"""


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_every_container_survives_kill_9_but_for_the_last_second(suffix, tmp_path):
    """The real writer in its own process, killed after 200 frames of bikes: every container plays all but
    the fragment (cluster) being written, a keyframe interval of 25 frames."""
    out = tmp_path / f"killed{suffix}"
    proc = subprocess.Popen([sys.executable, "-c", _WRITE_UNTIL_KILLED, str(out), str(Path(__file__).parent)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        written = wait_for(lambda: proc.stdout.readline().strip() == "200", 60, "200 frames written")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert written
    kept = video_props(out)[0]
    print(f"\n{suffix}: {kept} of 200 frames play after kill -9")
    assert 200 - 25 <= kept <= 200


def test_retention_deletes_only_what_this_camera_wrote(tmp_path, model_cache):
    """Issue #21: yard's pattern `{start}-yard.mp4` also fits camera 2-yard's files (the 2 read as the same-second
    counter), files copied in, and an impossible date; yard keeps 1 byte (so only the segment being written), 2-yard
    everything. Only yard's own
    segments may go, and the run ends without a traceback."""
    rec = tmp_path / "rec"
    rec.mkdir()
    decoys = ["20190704-120000-yard.mp4", "20200101-000000-3-yard.mp4", "20261399-999999-yard.mp4",
              "20190704-120000.mp4"]
    for name in decoys:
        (rec / name).write_bytes(b"not written by this camera")
    config = tmp_path / "site.yaml"
    config.write_text(f"""
output:
  video: {rec}/{{start}}-{{name}}.mp4
sources:
  - name: 2-yard
    url: {clip("carphone_pristine")}
  - name: yard
    url: {clip("carphone_pristine")}
    recording: {{segment_seconds: 1, keep_gb: 0.000000001}}
""")
    proc = streamdet("run", "--config", str(config), "--model", str(pedestrian_pb()), env=cli_env(model_cache))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "deleted" in proc.stderr  # yard's retention did run
    for name in decoys:
        assert (rec / name).read_bytes() == b"not written by this camera", name
    recordings = {p.name: video_props(p)[0] for p in rec.glob("*.mp4") if p.name not in decoys}
    # 2-yard's one recording holds all 120 frames; of yard's 1 s segments only the last is left.
    assert len(recordings) == 2 and sorted(recordings.values())[1] == 120, recordings
    assert sorted(recordings.values())[0] <= 30, recordings
