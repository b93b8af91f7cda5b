"""Live sources against real servers on 127.0.0.1 (an MJPEG IP-camera server in this file)."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import FrameConsumer, MjpegCamera, free_port, video_props, wait_for
from media import clip, pedestrian_pb

from streamdet.config.sections import SourceConfig
from streamdet.errors import SourceError
from streamdet.sources import NetworkSource, open_source


@pytest.fixture
def camera():
    cam = MjpegCamera()
    yield cam
    cam.close()


@pytest.mark.unit
def test_no_camera_here_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match=r"no camera at index 0 \(/dev/video0 does not exist\)"):
        open_source("0")
    with pytest.raises(SourceError, match="no camera at /dev/video7"):
        open_source("/dev/video7")
    proc = streamdet("run", "--source", "0", "--model", str(pedestrian_pb()), env=cli_env(tmp_path / "empty-cache"))
    assert_one_line_error(proc, "no camera at index 0")


@pytest.mark.unit
def test_mjpeg_ip_camera_frames_flow_and_credentials_stay_hidden(camera, caplog):
    url = f"http://viewer:s3cret@127.0.0.1:{camera.port}/video.mjpg"
    caplog.set_level(logging.DEBUG)
    source = open_source(url, SourceConfig(open_timeout=5, read_timeout=2))
    assert "s3cret" not in source.name and "viewer" not in source.name
    info = source.open()
    assert (info.width, info.height) == (176, 144) and info.live
    consumer = FrameConsumer(source)
    consumer.wait_frames(30, 10)
    source.close()
    frames = consumer.frames[:30]
    assert all(f.image.shape == (144, 176, 3) for f in frames)
    assert [f.index for f in frames] == list(range(30))
    assert "s3cret" not in caplog.text


@pytest.mark.unit
def test_frames_are_handed_on_by_the_reader_and_an_error_there_ends_feed_on_its_own_thread(camera):
    """A camera's frames go to the consumer on its reader thread, in order; what the consumer raises there is
    raised by feed() on the watchdog's thread (the caller's), and the reader ends."""
    source = NetworkSource(f"http://127.0.0.1:{camera.port}/video.mjpg", SourceConfig(open_timeout=5, read_timeout=2))
    source.open()
    seen, threads = [], set()
    broken = RuntimeError("the consumer broke")

    def deliver(frame) -> bool:
        seen.append(frame.index)
        threads.add(threading.current_thread().name)
        if len(seen) == 5:
            raise broken
        return True

    try:
        with pytest.raises(RuntimeError) as raised:
            source.feed(deliver)
        assert raised.value is broken
        assert seen == [0, 1, 2, 3, 4] and threads == {f"reader-{source.name}"}
        wait_for(lambda: not [t for t in threading.enumerate() if t.name == f"reader-{source.name}"], 5,
                 "the reader to end")
    finally:
        source.close()


@pytest.mark.unit
def test_feed_returns_when_the_consumer_wants_no_more_frames(camera):
    source = NetworkSource(f"http://127.0.0.1:{camera.port}/video.mjpg", SourceConfig(open_timeout=5, read_timeout=30))
    source.open()
    seen = []
    try:
        source.feed(lambda frame: seen.append(frame.index) or len(seen) < 3)  # back at once, not after 30 s
        assert seen == [0, 1, 2] and source.stats.losses == 0
    finally:
        source.close()


@pytest.mark.unit
def test_a_camera_fed_long_after_it_opened_is_not_lost_at_the_start(camera):
    """A run may start well after its cameras opened (a model compiling): the first frame, held meanwhile, and
    the read timeout both count from when feeding starts."""
    url = f"http://127.0.0.1:{camera.port}/video.mjpg"
    source = NetworkSource(url, SourceConfig(open_timeout=5, read_timeout=1))
    viewer = NetworkSource(url, SourceConfig())
    source.open()
    opened = time.monotonic()
    try:
        viewer.open()
        # The gap being tested, longer than the read timeout: until another viewer has a frame captured past it.
        watched = FrameConsumer(viewer)
        wait_for(lambda: any(f.captured - opened > 1.5 for f in list(watched.frames)), 20,
                 "a frame 1.5 s after the open")
        viewer.close()
        consumer = FrameConsumer(source)
        consumer.wait_frames(30, 10)
        assert source.stats.losses == 0 and source.stats.reconnects == 0
    finally:
        source.close()
        viewer.close()


def _messages(caplog, fragment: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if fragment in r.getMessage()]


@pytest.mark.unit
def test_nothing_listening_backs_off_as_configured_and_stops_promptly(caplog):
    port = free_port()
    url = f"http://cam:pw123@127.0.0.1:{port}/video.mjpg"
    source = NetworkSource(url, SourceConfig(open_timeout=1, read_timeout=1, reconnect_initial=0.1, reconnect_max=0.4))
    caplog.set_level(logging.INFO, logger="streamdet.live")
    info = source.open()
    assert (info.width, info.height) == (0, 0)
    consumer = FrameConsumer(source)
    wait_for(lambda: len(_messages(caplog, "next try in")) >= 4, 10, "four failed attempts")
    health = source.health()
    assert not health.connected and health.input_fps is None and health.attempt >= 4
    assert health.offline_s > 0.5 and 0 <= health.next_try_s <= 0.4
    assert f"nothing answers at 127.0.0.1:{port}" in health.last_error
    t0 = time.monotonic()
    source.stop()
    assert consumer.ended(2) and time.monotonic() - t0 < 1.0
    assert consumer.frames == []
    waits = [float(m.rsplit("in ", 1)[1].split(" s")[0]) for m in _messages(caplog, "next try in")]
    assert waits[:4] == [0.1, 0.2, 0.4, 0.4]
    assert all("pw123" not in r.getMessage() and f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("outage_s, initial", [(3, 1.0), (5, 0.25)])
def test_camera_back_after_an_outage_gives_frames_within_1_5_s(outage_s, initial, caplog):
    """Backoff doubling from `initial` (1 s by default) to 30 s: without the port probe, the camera back after
    5 s with a 0.25 s start would wait until the attempt at 7.75 s (attempts at 0, 0.25, 0.75, 1.75, 3.75,
    7.75 s), as a 20 s outage with the default waited until 31 s."""
    caplog.set_level(logging.INFO, logger="streamdet.live")
    cam = MjpegCamera()
    port = cam.port
    source = NetworkSource(f"http://127.0.0.1:{port}/v.mjpg", SourceConfig(reconnect_initial=initial))
    source.open()
    consumer = FrameConsumer(source)
    consumer.wait_frames(10, 10)
    assert source.health().connected and source.health().input_fps > 10
    cam.close()
    # The camera stays off until streamdet has been without it for the whole outage.
    consumer.wait_outage(outage_s)
    health = source.health()
    assert health.input_fps is None and health.attempt >= 1 and health.next_try_s is not None
    cam = MjpegCamera(port=port)
    back = time.monotonic()
    try:
        first, recovery = consumer.first_after(back, 10, "MJPEG camera")
        assert recovery < 1.5
        assert first.gap_ms / 1000 >= outage_s
        assert source.health().connected and source.health().reconnects == 1
        assert _messages(caplog, "the camera answers again")
    finally:
        source.close()
        cam.close()
    assert consumer.ended()


@pytest.mark.unit
def test_a_camera_that_answers_but_refuses_the_stream_is_not_hammered(caplog):
    """The port answers (so no probing) but every open fails: full opens follow the backoff only."""
    accepted: list[float] = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def refuse() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=refuse, daemon=True).start()
    caplog.set_level(logging.INFO, logger="streamdet.live")
    source = NetworkSource(f"http://127.0.0.1:{port}/v.mjpg",
                           SourceConfig(open_timeout=2, reconnect_initial=0.5, reconnect_max=1.0))
    try:
        source.open()
        reader = threading.Thread(target=source.feed, args=(lambda frame: True,), daemon=True)
        reader.start()
        wait_for(lambda: source.health().attempt >= 4, 20, "four failed full opens")
        attempts = source.health().attempt
        started = accepted[0]
        span = time.monotonic() - started
    finally:
        source.close()
        server.close()
    # One probe plus FFmpeg's connection(s) per attempt; a probe loop would add four a second.
    per_attempt = len([t for t in accepted if t <= started + span]) / (attempts + 1)
    assert per_attempt <= 3, (len(accepted), attempts, span)
    reader.join(timeout=2)
    assert not reader.is_alive()


def test_live_pipeline_drops_old_frames_and_stops_on_sigint(camera, tmp_path, model_cache):
    """A camera faster than a deliberately slow consumer: frames are dropped, never queued."""
    js, summary = tmp_path / "live.jsonl", tmp_path / "summary.json"
    url = f"http://user:topsecret@127.0.0.1:{camera.port}/video.mjpg"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdet", "run", "--source", url, "--model", str(pedestrian_pb()),
         "--json", str(js), "--summary-json", str(summary), "--output", str(tmp_path / "live.mp4"),
         "--hint", "LATENCY", "--nireq", "1", "--threads", "1"],
        env=cli_env(model_cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    # Long enough for a slow consumer to fall behind a 50 fps camera many times over.
    wait_for(lambda: js.exists() and js.read_text().count("\n") >= 60, 60, "60 frames from the camera")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "topsecret" not in stderr and "topsecret" not in js.read_text() and "topsecret" not in summary.read_text()
    records = [json.loads(line) for line in js.read_text().splitlines()]
    assert len(records) > 20
    report = json.loads(summary.read_text())
    source = report["sources"][0]
    assert source["frames_read"] == source["frames_processed"] + source["frames_dropped"]
    # Newest-frame policy: what is shown is at most about one inference old, however long the run.
    assert source["frame_age"]["p95_ms"] < 250
    assert video_props(tmp_path / "live.mp4")[0] == len(records)


def test_cameras_that_hang_on_open_do_not_hold_up_the_other_sources(tmp_path, pedestrian_detector):
    """Two 'cameras' accept the connection and never answer: they open side by side, not one after the other."""
    from streamdet.config.sections import Config
    from streamdet.pipeline import Pipeline

    silent = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    try:
        urls = [f"rtsp://127.0.0.1:{s.getsockname()[1]}/live" for s in silent]
        config = Config(sources=[*urls, str(clip("bikes"))])
        config.display.show = "no"
        config.logging.status_interval = 0
        config.source.open_timeout = 4.0
        config.output.json = str(tmp_path / "{name}.jsonl")
        t0 = time.monotonic()
        first_file_frame = None
        with Pipeline(config, detector=pedestrian_detector) as pipeline:
            for result in pipeline.results():
                if result.source == "bikes" and first_file_frame is None:
                    first_file_frame = time.monotonic() - t0
                    pipeline.stop("test done")
        # One after the other would be at least 2 x 4 s before the file starts.
        assert first_file_frame is not None and first_file_frame < 7.0, first_file_frame
        assert time.monotonic() - t0 < 12
    finally:
        for s in silent:
            s.close()


@pytest.mark.unit
def test_input_fps_is_measured_afresh_after_a_reconnect():
    cam = MjpegCamera(fps=50)
    source = NetworkSource(f"http://127.0.0.1:{cam.port}/video.mjpg",
                           SourceConfig(open_timeout=5, read_timeout=2, reconnect_initial=0.1))
    try:
        source.open()
        consumer = FrameConsumer(source)
        consumer.wait_frames(40, 10)
        assert source.health().input_fps > 30
        cam.close()
        cam = MjpegCamera(fps=10, port=cam.port)  # back at once, at another rate: the old one must not linger
        # Eight frames after the loss (0.8 s, well inside the meter's 2 s window): only they are measured.
        back = wait_for(lambda: next((k for k, f in enumerate(list(consumer.frames)) if f.gap_ms is not None), None),
                        10, "the first frame after the loss")
        consumer.wait_frames(back + 9, 10)
        assert source.health().connected
        assert source.health().input_fps == pytest.approx(10, rel=0.25)
    finally:
        source.close()
        cam.close()


def _silent_port() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose backlog is full drops further SYNs: a connect to it hangs until its timeout."""
    server = socket.create_server(("127.0.0.1", 0), backlog=0)
    queued = [socket.socket() for _ in range(3)]
    for sock in queued:
        sock.setblocking(False)
        sock.connect_ex(server.getsockname())
    return server, queued


