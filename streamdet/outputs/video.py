"""The annotated recording: H.264 (or MPEG-4 Part 2) in fragmented MP4, at the source's own timestamps."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import av
import numpy as np

from ..clock import wall_time
from ..config.sections import RecordingConfig
from ..detections import FrameResult
from ..errors import OutputError
from ..sources import SourceInfo
from .base import Output, WriterThread, as_output_error, write_error
from .h264 import ENCODERS, TIME_BASE, even_size, fit_frame, frame_rate, set_up
from .segments import Segments

log = logging.getLogger("streamdet.recording")

RECORDING_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov")
# Fragmented MP4: the index goes first and every keyframe starts a fragment written out at once,
# so a kill -9 or a power cut loses at most the fragment being written (about one second).
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
# The same for the other containers, measured by frames playable after kill -9 at frame 200 of bikes:
# FFmpeg's defaults (a 5 s Matroska cluster, a 512 KB write buffer) kept 162 (mkv) and 148 (avi);
# a cluster a second, written at once, keeps 187 like the MP4, and AVI written per frame all 200.
_MUXER_OPTIONS = {".mp4": MP4_OPTIONS, ".mov": MP4_OPTIONS,
                  ".mkv": {"cluster_time_limit": "1000", "flush_packets": "1"}, ".avi": {"flush_packets": "1"}}


class Encoder:
    """One video file being encoded (streamdet.outputs.h264's set-up); `add(image, pts_ms)` in time order, then
    `close()`. Frames of another size than the encoder's (`even_size` of `frame_size`) are fitted to it.

    Write errors (disk full, folder gone) are raised as OSError by FFmpeg's muxer.
    """

    def __init__(self, path: Path, frame_size: tuple[int, int], fps: float, settings: RecordingConfig):
        self.size = even_size(*frame_size)
        self._container = av.open(str(path), "w", options=_MUXER_OPTIONS[path.suffix.lower()])
        stream = self._container.add_stream(ENCODERS[settings.codec], rate=frame_rate(fps))
        set_up(stream.codec_context, self.size, fps, settings.codec, settings)
        stream.time_base = TIME_BASE
        self._stream = stream
        self._last_pts = -1

    def add(self, image: np.ndarray, pts_ms: int) -> None:
        frame = av.VideoFrame.from_ndarray(fit_frame(image, self.size), format="bgr24")
        frame.pts = max(pts_ms, self._last_pts + 1)  # strictly increasing, whatever the source said
        frame.time_base = TIME_BASE
        self._last_pts = frame.pts
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()


class Remuxer:
    """One H.264 MP4 written from packets already encoded (the clip stage's): `add(data, key, pts_ms)`, no encoding.

    The stream has no encoder of its own (one would write its own SPS/PPS, not the packets'): the MP4 muxer
    takes the SPS/PPS x264 puts before every keyframe for the file's header. The first packet is a keyframe.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: float):
        self._container = av.open(str(path), "w", options=_MUXER_OPTIONS[path.suffix.lower()])
        self._stream = self._container.add_mux_stream("h264", rate=frame_rate(fps), width=size[0], height=size[1])
        self._stream.time_base = TIME_BASE
        self._last_pts = -1

    def add(self, data: bytes, key: bool, pts_ms: int) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = max(pts_ms, self._last_pts + 1)  # zerolatency x264: no B-frames, dts = pts
        self._last_pts = packet.pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = key
        packet.stream = self._stream
        self._container.mux(packet)

    def close(self) -> None:
        self._container.close()


class VideoOutput(Output):
    """The annotated recording, at the source's size, each frame at its own time.

    File frames keep their container timestamps; camera frames are placed at
    the time they were captured, so dropped frames and outages keep their
    real length in the recording. Encoding runs on a writer thread owned by
    the output; its queue is bounded, so a writer that falls behind slows the
    pipeline down and never drops a frame. Files are written in place, in
    their crash-safe form (fragmented MP4).

    When the clip stage encoded the frame already (`result.encoded`), its packets are muxed as they are:
    a camera with event clips and a recording is encoded once.

    With `{start}` in the path the recording is a series of segments (a new
    one every `segment_seconds`, each starting on a keyframe), expired by
    `keep_hours` / `keep_gb`. With `on_error: continue` a camera's recording
    that fails to write is logged and started again in a new file later,
    instead of stopping the run.
    """

    shows_pictures = True
    _QUEUE = 8
    # Below this much free space the next frames cannot be stored: stop now, not at the end.
    _MIN_FREE = 1 << 20
    _RETRY_S = 5.0  # after a write error with on_error: continue

    def __init__(self, path: str | os.PathLike, info: SourceInfo, source_name: str,
                 settings: RecordingConfig = RecordingConfig()):
        self.template = str(path)
        self.path = Path(path)  # the file being written (the first segment's, once known)
        self.label = self.template
        self.info = info
        self.fps = info.fps if info.fps and info.fps > 0 else 25.0
        self.settings = settings
        self.source_name = source_name
        self._segments = Segments(self.template, settings) if "{start}" in self.template else None
        self._continue = settings.on_error == "continue" and info.live
        self._encoder: Encoder | Remuxer | None = None
        self._reuse = False                        # muxing the clip stage's packets, not encoding
        self._segment_pts = 0                      # the current file's first pts: files start at 0
        self._retry_at = 0.0
        self._size: tuple[int, int] = (0, 0)
        self._writer = WriterThread(f"writer-{source_name}", self._QUEUE)  # (image, pts ms, wall time, packets)
        self._error: BaseException | None = None
        self._first_captured: float | None = None
        self._closed = False

    @property
    def segments(self) -> Segments | None:
        """The series of files with `{start}` in the path (None for one file): the web view lists them."""
        return self._segments

    def _pts_ms(self, result: FrameResult) -> int:
        frame = result.frame
        if self._first_captured is None:
            self._first_captured = frame.captured
        if frame.pts_ms is not None and not self.info.live:
            return round(frame.pts_ms)
        if self.info.live:
            return round((frame.captured - self._first_captured) * 1000)
        return round(frame.index * 1000 / self.fps)  # pictures of a folder: one frame period each

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise self._failure()
        if result.frame.blank:
            # Left unconverted before this recording asked for pixels (a copy recording turned annotated for a
            # codec MP4 cannot hold, under detect.fps): the first frame or two; a black picture is no record.
            return
        image = result.frame.image
        pts_ms = self._pts_ms(result)
        wall = wall_time(result.frame.captured)
        if not self._writer.started:
            self._size = even_size(*image.shape[1::-1])
            self._reuse = bool(result.encoded)
            # The first file is opened here, not on the writer thread, so a bad path fails this call.
            try:
                self._open(pts_ms, wall)
            except OSError as exc:
                raise write_error(self.label, exc) from None
            self._writer.start(self._encode)
        self._writer.put((image, pts_ms, wall, result.encoded))

    def _open(self, pts_ms: int, wall: float) -> None:
        if self._segments is not None:
            self.path = self._segments.path_for(wall)
        self._encoder = (Remuxer(self.path, self._size, self.fps) if self._reuse
                         else Encoder(self.path, self._size, self.fps, self.settings))
        self._segment_pts = pts_ms

    def _due(self, pts_ms: int) -> bool:
        length = self.settings.segment_seconds * 1000
        return self._segments is not None and length > 0 and pts_ms - self._segment_pts >= length

    def _failure(self) -> OutputError:
        return as_output_error(self.label, self._error, "writing the video")

    def _expire(self) -> None:
        """The oldest segments expired, on the writer thread (never on the output thread: the run goes on)."""
        if self._segments is not None:
            self._segments.expire(self.path, time.time())

    def _finished(self) -> None:
        if self._segments is not None:
            self._segments.finish(self.path)

    def _encode(self) -> None:
        c0 = time.thread_time()
        next_check = 0.0
        try:
            self._expire()  # the first file was opened on the output thread
        except Exception as exc:
            self._error = exc
        for item in self._writer.items():
            if self._error is not None:
                continue  # keep taking frames so write() never blocks on a dead writer
            image, pts_ms, wall, packets = item
            try:
                if self._reuse and (self._encoder is None or self._due(pts_ms)) and not (packets and packets[0].key):
                    if self._encoder is None:
                        continue  # a file of packets starts on a keyframe (after a write error: within a second)
                    self._add(image, pts_ms, packets)  # the segment goes on to the next keyframe
                    continue
                if self._encoder is None or self._due(pts_ms):
                    if self._encoder is not None:
                        self._encoder.close()
                        self._encoder = None
                        self._finished()
                    elif time.monotonic() < self._retry_at:
                        continue  # the recording failed a moment ago: frames until the retry are not kept
                    self._open(pts_ms, wall)
                    self._expire()
                self._add(image, pts_ms, packets)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 1.0
                    stat = os.statvfs(self.path.parent)
                    if stat.f_bavail * stat.f_frsize < self._MIN_FREE:
                        raise OSError(28, os.strerror(28))
            except Exception as exc:
                if not self._continue:
                    self._error = exc
                else:
                    log.error("%s", self._failure_of(exc))
                    log.error("%s: recording again in a new file in %g s (on_error: continue)", self.source_name,
                              self._RETRY_S)
                    self._drop_encoder()
                    cut_to_whole_fragments(self.path)
                    self._finished()  # what is left of it is what it is: it expires with the rest
                    self._retry_at = time.monotonic() + self._RETRY_S
            self.cpu_s = time.thread_time() - c0

    def _add(self, image: np.ndarray, pts_ms: int, packets: tuple) -> None:
        if self._reuse:
            for packet in packets:
                self._encoder.add(packet.data, packet.key, pts_ms - self._segment_pts)
            return
        # Odd sides, or a camera that came back at another resolution: still the one file (Encoder fits it).
        self._encoder.add(image, pts_ms - self._segment_pts)

    def _failure_of(self, exc: BaseException) -> str:
        return str(as_output_error(self.label, exc, "writing the video"))

    def _drop_encoder(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            try:
                encoder.close()
            except Exception:
                pass  # the file is already failing; what was written before stays playable

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.finish()
        if self._encoder is not None:
            try:
                self._encoder.close()
                self._finished()
            except Exception as exc:
                self._error = self._error or exc
            self._encoder = None
        if self._segments is not None:
            self._segments.close()
        if self._error is not None:
            cut_to_whole_fragments(self.path)
            raise self._failure()


def cut_to_whole_fragments(path: Path) -> None:
    """After a failed write, a fragmented MP4 ends with its last whole fragment (a moof and its mdat), not
    part of the next one; other containers are left as they are. Shrinking a file needs no free space."""
    if path.suffix.lower() not in (".mp4", ".mov"):
        return
    try:
        with open(path, "r+b") as f:
            end = _whole_fragments_end(f)
            if end is not None and end < os.fstat(f.fileno()).st_size:
                f.truncate(end)
    except OSError:
        pass  # the folder is gone, or the file: the write error is the one to report


def _whole_fragments_end(f) -> int | None:
    """Where the last whole top-level box ends, a moof counting only with its mdat; None if not an MP4."""
    good = at = 0
    in_fragment = False
    while True:
        f.seek(at)
        head = f.read(16)
        if len(head) < 8:
            return good
        size, kind = int.from_bytes(head[:4], "big"), head[4:8]
        if size == 1 and len(head) == 16:
            size = int.from_bytes(head[8:16], "big")
        if at == 0 and kind != b"ftyp":
            return None
        if size < 8 or at + size > os.fstat(f.fileno()).st_size:
            return good  # a box cut off by the failed write (or a size still 0: being written)
        at += size
        if kind == b"moof":
            in_fragment = True
            continue
        if kind == b"mdat" or not in_fragment:
            good = at
        in_fragment = False
