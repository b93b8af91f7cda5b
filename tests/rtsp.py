"""Starting, killing and freezing the test RTSP server (tests/rtsp_server.py) from the tests."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

# gst-rtsp-server's Python bindings come from Debian (tests/apt-packages.txt),
# so the server runs under Debian's interpreter, not the venv's.
SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("rtsp_server.py")


class RtspServer:
    def __init__(self, clip: Path, *, port: int = 0, repeat: int = 1, user: str | None = None,
                 password: str | None = None, audio: bool = False, stagger: bool = False):
        self.clip, self.port, self.repeat, self.audio, self.stagger = clip, port, repeat, audio, stagger
        self.user, self.password = user, password
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> RtspServer:
        args = [SYSTEM_PYTHON, str(SCRIPT), "--clip", str(self.clip), "--port", str(self.port),
                "--repeat", str(self.repeat)]
        if self.user:
            args += ["--user", self.user, "--password", self.password or ""]
        if self.audio:
            args.append("--audio")
        if self.stagger:
            args.append("--stagger")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(self.proc.stdout.fileno(), 64)
            if not chunk:
                break
            line += chunk
        if not line.startswith(b"ready "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            pytest.fail(f"the test RTSP server did not start: {err.decode(errors='replace')[-600:]} "
                        "(install the packages in tests/apt-packages.txt; the CI script does)")
        self.port = int(line.split()[1])
        return self

    def url(self, user: str | None = None, password: str | None = None, mount: str = "/live") -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{mount}"

    def kill(self) -> float:
        """SIGKILL, as a camera losing power; returns time.monotonic() at the kill."""
        assert self.proc is not None
        at = time.monotonic()
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return at

    def freeze(self) -> float:
        """SIGSTOP: the connection stays open and goes silent, as a hung camera."""
        assert self.proc is not None
        at = time.monotonic()
        self.proc.send_signal(signal.SIGSTOP)
        return at

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()
