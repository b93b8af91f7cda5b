"""systemd's notify protocol (`Type=notify`): the datagrams a run sends to `$NOTIFY_SOCKET`, read from a real
unix datagram socket the test binds: READY=1 once the run is put together and the web view answers, STATUS
with the cameras by name, WATCHDOG=1 while the output loop goes round (also while every camera is away),
silent while the loop hangs, and STOPPING=1 at the end. Against a real camera (MJPEG on loopback) and the
real model, as a real process under a real signal, and through the Python API with the caller's own stage
held on an Event.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from clirun import cli_env
from helpers import LineReader, MjpegCamera, free_port, run_alongside
from media import pedestrian_pb
from streamdet.cli.systemd import FRESH_S, Notifier, status_line
from streamdet.config.loader import load_config
from streamdet.measures.figures import RunStatus, SourceStatus
from streamdet.pipeline import Pipeline

WATCHDOG_USEC = 400_000  # a ping every 0.2 s: small, so a stop in them shows within a second or two


class NotifySocket:
    """The service manager's end: a bound unix datagram socket, each datagram kept with when it came."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.address = address
        self.got: list[tuple[float, list[str]]] = []

    def _take(self, until: float) -> bool:
        self.sock.settimeout(max(0.001, until - time.monotonic()))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return False
        self.got.append((time.monotonic(), data.decode().split("\n")))
        return True

    def wait(self, line: str, timeout: float, count: int = 1) -> list[str]:
        """Wait for the `count`th datagram holding `line`, counting those that come from now on."""
        deadline, index, seen = time.monotonic() + timeout, len(self.got), 0
        while True:
            while index < len(self.got):
                lines = self.got[index][1]
                index += 1
                if line in lines:
                    seen += 1
                    if seen >= count:
                        return lines
            if not self._take(deadline):
                raise AssertionError(f"no {count} x {line!r} within {timeout:g} s; got {self.got[-20:]}")

    def silence(self, line: str, quiet_s: float, timeout: float) -> float:
        """Wait until `line` has not come for `quiet_s` seconds; when it came last (the silence's start)."""
        deadline = time.monotonic() + timeout
        last = max((t for t, lines in self.got if line in lines), default=time.monotonic())
        while time.monotonic() < deadline:
            if not self._take(min(deadline, last + quiet_s)):
                if time.monotonic() >= last + quiet_s:
                    return last
                continue
            t, lines = self.got[-1]
            if line in lines:
                last = t
        raise AssertionError(f"{line!r} never stopped for {quiet_s:g} s within {timeout:g} s")

    def lines(self, prefix: str) -> list[str]:
        return [x for _, lines in self.got for x in lines if x.startswith(prefix)]

    def close(self) -> None:
        self.sock.close()


def _source(name: str, state: str, live: bool = True) -> SourceStatus:
    return SourceStatus(name=name, url=f"rtsp://***:***@10.0.0.1/{name}", live=live, state=state, width=64,
                        height=48, input_fps=None, processed_fps=None, frames_processed=0, dropped=0,
                        latency_ms=None, reconnects=0)


@pytest.mark.unit
def test_the_status_line_names_cameras_by_state_never_by_url():
    status = RunStatus(uptime_s=1, frames=0, sources=[_source("door", "online"), _source("yard", "offline"),
                                                      _source("gate", "online")])
    assert status_line(status) == "3 cameras: 2 online, 1 offline (yard)"
    one = RunStatus(uptime_s=1, frames=0, sources=[_source("clip", "starting", live=False)])
    assert status_line(one) == "1 source: 1 starting (clip)"


@pytest.mark.unit
def test_an_abstract_socket_gets_reloading_with_the_monotonic_time_and_stopping_once():
    address = f"@streamdet-test-{os.getpid()}-{time.monotonic_ns()}"
    notify = NotifySocket(address)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": address})
        before = time.monotonic_ns() // 1000
        notifier.reloading()
        lines = notify.wait("RELOADING=1", 5)
        usec = int(next(x for x in lines if x.startswith("MONOTONIC_USEC="))[15:])
        assert before <= usec <= time.monotonic_ns() // 1000
        notifier.ready()
        notify.wait("READY=1", 5)
        notifier.stopping()
        notifier.stopping()  # a signal, then the end: said once
        notifier.ready()  # a datagram after it, so a second STOPPING would have come before this one
        notify.wait("READY=1", 5)
        assert notify.lines("STOPPING=1") == ["STOPPING=1"]
    finally:
        notify.close()


