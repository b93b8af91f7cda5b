"""The copy recording: a network camera's own packets (H.264/H.265, and audio) in fragmented MP4, with the
run's detections in a file beside each segment (streamdet.outputs.sidecar).

Nothing is decoded or encoded for it. The camera's reader hands every packet to a tap
(streamdet.sources.demux.PacketTap); the writer thread here muxes them into files named like the annotated
recording's (`{start}` segments, a new one every `segment_seconds` at a keyframe, expired by `keep_hours` /
`keep_gb` through the camera's record), flushed per fragment so a kill -9 loses at most about a second.

Times: each connection's packets keep their own spacing (the camera's timestamps); a reconnect goes on in
the same file after a gap as long as the outage was (the picture stops, the file does not), unless the
camera came back with another codec or size, which starts a new file. The detections of a frame are placed
on the file's timeline by the frame's own timestamp when it came through the recorded connection, else
(detected on a sub-stream) by when it was captured.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..config.sections import RecordingConfig
from ..detections import FrameResult
from ..errors import OutputError
from ..sources.demux import CameraPacket, Connected, PacketTap, StreamFormat, to_lengths
from .base import Output, as_output_error
from .segments import Segments
from .sidecar import sidecar_path, sidecar_record, sidecar_text
from .video import MP4_OPTIONS, cut_to_whole_fragments

log = logging.getLogger("streamdet.recording")

_VIDEO_TB = Fraction(1, 90000)  # the MP4's video clock: RTSP's own, so camera times are kept exactly
_LINES = 512                     # detections lines waiting for their packets; past this the oldest are written


@dataclass
class _Link:
    """One connection to the camera, placed on the recording's timeline."""

    id: int
    format: StreamFormat | None
    arrived: float
    first_dts: int | None = None     # the first video packet's dts (camera ticks)
    last_dts: int | None = None
    start_s: float = 0.0             # where that packet sits on the recording's timeline
    last_s: float = 0.0              # the newest video packet's place, and when it came
    last_arrived: float = 0.0

    def at(self, ticks: int, time_base: Fraction) -> float:
        return self.start_s + float((ticks - self.first_dts) * time_base)


class _File:
    """One MP4 being written, and its detections file."""

    def __init__(self, path: Path, fmt: StreamFormat, start_s: float, sidecar: int | None):
        self.path = path
        self.format = fmt
        self.start_s = start_s
        self.sidecar = sidecar
        self._container = av.open(str(path), "w", options=MP4_OPTIONS)
        with av.open(io.BytesIO(fmt.header)) as template:
            self.video = self._container.add_stream_from_template(template.streams.video[0])
            self.video.time_base = _VIDEO_TB
            self.audio = None
            if fmt.audio_codec is not None and template.streams.audio:
                self.audio = self._container.add_stream_from_template(template.streams.audio[0])
                self.audio_tb = Fraction(1, template.streams.audio[0].codec_context.sample_rate or 48000)
                self.audio.time_base = self.audio_tb
            self._container.start_encoding()
        self._last_dts = {"video": -1, "audio": -1}
        self.packets = 0

    def add(self, data: bytes, key: bool, pts_s: float, dts_s: float, audio: bool) -> None:
        stream, tb = (self.audio, self.audio_tb) if audio else (self.video, _VIDEO_TB)
        kind = "audio" if audio else "video"
        dts = max(round((dts_s - self.start_s) / tb), self._last_dts[kind] + 1)  # strictly increasing
        pts = max(round((pts_s - self.start_s) / tb), dts)
        self._last_dts[kind] = dts
        packet = av.Packet(data)
        packet.pts, packet.dts, packet.time_base, packet.is_keyframe = pts, dts, tb, key
        packet.stream = stream
        self._container.mux(packet)
        self.packets += 1

    def close(self) -> None:
        try:
            self._container.close()
        finally:
            if self.sidecar is not None:
                os.close(self.sidecar)
                self.sidecar = None


