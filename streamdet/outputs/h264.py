"""The one encoder set-up every video written here uses (the annotated recording, event clips, `streamdet
render`, the benches): H.264 (or MPEG-4 Part 2) in 4:2:0 at even sides, times in milliseconds, a keyframe a
second; and `PacketEncoder`, frames to H.264 packets with no file (the clip stage's).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from ..config.sections import RecordingConfig

ENCODERS = {"h264": "libx264", "mp4v": "mpeg4"}
# Timestamps in milliseconds: a camera's frames come when they come, not on a fixed grid.
TIME_BASE = Fraction(1, 1000)
PIXEL_FORMAT = "yuv420p"  # what browsers and phones decode


@dataclass(frozen=True, slots=True)
class Packet:
    """One encoded H.264 frame."""

    pts: int          # ms on its camera's timeline
    key: bool
    data: bytes
    wall: float = 0.0  # when its frame was captured, epoch seconds (what a clip starting with it is named by)


def even_size(width: int, height: int) -> tuple[int, int]:
    """4:2:0 needs even sides of at least 2: an odd side loses a pixel row, a 1-pixel side is scaled to 2."""
    return max(2, width - width % 2), max(2, height - height % 2)


def fit_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame at the encoder's size: the odd last row or column cut off (4:2:0 wants even sides), or
    scaled when it is another size (a camera back at another resolution, a 1-pixel side)."""
    if image.shape[1::-1] == size:
        return image
    width, height = size
    if image.shape[1] >= width and image.shape[0] >= height and image.shape[1] - width < 2 and image.shape[0] - height < 2:
        return np.ascontiguousarray(image[:height, :width])
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def frame_rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1000)


def set_up(context: av.CodecContext, size: tuple[int, int], fps: float, codec: str, settings: RecordingConfig) -> None:
    """An encoder's settings, before it opens: `size` even (see `even_size`), `codec` a key of ENCODERS."""
    context.width, context.height = size
    context.pix_fmt = PIXEL_FORMAT
    context.time_base = TIME_BASE
    context.framerate = frame_rate(fps)
    # A keyframe about every second: a recording's fragment, the earliest a clip can start before its point.
    context.gop_size = max(1, round(fps))
    if codec == "h264":
        # zerolatency: no lookahead, so every frame leaves the encoder at once (a crash loses at most the
        # fragment being written, a clip's ring is never behind the frames); measured: files 5% larger.
        context.options = {"preset": settings.preset, "crf": str(settings.crf), "tune": "zerolatency"}
    else:
        context.options = {"qscale": "5"}


class PacketEncoder:
    """Frames of one camera to H.264 packets, each at its own time (ms); frames of another size are fitted."""

    def __init__(self, frame_size: tuple[int, int], fps: float, settings: RecordingConfig):
        self.size = even_size(*frame_size)
        self._codec = av.CodecContext.create(ENCODERS["h264"], "w")
        set_up(self._codec, self.size, fps, "h264", settings)
        self._codec.open()

    def encode(self, image: np.ndarray, pts_ms: int, wall: float = 0.0) -> list[Packet]:
        """The frame's packets (zerolatency: its own, at once), each with the frame's capture time `wall`."""
        frame = av.VideoFrame.from_ndarray(fit_frame(image, self.size), format="bgr24")
        frame.pts, frame.time_base = pts_ms, TIME_BASE
        return [Packet(p.pts, p.is_keyframe, bytes(p), wall) for p in self._codec.encode(frame)]
