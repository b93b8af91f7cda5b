"""Cameras that change under a run, against real RTSP cameras (gst-rtsp-server on loopback sending a real
clip's own H.264) and the real model: a `detect_url` camera whose main stream comes seconds after its
sub-stream (detections placed by when they were captured, zones and lines in the main stream's pixels), and a
camera back at another resolution (zones and lines given in fractions follow it, and so does /api/stats).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import av
import pytest

from helpers import decode, free_port, h264_clip, wait_for
from media import clip
from rtsp import RtspServer
from test_copy_recording import _run  # the real command in its own process, with its settings file
from streamdet.outputs.sidecar import read_sidecar, sidecar_path

LINE = "events: {lines: [{name: door, points: [[0.5, 0], [0.5, 1]]}]}\n"  # down the middle, in fractions

HALF = (88, 72)  # carphone at half size: a camera's sub-stream, or the camera back at a lower resolution


def _stop(proc: subprocess.Popen, *servers: RtspServer) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    for server in servers:
        server.close()


def _recorded_seconds(video: Path) -> float:
    with av.open(str(video)) as container:
        return max(float(f.time) for f in container.decode(video=0))


@pytest.mark.services
def test_detect_url_detections_are_placed_by_capture_time_when_the_main_stream_comes_later(tmp_path, model_cache):
    sub = RtspServer(h264_clip(decode(clip("carphone_pristine")), tmp_path / "sub.mp4", HALF), repeat=4).start()
    main = RtspServer(clip("carphone_pristine"), repeat=3, port=free_port())
    video = tmp_path / "cam.mp4"
    config = (f"sources:\n  - name: cam\n    url: {main.url()}\n    detect_url: {sub.url()}\n"
              "recording: {mode: copy}\nsource: {read_timeout: 2, open_timeout: 2}\n"
              "logging: {status_interval: 1}\n" + LINE)
    proc, err = _run(["--output", str(video)], model_cache, config, tmp_path)
    try:
        waiting = err.wait(lambda line: "waiting for the main stream (url)" in line, 30, "the wait for the main stream")
        # The sub-stream's own times run on while the main stream is away: three seconds of them at least.
        err.wait(lambda line: re.search(r"cam: OFFLINE for ([3-9]|\d\d+) s", line), 30,
                 "three seconds without the main stream", after=waiting)
        main.start()
        wait_for(lambda: sidecar_path(video).exists() and sidecar_path(video).read_text().count("\n") >= 50, 60,
                 "50 detections lines")
    finally:
        _stop(proc, main, sub)
    assert proc.returncode == 130 and "Traceback" not in err.text()
    lines = read_sidecar(sidecar_path(video))
    # Detection starts once the main stream is there, and so does the recording: the first line is within a
    # moment of the recording's start, not as far in as the sub-stream had run before the main stream came.
    assert lines[0].pts < 1.0, f"the first detections line is {lines[0].pts:.2f} s into the recording"
    assert lines[-1].pts <= _recorded_seconds(video) + 0.5
    # The line given in fractions is in the main stream's pixels (what is recorded), not the sub-stream's.
    assert all(line.size == (176, 144) for line in lines)
    assert lines[-1].scene["lines"]["door"]["points"] == [[88.0, 0.0], [88.0, 144.0]]


@pytest.mark.services
def test_zones_lines_and_the_stats_follow_a_camera_back_at_another_resolution(tmp_path, model_cache):
    small = h264_clip(decode(clip("carphone_pristine")), tmp_path / "small.mp4", HALF)
    server = RtspServer(clip("carphone_pristine"), repeat=4).start()
    video, port = tmp_path / "cam.mp4", free_port()
    proc, err = _run(["--source", server.url(), "--output", str(video), "--serve", f"127.0.0.1:{port}"], model_cache,
                     "recording: {mode: copy}\nsource: {read_timeout: 2, reconnect_initial: 0.5}\n" + LINE, tmp_path)
    back = None
    second = tmp_path / "cam-1.mp4"
    try:
        wait_for(lambda: sidecar_path(video).exists() and sidecar_path(video).read_text().count("\n") >= 10, 60,
                 "10 detections lines")
        server.kill()
        err.wait(lambda line: "stream lost" in line, 20, "the outage noticed")
        back = RtspServer(small, port=server.port, repeat=4).start()  # back at a lower resolution
        err.wait(lambda line: "came back as h264 88x72" in line, 30, "the new file announced")
        wait_for(lambda: sidecar_path(second).exists() and sidecar_path(second).read_text().count("\n") >= 10, 30,
                 "detections of the new file")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=10) as response:
            stats = json.loads(response.read())
    finally:
        _stop(proc, server, *([back] if back else []))
    assert proc.returncode == 130 and "Traceback" not in err.text()
    (source,) = stats["sources"]
    assert (source["width"], source["height"]) == (88, 72), "/api/stats shows the first size"
    before, after = read_sidecar(sidecar_path(video)), read_sidecar(sidecar_path(second))
    assert before[0].scene["lines"]["door"]["points"] == [[88.0, 0.0], [88.0, 144.0]]
    assert all(line.size == (88, 72) for line in after)
    assert after[-1].scene["lines"]["door"]["points"] == [[44.0, 0.0], [44.0, 72.0]], "the line stays in 176x144"