@pytest.mark.unit
def test_a_port_that_never_answers_counts_towards_reconnect_attempts(caplog):
    server, queued = _silent_port()
    caplog.set_level(logging.INFO, logger="streamdet.live")
    source = NetworkSource(f"rtsp://127.0.0.1:{server.getsockname()[1]}/live",
                           SourceConfig(reconnect_initial=0.1, reconnect_max=0.2, reconnect_attempts=3))
    try:
        frames = []
        source.feed(lambda frame: frames.append(frame) or True)  # returns once reconnecting gives up
        assert frames == []
        assert source.health().attempt == 3 and "(timed out)" in source.health().last_error
        assert _messages(caplog, "giving up after 3 attempts (nothing answers")
    finally:
        source.close()
        server.close()
        for sock in queued:
            sock.close()


@pytest.mark.unit
def test_stop_does_not_wait_for_a_probe_in_progress(caplog):
    server, queued = _silent_port()
    port = server.getsockname()[1]
    caplog.set_level(logging.INFO, logger="streamdet.live")
    source = NetworkSource(f"rtsp://127.0.0.1:{port}/live", SourceConfig(reconnect_initial=0.1))
    source._PROBE_S = 3.0  # a slow probe (as a name lookup with no DNS server answering)
    reader = threading.Thread(target=source.feed, args=(lambda frame: True,))
    try:
        reader.start()
        wait_for(lambda: _messages(caplog, "reconnect attempt 1 failed (nothing answers"), 10, "a probe timing out")
        time.sleep(0.3)  # past the 0.1 s backoff: the next probe has started and runs for 3 s
        t0 = time.monotonic()
        source.stop()
        reader.join(timeout=5)
        assert not reader.is_alive() and time.monotonic() - t0 < 0.5
    finally:
        source.close()
        server.close()
        for sock in queued:
            sock.close()
