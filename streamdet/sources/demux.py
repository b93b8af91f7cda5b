"""A network camera read through PyAV (FFmpeg): its packets as they come, decoded where detection needs them.

PyAV rather than OpenCV, because OpenCV hands out decoded pictures only: the copy recording needs the
camera's own packets and their timestamps, hardware decoding needs FFmpeg's hwaccel, and a refused open
needs FFmpeg's error code (401, 404) to say why.

The packets a copy recording takes go through a `PacketTap`: bounded in bytes, never blocking the reader (a
disk that stalls must not stall the camera); when it is full, packets are dropped up to the next keyframe
and counted, so the recording has a gap, not a broken picture. The writer takes them in batches, a few
times a second, not one wake a packet: with dozens of cameras each wake is a trip through the
interpreter's lock.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available
from av.video.reformatter import VideoReformatter

from ..config.sections import HWACCELS
from ..errors import SourceError

log = logging.getLogger("streamdet.live")

# What MP4 holds and browsers play: the copy recording takes these as they are.
COPY_VIDEO = ("h264", "hevc")
COPY_AUDIO = ("aac", "mp3", "opus")
# How far to look for the first sound packet of ADTS AAC (a camera may declare sound and send none). The camera
# counts as opened only after it, so the caller bounds it by its open timeout too (`until`).
_PEEK_PACKETS = 250
_PEEK_SECONDS = 2.0
_TAP_BYTES = 64 << 20  # about 20 s of a 25 Mbit/s 4K stream: a disk may stall that long before packets go
_BATCH_BYTES = 1 << 20  # waiting past this, the writer is woken before its linger is up


def _hw_decoder(device: str, codec: str) -> av.CodecContext:
    """A decoder of `codec` on `device`; raises when the device cannot be opened or cannot decode it."""
    context = av.CodecContext.create(codec, "r", hwaccel=HWAccel(device, allow_software_fallback=False))
    if not context.is_hwaccel:
        raise SourceError(f"it has no {codec} decoder")
    return context


def _why_hw(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def pick_hwaccel(choice: str) -> str | None:
    """The device frames are decoded on (None: software), chosen before anything opens.

    `auto` tries each device this FFmpeg knows, in order, and settles for software with one line naming
    what was tried; an explicit device that cannot decode here is a SourceError. Tried with H.264, what
    cameras send; a camera whose codec the device lacks is decoded in software (see `decoder_for`).
    """
    if choice == "none":
        return None
    have = hwdevices_available()
    if choice != "auto":
        if choice not in have:
            raise SourceError(f"source.hwaccel {choice}: this FFmpeg (PyAV's) has no {choice} decoding (it has "
                              f"{', '.join(have) or 'none'}); use auto, none, or one of those")
        try:
            _hw_decoder(choice, "h264")
        except Exception as exc:
            raise SourceError(f"source.hwaccel {choice}: cannot decode on {choice} here ({_why_hw(exc)}); "
                              "use auto (falls back to software) or none") from None
        return choice
    tried = []
    for device in (d for d in HWACCELS[2:] if d in have):
        try:
            _hw_decoder(device, "h264")
            log.info("source.hwaccel auto: decoding on %s", device)
            return device
        except Exception as exc:
            tried.append(f"{device} ({_why_hw(exc)})")
    log.info("source.hwaccel auto: tried %s; decoding in software", ", ".join(tried) or "nothing (this FFmpeg "
             "has no vaapi, qsv or cuda)")
    return None


def decoder_for(video, device: str | None) -> tuple[av.CodecContext, str]:
    """The decoder for a connection's video (on `device` when it takes this codec) and its name for status."""
    if device is not None:
        try:
            context = _hw_decoder(device, video.codec_context.name)
            if video.codec_context.extradata:
                context.extradata = video.codec_context.extradata
            return context, device
        except Exception as exc:
            log.warning("source.hwaccel %s: cannot decode this camera's %s there (%s); decoding it in software",
                        device, video.codec_context.name, _why_hw(exc))
    return video.codec_context, "software"


