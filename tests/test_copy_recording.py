"""The copy recording (recording.mode: copy), the sub-stream (detect_url) and hardware decoding's fallback,
against real RTSP cameras (gst-rtsp-server on loopback sending a real clip's own H.264) and the real model.

The server sends the clip's packets as they are, so the copy recording must hold exactly the clip's frames:
frame k of a recording decodes to the same pixels as frame k of the file, and nothing is missing between
its first and last frame.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import LineReader, LoopbackHttpServer, MjpegCamera, decode, free_port, h264_clip, wait_for
from media import clip, pedestrian_pb
from rtsp import RtspServer
from streamdet.outputs.sidecar import read_sidecar, sidecar_path
from streamdet.sources import demux
from streamdet.sources.demux import adts_config, copyable_sound, to_lengths


@pytest.fixture(scope="module")
def bikes_frames() -> list[np.ndarray]:
    return decode(clip("bikes"))


def _run(args: list[str], model_cache: Path, config: str, tmp_path: Path) -> tuple[subprocess.Popen, LineReader]:
    settings = tmp_path / "settings.yaml"
    settings.write_text(config)
    proc = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "--config", str(settings),
                             "--model", str(pedestrian_pb()), *args], env=cli_env(model_cache),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    return proc, LineReader(proc.stderr)


def _frames(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(float(f.time), f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]


def _index_of(image: np.ndarray, frames: list[np.ndarray]) -> int:
    return int(np.argmin([np.abs(image.astype(np.int16) - f).mean() for f in frames]))


def _lines(folder: Path) -> int:
    return sum(p.read_text().count("\n") for p in folder.glob("*.jsonl"))


@pytest.mark.services
def test_a_camera_recorded_by_copy_holds_every_frame_plays_in_chromium_and_renders(tmp_path, model_cache, chromium,
                                                                                   bikes_frames, pedestrian_detector):
    server = RtspServer(clip("bikes"), repeat=3).start()
    rec, port = tmp_path / "rec", free_port()
    rec.mkdir()
    proc, err = _run(["--source", server.url(), "--output", str(rec / "cam_{start}.mp4"), "--serve", str(port)],
                     model_cache, "recording: {mode: copy, segment_seconds: 3}\n", tmp_path)
    try:
        wait_for(lambda: len(list(rec.glob("cam_*.mp4"))) >= 3, 60, "three 3-second segments")
        name = f"127.0.0.1_{server.port}_live"
        page = chromium.new_page()
        try:
            page.goto(f"http://127.0.0.1:{port}/recordings/{name}")
            page.wait_for_function("() => document.querySelectorAll('#segments li').length >= 2", timeout=20_000)
            page.locator("#segments li button").last.click()  # newest first: the oldest, a whole one
            page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=20_000)
            size = page.evaluate("() => { const v = document.getElementById('video'); "
                                 "return [v.videoWidth, v.videoHeight, v.duration]; }")
            # Where the copied segment's detections file has a person, the player draws it over the video.
            first = sorted(rec.glob("cam_*.mp4"))[0]
            boxed = next(f for f in read_sidecar(sidecar_path(first)) if len(f.detections))
            page.evaluate(f"() => {{ const v = document.getElementById('video'); v.pause(); "
                          f"v.currentTime = {boxed.pts + 0.01}; }}")
            page.wait_for_function("() => document.getElementById('overlay').dataset.boxes !== '0'",
                                   timeout=20_000)
        finally:
            page.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        server.close()
    stderr = err.text()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert size[:2] == [640, 272] and 2.9 < size[2] < 6.0, size  # cut at the first keyframe after 3 s
    segments = sorted(rec.glob("cam_*.mp4"))
    assert len(segments) >= 3
    # Every frame the camera sent, in order, across the segments: frame k+1 follows frame k, none missing.
    frames = [image for s in segments for _, image in _frames(s)]
    start = _index_of(frames[0], bikes_frames)
    # (The run stopped mid-stream: the newest frames' B-frames had not come yet, so the very last ones
    # shown may skip ahead, as any cut of a stream with B-frames does.)
    wrong = [i for i, image in enumerate(frames[:-3])
             if np.abs(image.astype(np.int16) - bikes_frames[(start + i) % len(bikes_frames)]).mean() > 1.0]
    assert not wrong, f"{len(wrong)} of {len(frames)} recorded frames are not the camera's next frame (first {wrong[:5]})"
    assert len(frames) >= 6 * 25
    # The detections beside each segment sit at their frame's time in it: the model's boxes on that frame.
    detector = pedestrian_detector
    at = start
    checked = 0
    for segment in segments[:2]:
        count = len(_frames(segment))
        lines = read_sidecar(sidecar_path(segment))
        assert lines and lines[0].size == (640, 272)
        for line in lines[::7]:
            k = round(line.pts * 25)
            assert 0 <= k < count, (segment.name, line.pts, count)
            direct = detector.detect(bikes_frames[(at + k) % len(bikes_frames)])
            for box in direct[direct.scores > 0.55].xyxy:
                got = line.detections.xyxy
                assert len(got) and np.abs(got - box).max(axis=1).min() <= 2.0, (segment.name, line.pts, box, got)
                checked += 1
        at += count
    assert checked > 5
    # Burnt in on demand: the same frames, with boxes where the file says.
    out = tmp_path / "burnt.mp4"
    proc2 = streamdet("render", str(segments[0]), "-o", str(out), env=cli_env(model_cache))
    assert proc2.returncode == 0, proc2.stderr
    assert len(_frames(out)) == len(_frames(segments[0]))


def _camera_that_drops_out(tmp_path: Path, model_cache: Path, video: Path, lines: int):
    """A copy-recorded camera that has written `lines` detections, then loses power: (server port, run, stderr,
    when it was killed)."""
    server = RtspServer(clip("bikes"), repeat=4).start()
    proc, err = _run(["--source", server.url(), "--output", str(video)], model_cache,
                     "recording: {mode: copy}\nsource: {read_timeout: 2, reconnect_initial: 0.5}\n", tmp_path)
    sidecar = sidecar_path(video)
    try:
        wait_for(lambda: sidecar.exists() and sidecar.read_text().count("\n") >= lines, 60, f"{lines} detection lines")
        killed = server.kill()  # the camera loses power
        err.wait(lambda line: "stream lost" in line, 20, "the outage noticed")
    except BaseException:
        proc.kill()
        proc.wait(timeout=30)
        server.close()
        raise
    return server.port, proc, err, killed


@pytest.mark.services
def test_a_copy_recording_keeps_a_gap_for_an_outage_and_survives_kill_9(tmp_path, model_cache):
    video = tmp_path / "cam.mp4"
    sidecar = sidecar_path(video)
    port, proc, err, killed = _camera_that_drops_out(tmp_path, model_cache, video, 40)
    server = None
    try:
        lost = len(err.lines)
        server = RtspServer(clip("bikes"), port=port, repeat=4).start()
        outage = time.monotonic() - killed  # at least this long without pictures
        err.wait(lambda line: "reconnected" in line, 30, "the reconnect", after=lost)
        before = sidecar.read_text().count("\n")
        wait_for(lambda: sidecar.read_text().count("\n") >= before + 40, 30, "40 lines after the outage")
    finally:
        proc.kill()  # kill -9: no chance to finish the file
        proc.wait(timeout=30)
        if server is not None:
            server.close()
    times = [t for t, _ in _frames(video)]
    steps = np.diff(times)
    assert steps.max() >= max(0.3, 0.8 * outage), f"the {outage:.2f} s outage is a {steps.max():.3f} s step"
    gap = int(np.argmax(steps))
    assert gap >= 40 and len(times) - gap > 25, (gap, len(times))
    # Otherwise the camera's own spacing; just before the gap the camera died mid-reordering (B-frames it
    # never sent), which skips a few frames' time.
    odd = [(i, round(float(x), 3)) for i, x in enumerate(steps)
           if abs(x - 0.04) >= 0.045 and not (i == gap or (i == gap - 1 and x < 0.25))]
    assert not odd, (gap, odd)
    text = sidecar.read_text()
    whole = text if text.endswith("\n") else text[:text.rfind("\n") + 1]
    lines = [json.loads(line) for line in whole.splitlines()]
    assert len(lines) >= 80 and max(line["pts"] for line in lines) <= times[-1] + 1.5


@pytest.mark.services
def test_a_camera_back_at_another_size_goes_on_in_a_new_file(tmp_path, model_cache):
    video = tmp_path / "cam.mp4"
    port, proc, err, _ = _camera_that_drops_out(tmp_path, model_cache, video, 25)
    server = None
    try:
        server = RtspServer(clip("carphone_pristine"), port=port, repeat=4).start()  # back as another camera
        err.wait(lambda line: "came back as h264 176x144" in line, 30, "the new file announced")
        second = tmp_path / "cam-1.mp4"
        wait_for(lambda: sidecar_path(second).exists() and sidecar_path(second).read_text().count("\n") >= 10, 30,
                 "detections of the new file")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        if server is not None:
            server.close()
    assert proc.returncode == 130 and "Traceback" not in err.text()
    first, after = _frames(video), _frames(second)
    assert first[0][1].shape[:2] == (272, 640) and after[0][1].shape[:2] == (144, 176)
    assert len(first) >= 25 and len(after) >= 10


def _with_sound(video: Path, path: Path) -> Path:
    """The clip's own H.264 with an AAC tone beside it: a camera with a microphone."""
    with av.open(str(video)) as source, av.open(str(path), "w") as out:
        vin = source.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream("aac", rate=48000)
        aout.layout = "mono"
        for packet in source.demux(vin):
            if packet.size:
                packet.stream = vout
                out.mux(packet)
        seconds = float(vin.duration * vin.time_base)
        t = np.arange(int(seconds * 48000)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, k
            out.mux(aout.encode(frame))
        out.mux(aout.encode(None))
    return path


@pytest.mark.services
def test_the_cameras_sound_is_copied_beside_its_picture(tmp_path, model_cache):
    server = RtspServer(_with_sound(clip("bikes"), tmp_path / "sound.mp4"), repeat=2, audio=True).start()
    video = tmp_path / "cam.mp4"
    proc, err = _run(["--source", server.url(), "--output", str(video)], model_cache, "recording: {mode: copy}\n",
                     tmp_path)
    try:
        wait_for(lambda: sidecar_path(video).exists() and sidecar_path(video).read_text().count("\n") >= 100, 60,
                 "four seconds recorded")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        server.close()
    assert proc.returncode == 130 and "Traceback" not in err.text()
    with av.open(str(video)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
        sound = [f for f in container.decode(audio=0)]
    seconds_of_sound = sum(f.samples for f in sound) / 48000
    picture_times = [t for t, _ in _frames(video)]
    assert abs(seconds_of_sound - picture_times[-1]) < 1.0, (seconds_of_sound, picture_times[-1])
    level = np.abs(np.concatenate([f.to_ndarray().ravel() for f in sound[10:20]])).max()
    assert 0.1 < level < 0.3  # the tone, not silence


@pytest.mark.services
def test_detect_url_detects_on_the_sub_stream_and_reports_boxes_in_the_main_streams_pixels(
        tmp_path, model_cache, bikes_frames, pedestrian_detector):
    sub_clip = h264_clip(bikes_frames, tmp_path / "sub.mp4", (320, 136))  # the camera's sub-stream, half size
    # The main stream answers only once the run has started without it: until then there is no size to
    # give the boxes in, so nothing may be detected (every record below is checked in its pixels).
    main, sub = RtspServer(clip("bikes"), repeat=3, port=free_port()), RtspServer(sub_clip, repeat=3).start()
    js, video = tmp_path / "all.jsonl", tmp_path / "cam.mp4"
    config = (f"sources:\n  - name: cam\n    url: {main.url()}\n    detect_url: {sub.url()}\n"
              f"recording: {{mode: copy}}\nsource: {{read_timeout: 2, open_timeout: 2}}\n"
              f"logging: {{status_interval: 1}}\n")
    proc, err = _run(["--json", str(js), "--output", str(video)], model_cache, config, tmp_path)
    try:
        err.wait(lambda line: "waiting for the main stream (url)" in line, 30, "the wait for the main stream")
        main.start()
        # The clip's person comes in at about frame 75: past it, boxes reach beyond the sub-stream's width.
        wait_for(lambda: js.exists() and js.read_text().count("\n") >= 120, 60, "120 frames detected")
        sub.kill()
        err.wait(lambda line: "sub-stream (detect_url)" in line and "cam" in line, 20, "the status naming the sub-stream")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        main.close()
        sub.close()
    stderr = err.text()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    records = [json.loads(line) for line in js.read_text().splitlines()]
    detector = pedestrian_detector
    sub_frames = decode(sub_clip)  # what the sub-stream's frames decode to (x264 made them)
    wide = compared = 0
    for record in records[:150:2]:
        small = sub_frames[record["frame"] % 250]
        got = np.array([d["box"] for d in record["detections"]], np.float32).reshape(-1, 4)
        direct = detector.detect(small)
        for box in direct[direct.scores > 0.55].xyxy * 2:  # the sub-stream's boxes in the main stream's pixels
            assert len(got) and np.abs(got - box).max(axis=1).min() <= 4.0, (record["frame"], box, got)
            compared += 1
        wide += int((got[:, 2] > 330).any()) if len(got) else 0
    assert compared > 5 and wide > 0, "no box reaches past the sub-stream's width: boxes are not in the main stream's pixels"
    lines = read_sidecar(sidecar_path(video))
    assert lines and all(line.size == (640, 272) for line in lines)
    frames = _frames(video)
    assert frames[0][1].shape[:2] == (272, 640) and len(frames) >= 120  # the main stream is what was recorded


@pytest.mark.services
def test_a_camera_whose_codec_mp4_cannot_hold_is_recorded_annotated_with_one_line(tmp_path, model_cache):
    camera = MjpegCamera(fps=25)
    video = tmp_path / "cam.mp4"
    proc, err = _run(["--source", f"http://127.0.0.1:{camera.port}/video", "--output", str(video)], model_cache,
                     "recording: {mode: copy}\n", tmp_path)
    try:
        err.wait(lambda line: "mjpeg" in line and "annotated" in line, 60, "the fallback line")
        wait_for(lambda: video.exists() and video.stat().st_size > 20_000, 30, "the annotated recording growing")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        camera.close()
    assert proc.returncode == 130 and "Traceback" not in err.text()
    assert len(_frames(video)) > 5 and not sidecar_path(video).exists()


@pytest.mark.unit
@pytest.mark.parametrize("args, fragments", [
    (["--source", str(clip("carphone_pristine"))], ["copy", "network camera", "annotated"]),
    (["--source", "rtsp://127.0.0.1:9/x", "--output", "cam.mkv"], ["copy recording", ".mp4"]),
])
def test_copy_mode_on_what_it_cannot_copy_is_one_line(tmp_path, model_cache, args, fragments):
    (tmp_path / "settings.yaml").write_text("recording: {mode: copy}\n")
    if "--output" not in args:
        args = [*args, "--output", "out.mp4"]
    proc = streamdet("run", "--config", "settings.yaml", *args, env=cli_env(model_cache), cwd=tmp_path)
    assert_one_line_error(proc, *fragments)


@pytest.mark.unit
def test_detect_url_without_a_copy_recording_is_one_line(tmp_path, model_cache):
    (tmp_path / "settings.yaml").write_text(
        "sources:\n  - {name: cam, url: 'rtsp://u:secret@127.0.0.1:9/main', detect_url: 'rtsp://127.0.0.1:9/sub'}\n")
    proc = streamdet("run", "--config", "settings.yaml", env=cli_env(model_cache), cwd=tmp_path)
    message = assert_one_line_error(proc, "detect_url", "copy recording")
    assert "secret" not in message


@pytest.mark.unit
@pytest.mark.parametrize("choice, fragments", [
    ("vaapi", ["hwaccel vaapi", "has no vaapi"]),
    ("cuda", ["hwaccel cuda", "cannot decode on cuda"]),
])
def test_an_explicit_hwaccel_this_machine_lacks_is_one_line(tmp_path, model_cache, choice, fragments):
    # This machine has no GPU: PyAV's FFmpeg has no vaapi at all, and its cuda finds no device.
    proc = streamdet("run", "--source", "rtsp://127.0.0.1:9/x", "--hwaccel", choice, env=cli_env(model_cache),
                     cwd=tmp_path)
    assert_one_line_error(proc, *fragments)


@pytest.mark.services
def test_hwaccel_auto_falls_back_to_software_with_one_line_naming_what_was_tried(tmp_path, model_cache):
    server = RtspServer(clip("carphone_pristine")).start()
    js = tmp_path / "out.jsonl"
    proc, err = _run(["--source", server.url(), "--json", str(js)], model_cache, "source: {hwaccel: auto}\n", tmp_path)
    try:
        wait_for(lambda: js.exists() and js.read_text().count("\n") >= 10, 60, "frames decoded")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        server.close()
    stderr = err.text()
    tried = [line for line in stderr.splitlines() if "hwaccel auto" in line]
    assert len(tried) == 1 and "tried" in tried[0] and "software" in tried[0], stderr
    assert "h264 176x144 at 30 fps, decoded in software" in stderr  # the start line names the decoder


@pytest.mark.unit
def test_a_cameras_frames_are_converted_to_the_same_pixels_as_swscale_gives():
    """The converter kept across frames gives what PyAV's per-frame `to_ndarray(format="bgr24")` gives (and what
    OpenCV's reading of a file gives): a camera and its recording, read as a file, see the same pictures."""
    to_bgr = demux.bgr_converter()
    with av.open(str(clip("bikes"))) as container:
        frames = [f for _, f in zip(range(3), container.decode(video=0))]
    for frame in frames:
        ours, theirs = to_bgr(frame), frame.to_ndarray(format="bgr24")
        assert ours.shape == theirs.shape == (272, 640, 3) and np.array_equal(ours, theirs)
    assert not np.array_equal(to_bgr(frames[0]), to_bgr(frames[2]))  # a frame of its own each time, not a reused buffer
    assert np.array_equal(to_bgr(frames[0]), decode(clip("bikes"), 1)[0])


@pytest.mark.unit
def test_annex_b_becomes_length_prefixed_nal_units():
    data = b"\0\0\0\1gAB\0\0\1hCD\0\0\1eXYZ"
    assert to_lengths(data) == b"\0\0\0\3gAB\0\0\0\3hCD\0\0\0\4eXYZ"
    assert to_lengths(b"\0\0\0\5abcde") == b"\0\0\0\5abcde"  # already lengths: left as it is
    assert os.path.basename(str(sidecar_path(Path("/r/cam_1.mp4")))) == "cam_1.jsonl"


def _as_hls(source: Path, folder: Path) -> Path:
    """The same packets as HLS (MPEG-TS segments, whose muxer puts AAC in ADTS form), as a camera or an NVR
    restream serves it."""
    folder.mkdir()
    with av.open(str(source)) as inp, av.open(str(folder / "index.m3u8"), "w", format="hls",
                                             options={"hls_time": "2", "hls_list_size": "0"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.size:
                packet.stream = streams[packet.stream_index]
                out.mux(packet)
    return folder / "index.m3u8"


@pytest.mark.unit
def test_adts_sound_is_copied_with_its_configuration_and_without_its_headers(tmp_path):
    """AAC from HLS or MPEG-TS: each packet has an ADTS header and the stream no configuration."""
    playlist = _as_hls(_with_sound(clip("bikes"), tmp_path / "sound.mp4"), tmp_path / "hls")
    with av.open(str(playlist)) as container:
        packets = container.demux()
        sound, why, held = copyable_sound(container, packets)
        assert why is None and sound.config == bytes([0x11, 0x88])  # AAC LC, 48 kHz, mono
        first = held[-1]
        assert first.stream_index == sound.stream.index and len(held) >= 1
        raw = bytes(first)
        assert raw[:2] == b"\xff\xf1" and sound.data(first) == raw[7:]  # the 7-byte header (no CRC) goes
    with av.open(str(tmp_path / "sound.mp4")) as container:
        sound, why, held = copyable_sound(container, container.demux())
        assert sound.stream is container.streams.audio[0] and sound.config is None and held == []
    assert adts_config(b"\xff\xf1\x4c\x40\x00\x1f\xfc") == bytes([0x11, 0x88])
    assert adts_config(b"\xff\xf1\x4c\x40\x00\x1f\xfd") is None  # two raw blocks in one frame
    assert adts_config(b"\x21\x10\x05") is None  # raw AAC, no header


@pytest.mark.unit
def test_a_camera_declaring_sound_it_never_sends_is_opened_without_it(tmp_path, monkeypatch):
    """The camera counts as opened only once its first sound packet is found: the look is bounded in packets
    and in time, well inside the open watchdog."""
    playlist = _as_hls(_with_sound(clip("bikes"), tmp_path / "sound.mp4"), tmp_path / "hls")
    # In packets, in its own time, and by the caller's open timeout (`until`, already past here).
    for packets, seconds, until, held_count in ((10, 60.0, math.inf, 10), (10_000, 0.0, math.inf, 1),
                                                (10_000, 60.0, time.monotonic(), 1)):
        monkeypatch.setattr(demux, "_PEEK_PACKETS", packets)
        monkeypatch.setattr(demux, "_PEEK_SECONDS", seconds)
        with av.open(str(playlist)) as container:
            video = container.streams.video[0].index
            sound, why, held = copyable_sound(container, (p for p in container.demux() if p.stream_index == video),
                                              until)
            assert sound is None and why == f"no sound packet came with its first {held_count} packets"
            assert len(held) == held_count


@pytest.mark.services
def test_an_hls_cameras_sound_is_copied(tmp_path, model_cache):
    """A camera served as HLS over HTTP (read at the speed FFmpeg's HLS reader gives a finished playlist):
    its ADTS sound ends up playable in the copy, beside the picture, for the whole clip."""
    folder = _as_hls(_with_sound(clip("bikes"), tmp_path / "sound.mp4"), tmp_path / "hls").parent

    def serve(request) -> None:
        path = folder / request.path.lstrip("/")
        if not path.is_file():
            request.send_error(404)
            return
        request.send_response(200)
        request.send_header("Content-Length", str(path.stat().st_size))
        request.end_headers()
        request.wfile.write(path.read_bytes())

    server = LoopbackHttpServer(serve)
    video = tmp_path / "cam.mp4"
    proc, err = _run(["--source", f"http://127.0.0.1:{server.port}/index.m3u8", "--output", str(video)], model_cache,
                     "recording: {mode: copy}\n", tmp_path)
    try:
        err.wait(lambda line: "stream lost (the stream ended)" in line, 60, "the whole playlist read")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        server.close()
    stderr = err.text()
    assert proc.returncode == 130 and "Traceback" not in stderr and "without sound" not in stderr, stderr
    with av.open(str(video)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
        sound = [f for f in container.decode(audio=0)]
    seconds_of_sound = sum(f.samples for f in sound) / 48000
    picture_times = [t for t, _ in _frames(video)]
    assert abs(seconds_of_sound - picture_times[-1]) < 1.0 and picture_times[-1] > 9, (seconds_of_sound, picture_times[-1])
    level = np.abs(np.concatenate([f.to_ndarray().ravel() for f in sound[10:20]])).max()
    assert 0.1 < level < 0.3  # the tone, not silence


@pytest.mark.unit
def test_sound_mp4_cannot_take_is_left_out_with_the_reason(tmp_path):
    """G.711, as cameras send it: MP4 cannot hold it as it is."""
    path = tmp_path / "camera.mov"
    with av.open(str(path), "w") as out:
        picture = out.add_stream("libx264", rate=Fraction(25))
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("pcm_mulaw", rate=8000)
        sound.layout = "mono"
        out.mux(picture.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="bgr24")))
        out.mux(picture.encode(None))
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    with av.open(str(path)) as container:
        sound, why, held = copyable_sound(container, container.demux())
        assert sound is None and "pcm_mulaw" in why and held == []
