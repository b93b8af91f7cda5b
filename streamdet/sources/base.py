"""What every source hands out: frames, a description of the stream, its health."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Frame:
    """One decoded picture.

    ``captured`` is ``time.monotonic()`` when decoding finished: every latency
    and frame-age figure is measured from it. ``gap_ms`` is set on the first
    frame after a live source lost its stream: how long it had no frames.
    ``file`` names the image a frame of an image folder came from.

    A network camera's frames also carry their time in the camera's stream (``camera_pts_ms``) and the
    connection they came through (a reconnect starts the stream's times afresh): the copy recording places
    their detections on its own timeline by these (a sub-stream's frames carry neither: placed by ``captured``).
    ``space`` is the (width, height) detections are given in
    when it is not the picture's: a camera detected on its sub-stream reports boxes in its main stream's
    pixels, which is what is recorded.
    """

    image: np.ndarray
    index: int
    pts_ms: float | None
    captured: float
    gap_ms: float | None = None
    file: str | None = None
    camera_pts_ms: float | None = None
    connection: int = 0
    space: tuple[int, int] | None = None
    # Decoded but not converted (under detect.fps nothing needs its pixels): `image` is a read-only view of
    # one black pixel at the picture's size, and the network never sees it (streamdet.scheduler).
    blank: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the coordinates detections are given in."""
        return self.space or (self.image.shape[1], self.image.shape[0])

    @property
    def stream_time(self) -> float:
        """Seconds: the position in a file (so a file gives the same result at any speed), else capture time."""
        return self.pts_ms / 1000 if self.pts_ms is not None else self.captured


def blank_image(width: int, height: int) -> np.ndarray:
    """A picture of this size that costs one pixel: black, read-only (drawing on it raises)."""
    return np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (height, width, 3))


@dataclass(frozen=True, slots=True)
class SourceInfo:
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    live: bool
    still: bool = False  # single images: no frame rate, no status plate
    codec: str | None = None    # network cameras: the stream's video codec (h264, hevc, ...)
    decoder: str | None = None  # network cameras: where it is decoded ("software", "cuda", ...)


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """A live source's state for status lines: connected, or offline since when and what comes next."""

    connected: bool
    input_fps: float | None
    reconnects: int
    offline_s: float | None = None     # how long it has had no frames
    attempt: int = 0                   # failed connection attempts in this outage
    next_try_s: float | None = None    # seconds until the next full open
    last_error: str | None = None


class Source(ABC):
    """A stream of frames, handed out by `feed`. Not thread-safe: one thread owns `feed()`.

    Constructing a source checks only what is cheap (the file exists, the URL
    is well formed), so every source can be checked before the model loads;
    `open()` does the slow part.
    """

    name: str
    display_name: str = ""  # for log lines: a path, or a URL with credentials masked

    @abstractmethod
    def open(self) -> SourceInfo:
        """Open the source or raise SourceError saying why it cannot be read."""

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream (sources read on the caller's thread)."""
        raise NotImplementedError

    def feed(self, deliver: Callable[[Frame], bool]) -> None:
        """Hand each frame to `deliver` until the stream ends, `deliver` returns False, or stop(); returns then.

        Here, on the caller's thread, frame by frame from `read()`. A live source calls `deliver` on its
        reader thread as each frame is decoded (streamdet.sources.live), one call at a time, in order: a
        frame then crosses no thread on its way in. An exception from `deliver` is raised by `feed`.
        """
        while (frame := self.read()) is not None and deliver(frame):
            pass

    @abstractmethod
    def close(self) -> None: ...

    def stop(self) -> None:
        """Ask a blocking `feed()` or `read()` in another thread to give up soon."""

    def health(self) -> SourceHealth | None:
        """Live sources say whether they are connected; files have nothing to say."""
        return None

    @property
    def input_paths(self) -> list[str]:
        """Local files or folders this source reads: no output may be written over them."""
        return []

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
