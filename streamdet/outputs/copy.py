"""The copy recording: a network camera's own packets (H.264/H.265, and audio) in fragmented MP4, with the
run's detections in a file beside each segment (streamdet.outputs.sidecar).

Nothing is decoded or encoded for it. The camera's reader hands every packet to a tap
(streamdet.sources.demux.PacketTap); the writer thread here muxes them into files named like the annotated
recording's (`{start}` segments, a new one every `segment_seconds` at a keyframe, expired by `keep_hours` /
`keep_gb` through the camera's record), flushed per fragment so a kill -9 loses at most about a second.

Where packets and frames go in time is the timeline's (streamdet.outputs.timeline): an outage is a gap as long
as it was, and a camera back with another codec or size starts a new file. The detections lines are the
sidecar writer's (streamdet.outputs.sidecar_writer); this module tells it where each file starts and ends, and
writes its lines on the same thread, so a failure of either is handled one way (`on_error`).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from ..clock import wall_time
from ..config.sections import RecordingConfig
from ..detections import FrameResult
from ..errors import OutputError
from ..sources.demux import CameraPacket, Connected, PacketTap, StreamFormat, to_lengths
from .base import Output, as_output_error
from .segments import Segments
from .sidecar import sidecar_path
from .sidecar_writer import SidecarWriter
from .timeline import Timeline
from .video import MP4_OPTIONS, cut_to_whole_fragments

log = logging.getLogger("streamdet.recording")

_VIDEO_TB = Fraction(1, 90000)  # the MP4's video clock: RTSP's own, so camera times are kept exactly


class _File:
    """One MP4 being written: packets go in at their places on the timeline, from `start_s` on."""

    def __init__(self, path: Path, fmt: StreamFormat, start_s: float):
        self.path = path
        self.format = fmt
        self.start_s = start_s
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
        self._container.close()


class CopyRecording(Output):
    """A camera's stream recorded as it came; `write` files each processed frame's detections beside it."""

    _MIN_FREE = 1 << 20
    _RETRY_S = 5.0
    _LINGER_S = 0.25  # how long packets may wait in the tap for the writer: a batch per wake, not a packet

    def __init__(self, path: str | os.PathLike, tap: PacketTap, source_name: str, settings: RecordingConfig):
        self.template = str(path)
        self.path = Path(path)
        self.label = self.template
        self.source_name = source_name
        self.settings = settings
        self._tap = tap
        self._segments = Segments(self.template, settings) if "{start}" in self.template else None
        self._timeline = Timeline()
        self._sidecar = SidecarWriter()
        self._file: _File | None = None
        self._format_told: set[str] = set()
        self._error: BaseException | None = None
        self._continue = settings.on_error == "continue"
        self._retry_at = 0.0
        self._next_check = 0.0
        self._files = 0
        self._closed = False
        self.packets = 0
        self._start_writer()

    @property
    def segments(self) -> Segments | None:
        return self._segments

    @property
    def lines(self) -> int:
        """Detections lines written so far."""
        return self._sidecar.lines

    # ------------------------------------------------------------ output thread

    def write(self, result: FrameResult) -> None:
        if not self._thread.is_alive():
            self._writer_ended()
        self._sidecar.add(result)

    def _writer_ended(self) -> None:
        """The writer thread has died (its failure outside one guarded step, or anything it did not expect): the
        run stops (on_error: stop), or a new writer starts on a new file (continue), the old file cut to whole
        fragments. Nothing else drains the tap and the waiting lines, so it is seen at the next frame."""
        if self._error is None:
            self._error = RuntimeError("the copy recording's writer thread ended")
        if not self._continue:
            raise self._failure()
        log.error("%s", self._failure())
        log.error("%s: recording again in a new file (on_error: continue)", self.source_name)
        file, self._file, self._error = self._file, None, None
        if file is not None:
            try:
                self._end(file)
            except Exception:
                pass  # the file is failing already; what was written stays playable
            cut_to_whole_fragments(file.path)
        self._sidecar.restart()  # the lines waiting were for the ended file: the next one starts later
        self._retry_at = time.monotonic() + self._RETRY_S
        self._start_writer()

    def _start_writer(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"copy-{self.source_name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        c0, before = time.thread_time(), self.cpu_s  # a writer started again adds to the one before
        try:
            while True:
                items = self._tap.take_all(self._LINGER_S)
                for item in items:
                    if isinstance(item, Connected):
                        self._connected(item)
                    else:
                        self._packet(item)
                self._write_lines(final=False)
                self.cpu_s = before + time.thread_time() - c0
                if not items and self._tap.closed:
                    break
            self._write_lines(final=True)
        except Exception as exc:
            self._error = exc
        finally:
            self.cpu_s = before + time.thread_time() - c0

    def _connected(self, item: Connected) -> None:
        self._timeline.connected(item)
        if item.format is None:
            self._tell_once("codec", "%s: the camera's video cannot go into MP4 as it is; the copy recording waits "
                            "for a stream it can hold", self.source_name)
        elif self._file is not None and not self._file.format.same_picture(item.format):
            log.info("%s: the camera came back as %s %dx%d; the copy recording goes on in a new file",
                     self.source_name, item.format.video_codec, item.format.width, item.format.height)
            self._close_file()

    def _packet(self, packet: CameraPacket) -> None:
        if not self._timeline.recorded(packet):
            return
        if packet.audio:
            self._audio(packet)
            return
        placed = self._timeline.video(packet)
        if self._file is None or (packet.key and self._due(placed.pts_s)):
            if not packet.key:
                return  # a file starts on a keyframe
            # The file starts where its first picture shows (a keyframe's dts is earlier with B-frames).
            if self._file is not None:
                self._close_file(until=placed.pts_s)
            if time.monotonic() < self._retry_at:
                return
            fmt = self._timeline.current.format
            if not self._guarded(lambda: self._open(fmt, placed.pts_s, packet.arrived)):
                return
        if self._guarded(lambda: self._file.add(to_lengths(packet.data), packet.key, placed.pts_s, placed.dts_s,
                                                audio=False)):
            self.packets += 1
            self._check_space()

    def _audio(self, packet: CameraPacket) -> None:
        if self._file is None or self._file.audio is None:
            return
        at = self._timeline.audio(packet)
        if at is not None and at >= self._file.start_s:
            self._guarded(lambda: self._file.add(packet.data, packet.key, at, at, audio=True))

    def _due(self, at_s: float) -> bool:
        length = self.settings.segment_seconds
        return self._segments is not None and length > 0 and at_s - self._file.start_s >= length

    def _open(self, fmt: StreamFormat, start_s: float, arrived: float) -> None:
        wall = wall_time(arrived)
        if self._segments is not None:
            path = self._segments.path_for(wall)
        elif self._files == 0:
            path = self.path
        else:
            path = _next_free(self.path)  # the camera came back changed: the one file goes on in another
        sidecar = self._sidecar.begin(path, start_s, replace=self._segments is None and self._files == 0)
        if self._segments is not None and sidecar is not None:
            self._segments.record(sidecar, wall, whole=False)
        self._file = _File(path, fmt, start_s)
        self._files += 1
        self.path = path
        if self._segments is not None:
            self._segments.expire(path, time.time())

    def _close_file(self, until: float | None = None) -> None:
        """End the current file, its detections in first (up to `until`, where the next file starts)."""
        self._write_lines(final=until is None, until=until)
        file, self._file = self._file, None
        if file is not None:
            self._guarded(lambda: self._end(file))

    def _end(self, file: _File, finish: bool = True) -> None:
        try:
            file.close()
        finally:
            self._sidecar.end()
        if finish:
            self._finish(file.path)

    def _finish(self, path: Path) -> None:
        """Known by size and change time too from now on (see streamdet.outputs.segments)."""
        if self._segments is not None:
            self._segments.finish(path)
            self._segments.finish(sidecar_path(path))

    def _write_lines(self, final: bool, until: float | None = None) -> None:
        texts = self._sidecar.due(self._timeline, final, until)
        if texts:
            self._guarded(lambda: self._sidecar.write(texts))

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
                    self._end(file, finish=False)
                except Exception:
                    pass  # the file is failing already; what was written stays playable
                cut_to_whole_fragments(file.path)
                self._finish(file.path)
            else:
                self._sidecar.end()  # a file that failed as it opened
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
        if self._segments is not None:
            self._segments.close()
        if self._error is not None:
            cut_to_whole_fragments(self.path)
            raise self._failure()
        if self._tap.dropped:
            log.warning("%s: %d packets were dropped while the disk was behind (gaps in the recording)",
                        self.source_name, self._tap.dropped)
        if self._sidecar.dropped:
            log.warning("%s: %d detections lines were dropped while the writer was behind", self.source_name,
                        self._sidecar.dropped)


def _raise(exc: BaseException) -> None:
    raise exc


def _next_free(path: Path) -> Path:
    n = 1
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return candidate
        except FileExistsError:
            n += 1
