"""The bench's synthetic inputs: a clip repeated, frames from memory (as a file or a camera), web viewers."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np

from ..config.sections import SourceConfig
from ..sources import Frame, Source, SourceInfo, VideoFileSource


class Repeated(Source):
    """A clip played over and over until `total` frames have been read."""

    def __init__(self, path: Path, total: int, decode_threads: int = 0):
        self._inner = VideoFileSource(path, SourceConfig(loop=True, decode_threads=decode_threads))
        self.name = self._inner.name
        self.total = total
        self._read = 0

    def open(self) -> SourceInfo:
        info = self._inner.open()
        return SourceInfo(info.width, info.height, info.fps, self.total, live=False)

    def read(self) -> Frame | None:
        if self._read >= self.total:
            return None
        self._read += 1
        return self._inner.read()

    def close(self) -> None:
        self._inner.close()


class Memory(Source):
    """The clip's frames, decoded beforehand, handed out `total` times.

    With `fps` it is a camera faster than inference: a real camera delivers at
    its frame rate, so its decoding costs a few percent of a core, while
    decoding a file flat out to outrun inference would take a whole core from
    inference and measure that contention instead of the newest-frame policy.
    Like a camera, it skips the frames whose time passed while nobody read.
    Without `fps` it is a file with free decoding: what the pipeline itself
    costs, decoding aside.
    """

    def __init__(self, frames: list[np.ndarray], total: int, fps: float | None = None):
        self.name = "camera" if fps else "memory"
        self.live = fps is not None
        self._frames = frames
        self._period = 1.0 / fps if fps else 0.0
        self.total = total
        self._slot = 0
        self._read = 0
        self._t0 = 0.0

    def open(self) -> SourceInfo:
        height, width = self._frames[0].shape[:2]
        fps = 1.0 / self._period if self._period else None
        return SourceInfo(width, height, fps, None if self.live else self.total, live=self.live)

    def read(self) -> Frame | None:
        if self._read >= self.total:
            return None
        if self._period:
            now = time.perf_counter()
            if self._read == 0:
                self._t0 = now
            self._slot = max(self._slot, int((now - self._t0) / self._period))
            due = self._t0 + self._slot * self._period
            if due > now:
                time.sleep(due - now)
        image = self._frames[self._slot % len(self._frames)]
        frame = Frame(image=image, index=self._slot, pts_ms=None, captured=time.monotonic())
        self._slot += 1
        self._read += 1
        return frame

    def close(self) -> None:
        pass


class Viewers:
    """MJPEG viewers of the web view on loopback: each a socket and a thread that reads and throws away."""

    def __init__(self, url: str, path: str, count: int):
        host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
        self._socks = []
        self.received = 0
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            self._socks.append(sock)
        self._threads = [threading.Thread(target=self._drain, args=(s,), daemon=True) for s in self._socks]
        for thread in self._threads:
            thread.start()

    def _drain(self, sock: socket.socket) -> None:
        buffer = bytearray(1 << 16)
        try:
            while (n := sock.recv_into(buffer)) > 0:
                self.received += n
        except OSError:
            pass  # closed at the end of the run

    def close(self) -> None:
        for sock in self._socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(timeout=10)