class CopyRecording(Output):
    """A camera's stream recorded as it came; `write` files each processed frame's detections beside it."""

    _MIN_FREE = 1 << 20
    _RETRY_S = 5.0

    def __init__(self, path: str | os.PathLike, tap: PacketTap, source_name: str, settings: RecordingConfig):
        self.template = str(path)
        self.path = Path(path)
        self.label = self.template
        self.source_name = source_name
        self.settings = settings
        self._tap = tap
        self._segments = Segments(self.template, settings) if "{start}" in self.template else None
        self._lines: collections.deque[tuple[int, float | None, float, dict]] = collections.deque()
        self._lines_lock = threading.Lock()
        self._links: dict[int, _Link] = {}
        self._link: _Link | None = None
        self._file: _File | None = None
        self._format_told: set[str] = set()
        self._error: BaseException | None = None
        self._continue = settings.on_error == "continue"
        self._retry_at = 0.0
        self._next_check = 0.0
        self._files = 0
        self._closed = False
        self.packets = 0
        self.lines = 0
        self._thread = threading.Thread(target=self._run, name=f"copy-{source_name}", daemon=True)
        self._thread.start()

    @property
    def segments(self) -> Segments | None:
        return self._segments

    # ------------------------------------------------------------ output thread

    def write(self, result: FrameResult) -> None:
        if self._error is not None and not self._continue:
            raise self._failure()
        frame = result.frame
        line = sidecar_record(result, frame.size, result.plate)
        with self._lines_lock:
            self._lines.append((frame.connection, frame.camera_pts_ms, frame.captured, line))

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        c0 = time.thread_time()
        try:
            while True:
                item = self._tap.take(0.5)
                if item is None:
                    if self._tap.closed:
                        break
                elif isinstance(item, Connected):
                    self._connected(item)
                else:
                    self._packet(item)
                self._write_lines(final=False)
                self.cpu_s = time.thread_time() - c0
            self._write_lines(final=True)
        except Exception as exc:
            self._error = exc
        finally:
            self.cpu_s = time.thread_time() - c0

    def _connected(self, item: Connected) -> None:
        before = self._link
        self._link = link = _Link(item.connection, item.format, item.arrived)
        self._links = {k: v for k, v in self._links.items() if k >= item.connection - 4}  # a few, for late lines
        self._links[item.connection] = link
        if before is not None and before.first_dts is not None:
            link.start_s = before.last_s  # moved on by the outage at its first packet
            link.last_s, link.last_arrived = before.last_s, before.last_arrived
        if item.format is None:
            self._tell_once("codec", "%s: the camera's video cannot go into MP4 as it is; the copy recording waits "
                            "for a stream it can hold", self.source_name)
        elif self._file is not None and not self._file.format.same_picture(item.format):
            log.info("%s: the camera came back as %s %dx%d; the copy recording goes on in a new file",
                     self.source_name, item.format.video_codec, item.format.width, item.format.height)
            self._close_file()

    def _packet(self, packet: CameraPacket) -> None:
        link = self._link
        if link is None or link.id != packet.connection or link.format is None:
            return
        fmt = link.format
        if packet.audio:
            if self._file is None or self._file.audio is None or link.first_dts is None or packet.pts is None:
                return
            # FFmpeg puts a connection's audio and video on one clock: the audio follows the video's start.
            at = link.start_s + float(packet.pts * fmt.audio_time_base - link.first_dts * fmt.video_time_base)
            if at >= self._file.start_s:
                self._guarded(lambda: self._file.add(packet.data, packet.key, at, at, audio=True))
            return
        # RTP gives no dts until the camera's reordering is known, and may give a first keyframe no time at
        # all: those follow the previous packet by a frame period (the muxer needs every packet's dts).
        if packet.dts is not None:
            dts = packet.dts
        elif link.last_dts is not None:
            dts = link.last_dts + max(1, round(1 / ((fmt.fps or 25.0) * fmt.video_time_base)))
        else:
            dts = packet.pts if packet.pts is not None else 0
        link.last_dts = dts
        if link.first_dts is None:
            link.first_dts = dts
            if link.last_arrived:  # after an outage: the gap as long as it was, at least a frame
                link.start_s += max(packet.arrived - link.last_arrived, 1.0 / (fmt.fps or 25.0))
        dts_s = link.at(dts, fmt.video_time_base)
        pts_s = link.at(packet.pts, fmt.video_time_base) if packet.pts is not None else dts_s
        link.last_s, link.last_arrived = dts_s, packet.arrived
        if self._file is None or (packet.key and self._due(pts_s)):
            if not packet.key:
                return  # a file starts on a keyframe
            # The file starts where its first picture shows (a keyframe's dts is earlier with B-frames).
            if self._file is not None:
                self._close_file(until=pts_s)
            if time.monotonic() < self._retry_at:
                return
            if not self._guarded(lambda: self._open(fmt, pts_s, packet.arrived)):
                return
        if self._guarded(lambda: self._file.add(to_lengths(packet.data), packet.key, pts_s, dts_s, audio=False)):
            self.packets += 1
            self._check_space()

    def _due(self, at_s: float) -> bool:
        length = self.settings.segment_seconds
        return self._segments is not None and length > 0 and at_s - self._file.start_s >= length

    def _open(self, fmt: StreamFormat, start_s: float, arrived: float) -> None:
        wall = time.time() - (time.monotonic() - arrived)
        if self._segments is not None:
            path = self._segments.path_for(wall)
        elif self._files == 0:
            path = self.path
        else:
            path = _next_free(self.path)  # the camera came back changed: the one file goes on in another
        sidecar = _create(sidecar_path(path), replace=self._segments is None and self._files == 0)
        if self._segments is not None and sidecar is not None:
            self._segments.record(sidecar_path(path), wall)
        self._file = _File(path, fmt, start_s, sidecar)
        self._files += 1
        self.path = path
        if self._segments is not None:
            self._segments.expire(path, time.time())

    def _close_file(self, until: float | None = None) -> None:
        """End the current file, its detections in first (up to `until`, where the next file starts)."""
        self._write_lines(final=until is None, until=until)
        file, self._file = self._file, None
        if file is not None:
            self._guarded(file.close)

    def _guarded(self, step: Callable[[], None]) -> bool:
        """Run one write step; a failure stops the recording (on_error: stop) or retries later in a new file."""
        try:
            step()
            return True
        except Exception as exc:
            if not self._continue:
                raise
            log.error("%s", self._failure_of(exc))
            log.error("%s: recording again in a new file in %g s (on_error: continue)", self.source_name, self._RETRY_S)
            file, self._file = self._file, None
            if file is not None:
                try:
                    file.close()
                except Exception:
                    pass  # the file is failing already; what was written stays playable
                cut_to_whole_fragments(file.path)
            self._retry_at = time.monotonic() + self._RETRY_S
            return False

    def _check_space(self) -> None:
        now = time.monotonic()
        if now < self._next_check or self._file is None:
            return
        self._next_check = now + 1.0
        stat = os.statvfs(self._file.path.parent)
        if stat.f_bavail * stat.f_frsize < self._MIN_FREE:
            self._guarded(lambda: _raise(OSError(28, os.strerror(28))))

    # --------------------------------------------------------------- detections

    def _write_lines(self, final: bool, until: float | None = None) -> None:
        """Each frame's line into the file its picture is in, once the packets have got that far.

        `final`: no more packets come for what waits (the file or the run ends); `until`: the next file starts
        there, and lines from there on wait for it.
        """
        out: list[str] = []
        with self._lines_lock:
            while self._lines:
                connection, pts_ms, captured, line = self._lines[0]
                at = self._place(connection, pts_ms, captured)
                if at is None and not final and len(self._lines) < _LINES:
                    break  # its packets have not come through yet
                if at is not None and until is not None and at >= until:
                    break
                self._lines.popleft()
                if at is not None and self._file is not None and at >= self._file.start_s - 0.001:
                    out.append(sidecar_text(line, max(0.0, at - self._file.start_s)))
        if out and self._file is not None and self._file.sidecar is not None:
            data = "".join(out).encode()
            self._guarded(lambda: _write_all(self._file.sidecar, data))
            self.lines += len(out)

    def _place(self, connection: int, pts_ms: float | None, captured: float) -> float | None:
        """Where a frame sits on the recording's timeline; None while the packets have not got there."""
        link = self._links.get(connection)
        if link is not None and pts_ms is not None and link.first_dts is not None and link.format is not None:
            at = link.start_s + pts_ms / 1000 - float(link.first_dts * link.format.video_time_base)
            return at if at <= link.last_s or link is not self._link else None
        current = self._link
        if current is None or current.first_dts is None:
            return None
        # Another stream's frame (a sub-stream): by when it was captured against when packets came.
        if captured > current.last_arrived:
            return None
        return current.last_s - (current.last_arrived - captured)

    # ------------------------------------------------------------------ the end

    def _tell_once(self, key: str, message: str, *args) -> None:
        if key not in self._format_told:
            self._format_told.add(key)
            log.warning(message, *args)

    def _failure_of(self, exc: BaseException) -> str:
        return str(as_output_error(self.label, exc, "writing the copy recording"))

    def _failure(self) -> OutputError:
        return as_output_error(self.label, self._error, "writing the copy recording")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tap.close()
        self._thread.join()
        if self._file is not None:
            try:
                self._close_file()
            except Exception as exc:
                self._error = self._error or exc
        if self._error is not None:
            cut_to_whole_fragments(self.path)
            raise self._failure()
        if self._tap.dropped:
            log.warning("%s: %d packets were dropped while the disk was behind (gaps in the recording)",
                        self.source_name, self._tap.dropped)


def _raise(exc: BaseException) -> None:
    raise exc


def _create(path: Path, replace: bool) -> int | None:
    """The detections file, new; `replace` where the run's output check allowed it (the one-file recording's).
    Otherwise a file of that name that exists already is left alone, and these detections are not written."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if replace else os.O_EXCL), 0o644)
    except FileExistsError:
        log.warning("%s exists already (not ours): this file's detections are not written", path)
        return None


def _next_free(path: Path) -> Path:
    n = 1
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return candidate
        except FileExistsError:
            n += 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
