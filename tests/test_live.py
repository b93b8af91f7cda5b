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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from media import clip, pedestrian_pb

from streamdet.errors import SourceError
from streamdet.live import LiveOptions, NetworkSource, mask_url, open_live
from streamdet.sources import open_source


class MjpegCamera:
    """An IP camera on loopback: multipart/x-mixed-replace JPEGs from a real clip, at `fps`."""

    def __init__(self, fps: float = 50.0, port: int = 0):
        cap = cv2.VideoCapture(str(clip("carphone_pristine")))
        self.jpegs = []
        while True:
            ok, image = cap.read()
            if not ok:
                break
            self.jpegs.append(cv2.imencode(".jpg", image)[1].tobytes())
        self.fps = fps
        self.running = threading.Event()
        self.running.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while outer.running.is_set():
                        jpeg = outer.jpegs[i % len(outer.jpegs)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n"
                        )
                        i += 1
                        time.sleep(1 / outer.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.running.clear()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def camera():
    cam = MjpegCamera()
    yield cam
    cam.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mask_url():
    assert mask_url("rtsp://admin:hunter2@10.0.0.5:554/stream1") == "rtsp://***:***@10.0.0.5:554/stream1"
    assert mask_url("http://user@cam.local/video.mjpg") == "http://***@cam.local/video.mjpg"
    assert mask_url("http://cam/video?user=a&password=hunter2&res=hd") == "http://cam/video?user=a&password=***&res=hd"
    assert mask_url("https://cam/live.m3u8?token=abc") == "https://cam/live.m3u8?token=***"
    assert mask_url("rtsp://[::1]:8554/live") == "rtsp://[::1]:8554/live"
    assert mask_url("rtsp://u:p@[::1]:8554/live") == "rtsp://***:***@[::1]:8554/live"


def test_no_camera_here_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match=r"no camera at index 0 \(/dev/video0 does not exist\)"):
        open_source("0")
    with pytest.raises(SourceError, match="no camera at /dev/video7"):
        open_source("/dev/video7")
    proc = streamdet("run", "--source", "0", "--model", str(pedestrian_pb()), env=cli_env(tmp_path))
    assert_one_line_error(proc, "no camera at index 0")


def test_mjpeg_ip_camera_frames_flow_and_credentials_stay_hidden(camera, caplog):
    url = f"http://viewer:s3cret@127.0.0.1:{camera.port}/video.mjpg"
    caplog.set_level(logging.DEBUG)
    source = open_live(url, open_timeout=5, read_timeout=2)
    assert "s3cret" not in source.name and "viewer" not in source.name
    info = source.open()
    assert (info.width, info.height) == (176, 144) and info.live
    frames = [source.read() for _ in range(30)]
    source.close()
    assert all(f is not None and f.image.shape == (144, 176, 3) for f in frames)
    assert [f.index for f in frames] == list(range(30))
    assert source.stats.frames_read == 30
    assert "s3cret" not in caplog.text


def test_nothing_listening_backs_off_as_configured_and_stops_promptly(caplog):
    port = _free_port()
    url = f"http://cam:pw123@127.0.0.1:{port}/video.mjpg"
    source = NetworkSource(url, LiveOptions(open_timeout=1, read_timeout=1, reconnect_initial=0.1, reconnect_max=0.4))
    caplog.set_level(logging.INFO, logger="streamdet.live")
    info = source.open()
    assert (info.width, info.height) == (0, 0)
    result = {}
    reader = threading.Thread(target=lambda: result.setdefault("frame", source.read()))
    reader.start()
    time.sleep(2.0)
    t0 = time.monotonic()
    source.stop()
    reader.join(timeout=2)
    assert not reader.is_alive() and time.monotonic() - t0 < 1.0
    assert result["frame"] is None
    waits = [float(r.getMessage().rsplit("in ", 1)[1].split(" s")[0]) for r in caplog.records if "next try in" in r.getMessage()]
    assert waits[:4] == [0.1, 0.2, 0.4, 0.4]
    assert all("pw123" not in r.getMessage() and f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)


def test_camera_dropping_mid_stream_reconnects_with_gap(tmp_path):
    cam = MjpegCamera()
    port = cam.port
    source = NetworkSource(f"http://127.0.0.1:{port}/v.mjpg",
                           LiveOptions(open_timeout=2, read_timeout=1, reconnect_initial=0.2, reconnect_max=0.5))
    source.open()
    assert all(source.read() is not None for _ in range(10))
    cam.close()
    t_kill = time.monotonic()
    back = {}

    def serve_again():  # the camera comes back on the same port a little later
        time.sleep(1.5)
        back["cam"] = MjpegCamera(port=port)

    threading.Thread(target=serve_again, daemon=True).start()
    frame = source.read()
    while frame is not None and frame.gap_ms is None:
        frame = source.read()  # frames already buffered before the kill
    recovered = time.monotonic() - t_kill
    source.close()
    back["cam"].close()
    assert frame is not None and frame.gap_ms > 500
    assert source.stats.reconnects >= 1
    assert recovered < 6


def test_live_pipeline_drops_old_frames_and_stops_on_sigint(camera, tmp_path):
    """A camera faster than a deliberately slow consumer: frames are dropped, never queued."""
    js, summary = tmp_path / "live.jsonl", tmp_path / "summary.json"
    url = f"http://user:topsecret@127.0.0.1:{camera.port}/video.mjpg"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdet", "run", "--source", url, "--model", str(pedestrian_pb()),
         "--json", str(js), "--summary-json", str(summary), "--output", str(tmp_path / "live.mp4"),
         "--hint", "LATENCY", "--nireq", "1", "--threads", "1"],
        env=cli_env(tmp_path / "cache"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (js.exists() and js.stat().st_size > 5000):
        time.sleep(0.2)
    time.sleep(3)
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
    cap = cv2.VideoCapture(str(tmp_path / "live.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(records)


def test_cameras_that_hang_on_open_do_not_hold_up_the_other_sources(tmp_path, pedestrian_xml):
    """Two 'cameras' accept the connection and never answer: they open side by side, not one after the other."""
    from streamdet.config import Config
    from streamdet.model import load
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
        with Pipeline(config, detector=load(pedestrian_xml)) as pipeline:
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