def bgr_converter() -> Callable[[av.VideoFrame], np.ndarray]:
    """Decoded frames to BGR pixels, for one thread: the same swscale conversion as PyAV's
    `frame.to_ndarray(format="bgr24")` (and OpenCV's file reading), pixel for pixel, in about a quarter of
    its time, because the converter is made once and kept, not made afresh for every frame
    (docs/performance.md)."""
    reformatter = VideoReformatter()
    return lambda frame: reformatter.reformat(frame, format="bgr24").to_ndarray()


@dataclass(frozen=True)
class StreamFormat:
    """What a connection's stream is: enough to start an MP4 file for its packets on another thread.

    `header` is an MP4 header written from the camera's streams (their codec parameters, SPS/PPS and all):
    the recording's streams are made from it, since the camera's own stream objects die with the connection.
    """

    video_codec: str
    width: int
    height: int
    video_time_base: Fraction
    fps: float | None
    audio_codec: str | None
    audio_time_base: Fraction | None
    header: bytes = field(repr=False)

    def same_picture(self, other: StreamFormat) -> bool:
        """Whether another connection's packets can go on in the same file."""
        return (self.video_codec, self.width, self.height, self.audio_codec) == (
            other.video_codec, other.width, other.height, other.audio_codec)


def stream_format(video, sound: Sound | None) -> StreamFormat | None:
    """The format of a connection's streams, or None when MP4 cannot hold its video as it is."""
    if video.codec_context.name not in COPY_VIDEO:
        return None
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}) as header:
        header.add_stream_from_template(video)
        if sound is not None:
            audio = header.add_stream_from_template(sound.stream)
            if sound.config is not None:
                audio.codec_context.extradata = sound.config
        header.start_encoding()
    rate = video.average_rate or video.guessed_rate
    audio = sound.stream if sound is not None else None
    return StreamFormat(
        video_codec=video.codec_context.name, width=video.codec_context.width, height=video.codec_context.height,
        video_time_base=video.time_base, fps=float(rate) if rate and 0 < rate < 1000 else None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        audio_time_base=audio.time_base if audio is not None else None, header=buffer.getvalue())


@dataclass(frozen=True)
class Sound:
    """A camera's sound as the copy takes it."""

    stream: object
    config: bytes | None = None  # read from ADTS (see `copyable_sound`): each packet loses its ADTS header

    def data(self, packet) -> bytes:
        raw = bytes(packet)
        return raw[_adts_header_size(raw):] if self.config is not None else raw


def copyable_sound(container, packets: Iterator, until: float = math.inf) -> tuple[Sound | None, str | None, list]:
    """The camera's first sound MP4 can hold, or why none; and the packets read from `packets` to find out.

    G.711 from a camera cannot be held. AAC from HLS or MPEG-TS comes in ADTS form: each packet carries its
    own header and the stream no configuration, which an MP4 header needs before the first packet; it is
    read from the first sound packet, so the packets up to it are read here (and handed back), until 250
    packets, 2 s or `until` (time.monotonic()), whichever comes first.
    """
    why = None
    for stream in container.streams.audio:
        name = stream.codec_context.name
        if name not in COPY_AUDIO:
            why = why or f"MP4 cannot hold its {name} sound as it is"
        elif name == "aac" and not stream.codec_context.extradata:
            held = []
            deadline = min(time.monotonic() + _PEEK_SECONDS, until)
            for packet in packets:
                held.append(packet)
                if packet.stream_index == stream.index and packet.size:
                    config = adts_config(bytes(packet))
                    if config is None:
                        return None, "its AAC sound has neither a configuration nor ADTS headers", held
                    return Sound(stream, config), None, held
                if len(held) >= _PEEK_PACKETS or time.monotonic() > deadline:
                    break
            return None, f"no sound packet came with its first {len(held)} packets", held
        else:
            return Sound(stream), None, []
    return None, why, []


