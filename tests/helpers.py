"""Helpers every test area shares: decoding clips (the benches' decoder), free ports, waiting for events, loopback HTTP servers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from media import clip

from streamdet.bench.common import decode_clip as decode  # the clips' frames, as the benches decode them


def video_props(path: Path) -> tuple[int, int, int, float]:
    """(frames decoded, width, height, fps) of a recording: decoding every frame proves it plays to the end."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    return frames, width, height, fps


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSONL output; the last line must be whole."""
    text = path.read_text()
    assert text.endswith("\n"), "the last JSONL line is cut off"
    return [json.loads(line) for line in text.splitlines()]


def call_json(method: str, url: str, body=None, timeout: float = 10) -> tuple[int, dict]:
    """An HTTP request with a JSON body (or bytes as they are), and its status and JSON answer, errors too."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run_async(make: Callable[[], object]) -> object:
    """asyncio.run(make()) on a thread of its own: Playwright's sync API holds an event loop on the test's thread
    (in a worker that ran a browser test before); an error is raised on the caller's thread."""
    out: list = []

    def run() -> None:
        try:
            out.append(asyncio.run(make()))
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    assert out, "the coroutine did not end within 120 s"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def settings_from(folder: Path, name: str, text: str):
    """A settings file `name`.yaml in `folder` holding `text`, loaded and checked whole as a run loads it."""
    from streamdet.config.loader import load_config

    path = folder / f"{name}.yaml"
    path.write_text(text)
    config = load_config(path)
    config.check()
    return config


@contextmanager
def fed(write: Callable[[int], None], interval: float) -> Iterator[None]:
    """A source on a thread of its own for the block: `write(i)` for i = 1, 2, ... every `interval` seconds."""
    stop = threading.Event()

    def feed():
        i = 0
        while not stop.is_set():
            i += 1
            write(i)
            stop.wait(interval)  # the source's own rate

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        yield
    finally:
        stop.set()
        feeder.join()


def free_port() -> int:
    """A loopback port nothing listens on (a camera that is switched off)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.05):
    """Wait until `predicate()` is true (returning its value) or fail naming `what`; polls, never sleeps blind."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


class LoopbackHttpServer:
    """A threading HTTP server on 127.0.0.1 whose GET is `handle(request_handler)`; closes cleanly."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None], port: int = 0):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                try:
                    handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away: normal for a camera stream

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


class LineReader:
    """Collects a child process's stderr (or stdout) lines as they come, so a test can wait for one."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait(self, predicate: Callable[[str], bool], timeout: float, what: str, after: int = 0) -> int:
        """Index of the first line from `after` on that `predicate` accepts."""
        def found():
            return next((i + 1 for i, line in enumerate(self.lines[after:], after) if predicate(line)), 0)
        return wait_for(found, timeout, what) - 1

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "\n".join(self.lines)


class MjpegCamera:
    """An IP camera on loopback: multipart/x-mixed-replace JPEGs of a real clip, at `fps`."""

    def __init__(self, fps: float = 50.0, port: int = 0):
        self.jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in decode(clip("carphone_pristine"))]
        self.fps = fps
        self.running = threading.Event()
        self.running.set()
        self.connections = 0
        self.server = LoopbackHttpServer(self._stream, port)
        self.port = self.server.port

    def _stream(self, request) -> None:
        self.connections += 1
        request.send_response(200)
        request.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        request.end_headers()
        i = 0
        while self.running.is_set():
            jpeg = self.jpegs[i % len(self.jpegs)]
            request.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            i += 1
            time.sleep(1 / self.fps)  # the camera's frame rate, not a wait in the test

    def close(self) -> None:
        self.running.clear()
        self.server.close()


def write_clip(frames: list[np.ndarray], path: Path, fps: float = 25) -> Path:
    """Frames into a video file by OpenCV (MPEG-4 Part 2; the container from the extension)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for image in frames:
        writer.write(image)
    writer.release()
    return path


def h264_clip(frames: list[np.ndarray], path: Path, size: tuple[int, int]) -> Path:
    """Frames at `size`, H.264 in MP4 at 25 fps, a keyframe a second: as a camera's (sub-)stream is sent."""
    import av
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(25))
        (stream.width, stream.height), stream.pix_fmt = size, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "g": "25"}
        for image in frames:
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(small, format="bgr24")))
        out.mux(stream.encode(None))
    return path


def run_alongside(pipeline, work: Callable[[object], None], on_result: Callable[[object], None] | None = None) -> None:
    """Run `pipeline` on this thread while `work(pipeline)` runs on another (a camera's chaos, a check);
    when the work ends, the pipeline is stopped; an error in the work is raised here."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work(pipeline)
        except BaseException as exc:  # raised on the test's thread below
            errors.append(exc)
        finally:
            pipeline.stop("test done")

    controller = threading.Thread(target=guarded, daemon=True)
    controller.start()
    for result in pipeline.results():
        if on_result is not None:
            on_result(result)
    controller.join(timeout=10)
    if errors:
        raise errors[0]


class FrameConsumer:
    """Reads a live source on a thread of its own until it ends, keeping every frame, while the test takes the
    camera away and brings it back (the outage scaffold the camera tests share)."""

    def __init__(self, source):
        self.source = source
        self.frames: list = []
        self.outage_s: float | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        self.source.feed(lambda frame: self.frames.append(frame) or True)

    def wait_frames(self, count: int, timeout: float) -> None:
        wait_for(lambda: len(self.frames) >= count, timeout, "frames from the camera")

    def wait_outage(self, outage_s: float) -> None:
        """Until the loss is noticed and the source has been without its camera for `outage_s`."""
        wait_for(lambda: not self.source.health().connected, 10, "the loss to be noticed")
        wait_for(lambda: (self.source.health().offline_s or 0) >= outage_s, outage_s + 10, f"a {outage_s} s outage",
                 poll=0.1)
        self.outage_s = outage_s

    def first_after(self, back: float, timeout: float, camera: str) -> tuple[object, float]:
        """The first frame captured after `back` (time.monotonic() when the camera accepted connections again)
        and how many seconds after it; the figure is printed (`-s` shows it)."""
        first = wait_for(lambda: next((f for f in list(self.frames) if f.captured > back), None), timeout,
                         "frames after the return")
        recovery = first.captured - back
        print(f"\n{camera} off for {self.outage_s} s: first frame {recovery * 1000:.0f} ms after it accepted "
              f"connections again (gap {first.gap_ms / 1000:.1f} s)")
        return first, recovery

    def ended(self, timeout: float = 5) -> bool:
        """Whether the thread ends within `timeout` (the source closed or gave up: feed() returns)."""
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()


class Viewer:
    """An MJPEG viewer of the web view on a raw socket: counts the JPEGs it receives, or never reads (`stalled`)."""

    def __init__(self, url: str, path: str, stalled: bool = False):
        host, port = url.split("//")[1].rstrip("/").split(":")
        self.sock = socket.socket()
        if stalled:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        self.frames: list[float] = []
        self.status = None
        self.closed = threading.Event()
        if not stalled:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        data = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if self.status is None and b"\r\n" in data:
                    self.status = int(data.split(b" ", 2)[1])
                count = data.count(b"Content-Type: image/jpeg")
                self.frames.extend([time.monotonic()] * count)
                data = data[data.rfind(b"Content-Type: image/jpeg") + 1:] if count else data[-64:]
        except OSError:
            pass
        self.closed.set()

    def close(self) -> None:
        self.sock.close()
