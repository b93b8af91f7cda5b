"""The web view while a reload takes long: a camera added by PUT /api/config/sources/{name} that accepts the
connection and never answers holds the reload for its open timeout, off the server's loop; meanwhile the other
routes answer at once. The command in its own process, an MJPEG camera on loopback and a silent TCP listener.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.request

import pytest

from helpers import MjpegCamera, free_port, wait_for
from test_copy_recording import _run  # the real command in its own process, with its settings file
from test_reload import _names, _post

OPEN_TIMEOUT_S = 6


class SilentCamera:
    """Accepts connections and never says a word: an RTSP camera that hangs."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _timed_get(url: str) -> tuple[float, bytes]:
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=OPEN_TIMEOUT_S) as response:
        body = response.read()
    return time.monotonic() - t0, body


@pytest.mark.services
def test_a_camera_that_never_answers_added_by_put_does_not_hold_up_the_other_routes(tmp_path, model_cache):
    camera, silent, port = MjpegCamera(fps=5), SilentCamera(), free_port()
    settings = (f"sources:\n  - name: one\n    url: http://127.0.0.1:{camera.port}/one.mjpg\n"
                f"source: {{read_timeout: 3, open_timeout: {OPEN_TIMEOUT_S}}}\nlogging: {{status_interval: 1}}\n")
    proc, err = _run(["--serve", str(port)], model_cache, settings, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        err.wait(lambda line: line.startswith("streamdet: one: input"), 60, "one's status line")
        put: list[tuple[int, dict]] = []
        asking = threading.Thread(target=lambda: put.append(_post(f"{base}/api/config/sources/hung", "PUT", {
            "url": f"rtsp://127.0.0.1:{silent.port}/hung"})), daemon=True)
        started = time.monotonic()
        asking.start()
        wait_for(silent.accepted.is_set, 30, "the reload dialling the silent camera")
        answers = {route: _timed_get(base + route) for route in ("/api/stats", "/api/sources", "/healthz")}
        assert asking.is_alive(), "the PUT should still wait for the silent camera"
        for route, (seconds, _) in answers.items():
            print(f"\n{route} during the reload: {seconds * 1000:.0f} ms")
            assert seconds < 1.0, (route, seconds)
        assert [s["name"] for s in json.loads(answers["/api/stats"][1])["sources"]] == ["one"]
        asking.join(timeout=OPEN_TIMEOUT_S * 3 + 30)
        status, body = put[0]
        print(f"PUT of the silent camera answered after {time.monotonic() - started:.1f} s")
        assert status == 201 and body["reload"]["added"] == ["hung"], body  # away is no error: it retries
        assert _names(port) == ["one", "hung"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        camera.close()
        silent.close()
    assert proc.returncode == 130 and "Traceback" not in err.text(), err.text()