def _adts_header_size(data: bytes) -> int:
    """7, or 9 with a CRC; 0 when `data` does not start with an ADTS header (sync word, layer 0)."""
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF6 != 0xF0:
        return 0
    return 7 if data[1] & 1 else 9


def adts_config(data: bytes) -> bytes | None:
    """The AudioSpecificConfig (ISO 14496-3) an ADTS frame's header describes; None when `data` is not
    one ADTS frame of a single raw block with its channels given (what MP4 can take header-less)."""
    if not _adts_header_size(data) or data[6] & 3:
        return None
    profile, rate, channels = data[2] >> 6, (data[2] >> 2) & 0xF, ((data[2] & 1) << 2) | (data[3] >> 6)
    if rate > 12 or channels == 0:
        return None
    return ((profile + 1) << 11 | rate << 7 | channels << 3).to_bytes(2, "big")


def to_lengths(data: bytes) -> bytes:
    """H.264/H.265 from start codes (Annex B, as cameras send it) to 4-byte lengths (as MP4 holds it).

    Emulation prevention keeps 00 00 01 out of a NAL unit's payload, so splitting on it is exact.
    """
    at = data.find(b"\0\0\1")
    if at < 0 or at > 1 or data[:at].strip(b"\0"):
        return data  # already length-prefixed
    out = bytearray()
    at += 3
    while True:
        end = data.find(b"\0\0\1", at)
        # A NAL unit never ends in a zero byte: zeros before a start code belong to it (a 4-byte start code).
        nal = data[at:] if end < 0 else data[at:end].rstrip(b"\0")
        if nal:
            out += len(nal).to_bytes(4, "big") + nal
        if end < 0:
            return bytes(out)
        at = end + 3


@dataclass(frozen=True, slots=True)
class CameraPacket:
    connection: int
    audio: bool
    data: bytes
    pts: int | None
    dts: int | None
    key: bool
    arrived: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class Connected:
    """A new connection to the camera: its packets follow, on a timeline of their own."""

    connection: int
    format: StreamFormat | None  # None: MP4 cannot hold this stream's video as it is
    arrived: float


class PacketTap:
    """The packets of a camera's connections, from its reader thread to the copy recording's writer.

    `put` never blocks; `take_all` waits. At most `max_bytes` wait: past that, the video is dropped up to its
    next keyframe (audio with it), and the drops are counted.
    """

    def __init__(self, max_bytes: int = _TAP_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.dropped = 0
        self._items: deque[CameraPacket | Connected] = deque()
        self._cond = threading.Condition()
        self._skipping = False
        self._started = False  # a connection waits in the tap
        self._closed = False

    def connected(self, connection: int, fmt: StreamFormat | None) -> None:
        with self._cond:
            self._skipping = False
            self._items.append(Connected(connection, fmt, time.monotonic()))
            self._started = True  # the file may start at once
            self._cond.notify()

    def put(self, packet: CameraPacket) -> None:
        with self._cond:
            if self._skipping and not packet.audio and packet.key and self.bytes + len(packet.data) <= self.max_bytes:
                self._skipping = False
            if self._skipping or self.bytes + len(packet.data) > self.max_bytes:
                if not self._skipping:
                    log.warning("copy recording: the writer is %d MB behind; packets are dropped up to the next "
                                "keyframe (a gap in the recording)", self.bytes >> 20)
                self._skipping = True
                self.dropped += 1
                return
            self.bytes += len(packet.data)
            self._items.append(packet)
            if self.bytes >= _BATCH_BYTES:
                self._cond.notify()

    def take_all(self, linger: float) -> list[CameraPacket | Connected]:
        """Everything waiting, in order, taken after `linger` seconds, or sooner when a connection starts, a
        batch's bytes wait or the tap closes (then at once: empty when nothing is left)."""
        with self._cond:
            if not (self._closed or self._started or self.bytes >= _BATCH_BYTES):
                self._cond.wait(linger)
            items = list(self._items)
            self._items.clear()
            self.bytes, self._started = 0, False
            return items

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