@pytest.mark.unit
def test_the_watchdog_is_fed_only_when_it_is_this_process_s():
    base = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    assert Notifier(base).watchdog_s == 0.4
    assert Notifier({**base, "WATCHDOG_PID": str(os.getpid())}).watchdog_s == 0.4
    assert Notifier({**base, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_s is None  # a parent's, not ours
    assert Notifier({"WATCHDOG_USEC": str(WATCHDOG_USEC)}).watchdog_s is None  # no socket: nothing is sent


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.services
def test_a_run_tells_systemd_ready_status_watchdog_and_stopping(tmp_path, model_cache):
    camera = MjpegCamera(fps=10)
    notify = NotifySocket(str(tmp_path / "notify"))
    port = free_port()
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"sources:\n  - {{name: door, url: 'http://127.0.0.1:{camera.port}/video'}}\n"
                        f"source: {{read_timeout: 1.0}}\nweb: {{listen: '127.0.0.1:{port}'}}\n")
    env = cli_env(model_cache, NOTIFY_SOCKET=notify.address, WATCHDOG_USEC=str(WATCHDOG_USEC))
    proc = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "--config", str(settings),
                             "--model", str(pedestrian_pb())], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    err = LineReader(proc.stderr)
    try:
        ready = notify.wait("READY=1", 90)
        assert _get(f"http://127.0.0.1:{port}/healthz") in (200, 503)  # READY came with the web view listening
        assert "STATUS=1 camera: 1 starting (door)" in ready
        notify.wait("STATUS=1 camera: 1 online", 30)
        notify.wait("WATCHDOG=1", 10, count=5)
        camera.close()  # every camera away: the loop still goes round, so the watchdog is still fed
        notify.wait("STATUS=1 camera: 1 offline (door)", 30)
        notify.wait("WATCHDOG=1", 5, count=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        camera.close()
    notify.wait("STOPPING=1", 5)
    notify.close()
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err.text(), err.text()
    statuses = notify.lines("STATUS=")
    assert not any("127.0.0.1" in s or "http" in s for s in statuses), statuses  # names, never URLs


@pytest.mark.services
def test_the_watchdog_stops_while_the_output_loop_hangs_and_status_goes_on(tmp_path, pedestrian_detector):
    """The caller's own stage (the Python API's on_result, run in the output loop) blocks on an Event the test
    holds: WATCHDOG=1 stops within the freshness limit, STATUS still follows the camera going away, and
    once released the pings come back."""
    camera = MjpegCamera(fps=10)
    address = f"@streamdet-test-{os.getpid()}-{time.monotonic_ns()}"
    notify = NotifySocket(address)
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"sources:\n  - {{name: door, url: 'http://127.0.0.1:{camera.port}/video'}}\n"
                        "source: {read_timeout: 1.0}\ndisplay: {show: 'no'}\nlogging: {status_interval: 0}\n")
    config = load_config(settings)
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    hold, held, release = threading.Event(), threading.Event(), threading.Event()
    found: dict[str, float] = {}

    def stage(_result) -> None:
        if hold.is_set() and not release.is_set():
            held.set()
            release.wait(60)

    def work(_pipeline) -> None:
        try:
            notify.wait("READY=1", 30)
            notify.wait("WATCHDOG=1", 10, count=5)
            hold.set()
            assert held.wait(10), "the output loop never reached the held stage"
            found["held"] = time.monotonic()
            found["last"] = notify.silence("WATCHDOG=1", quiet_s=1.5, timeout=FRESH_S + 5)
            camera.close()  # the loop is stuck, yet the notifier still reads the run's status
            notify.wait("STATUS=1 camera: 1 offline (door)", 30)
            assert max(t for t, lines in notify.got if "WATCHDOG=1" in lines) == found["last"]
        finally:
            release.set()
        notify.wait("WATCHDOG=1", 5, count=3)  # released: the loop goes round again (the camera away)

    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline, notifier.watch(pipeline):
            run_alongside(pipeline, work, stage)
    finally:
        release.set()
        camera.close()
    notify.wait("STOPPING=1", 5)
    notify.close()
    # Fed until the heartbeat was FRESH_S old (plus a ping's interval and the scheduler's), then not at all.
    assert found["last"] - found["held"] <= FRESH_S + 0.5, found
    print(f"\nwatchdog: last ping {found['last'] - found['held']:.2f} s after the loop stuck (limit {FRESH_S} s)")
