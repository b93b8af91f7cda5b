"""Event clips: a video of each tracked object, from `pre_capture` before it appears to `post_capture` after
it is last seen, drawn as the recording is (boxes, zones, lines).

The clip stage runs after the render stage. It encodes each frame of a camera with clips once (H.264, a
keyframe every second) into a ring of packets that reaches back to the keyframe at or before now -
pre_capture (bounded in bytes too). When a track starts, a clip file is opened and the ring's packets from
that keyframe are written into it; packets go on into it while any track of the camera is active, and it is
closed post_capture after the last one was seen (or at max_clip_seconds, when a new clip goes on from the
next keyframe). Overlapping tracks of one camera share one clip: a crowd gives one video of the scene, not
one copy of the same pictures per person. The end event of each track names its clip.

When the camera is also recorded as H.264 in MP4, the packets go on with the frame (`FrameResult.encoded`)
and the recording muxes them: each frame is encoded once.

A track is known to have ended only `end_after` after it was last seen; when post_capture is shorter, packets
wait that difference before they are written, so the clip still ends post_capture after the last sighting.

The files are fragmented MP4 flushed per fragment (a kill -9 keeps all but the last second), at the frames'
own times, named `{name}_{start}_track{id}.mp4`; each camera's clips are entered in its record
(streamdet.outputs.segments), and only those are ever expired by keep_days / keep_gb.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .config.events import CLIP_RING_BYTES, EventsConfig
from .config.sections import RecordingConfig
from .detections import FrameResult
from .errors import OutputError
from .events import Counts, Event
from .outputs.base import write_error
from .outputs.segments import Segments
from .outputs.video import Remuxer, fit_frame
from .tracking import TrackUpdate

log = logging.getLogger("streamdet.clips")

_TIME_BASE = Fraction(1, 1000)  # packet times in milliseconds, as the recording's


@dataclass(frozen=True, slots=True)
class Packet:
    pts: int          # ms on the camera's clip timeline
    key: bool
    data: bytes


class PacketRing:
    """A camera's recent encoded packets: back to the keyframe at or before newest - keep_ms, at most max_bytes."""

    def __init__(self, keep_ms: int, max_bytes: int = CLIP_RING_BYTES):
        self.keep_ms = keep_ms
        self.max_bytes = max_bytes
        self.bytes = 0
        self.peak_bytes = 0
        self._packets: deque[Packet] = deque()
        self._keys: deque[Packet] = deque()  # the keyframes among them, oldest first
        self._short_told = False

    def add(self, packet: Packet) -> None:
        self._packets.append(packet)
        self.bytes += len(packet.data)
        if packet.key:
            self._keys.append(packet)
        # Drop whole keyframe intervals only: what is kept always starts on a keyframe.
        while len(self._keys) >= 2 and self._keys[1].pts <= packet.pts - self.keep_ms:
            self._drop_oldest_interval()
        while self.bytes > self.max_bytes and len(self._keys) >= 2:
            if not self._short_told:
                self._short_told = True
                log.warning("event clips: %d MB of video do not hold %g s before an event; pre-capture is shorter",
                            self.max_bytes >> 20, self.keep_ms / 1000)
            self._drop_oldest_interval()
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def _drop_oldest_interval(self) -> None:
        self._keys.popleft()
        while self._packets[0] is not self._keys[0]:
            self.bytes -= len(self._packets.popleft().data)

    def since(self, pts: int) -> list[Packet]:
        """The packets from the last keyframe at or before `pts` (the oldest kept, if none is that old)."""
        start = next((k for k in reversed(self._keys) if k.pts <= pts), self._keys[0] if self._keys else None)
        if start is None:
            return []
        packets = list(self._packets)
        return packets[next(i for i, p in enumerate(packets) if p is start):]


class ClipFile:
    """One clip being written: packets copied in, no encoding; times start at 0 at its first packet."""

    def __init__(self, path: Path, codec: av.CodecContext, fps: float, first_pts: int):
        self.path = path
        self.first_pts = first_pts
        self._file = Remuxer(path, (codec.width, codec.height), fps)

    def write(self, packet: Packet) -> None:
        self._file.add(packet.data, packet.key, packet.pts - self.first_pts)

    def close(self) -> None:
        self._file.close()


class _Camera:
    """One camera's encoder, ring and open clip."""

    def __init__(self, name: str, folder: Path, events: EventsConfig, recording: RecordingConfig, fps: float,
                 end_after: float):
        self.name = name
        self.settings = events
        self.recording = recording
        self.fps = fps
        self.ring = PacketRing(round(events.pre_capture * 1000))
        self.files = Segments(str(folder / f"{name}_{{start}}.mp4"),
                              RecordingConfig(keep_hours=events.keep_days * 24, keep_gb=events.keep_gb))
        # Packets wait this long before they go into a clip, so one can end post_capture after the last sighting.
        self.hold_ms = max(0, round((end_after - events.post_capture) * 1000))
        self.codec: av.CodecContext | None = None
        self.size = (0, 0)
        self.clip: ClipFile | None = None
        self.last_path: str | None = None   # the clip open (or just closed): what an end event names
        self.pending: deque[Packet] = deque()  # ring packets due for the open clip, not written yet
        self.active: set[int] = set()
        self.close_at: int | None = None    # pts after which the clip ends (no track active any more)
        self.wall_offset = 0.0              # wall time = pts / 1000 + this
        self.counts = Counts()              # the events stage's counts of this source (clips made)
        self._last_pts = -1
        self._shift = 0                     # added to stream times: a looping file starts again at 0

    def pts(self, stream_time: float) -> int:
        raw = round(stream_time * 1000)
        if raw + self._shift <= self._last_pts:
            self._shift = self._last_pts + round(1000 / self.fps) - raw
        self._last_pts = raw + self._shift
        return self._last_pts

    def timeline(self, stream_time: float, now: int) -> int:
        """A track's time (stream time) on this camera's clip timeline; never after the frame at hand."""
        return min(now, round(stream_time * 1000) + self._shift)

    def encode(self, image: np.ndarray, pts: int) -> list[Packet]:
        if self.codec is None:
            height, width = image.shape[:2]
            self.size = (max(2, width - width % 2), max(2, height - height % 2))
            self.codec = self._open_codec()
        if image.shape[1::-1] != self.size:
            image = np.ascontiguousarray(fit_frame(image, self.size))
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = pts, _TIME_BASE
        return [Packet(p.pts, p.is_keyframe, bytes(p)) for p in self.codec.encode(frame)]

    def _open_codec(self) -> av.CodecContext:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = self.size
        codec.pix_fmt = "yuv420p"
        codec.time_base = _TIME_BASE
        codec.framerate = Fraction(self.fps).limit_denominator(1000)
        codec.gop_size = max(1, round(self.fps))  # a keyframe a second: a clip starts at most 1 s before its point
        # zerolatency: each frame's packet comes out at once, so the ring is never behind the frames.
        codec.options = {"preset": self.recording.preset, "crf": str(self.recording.crf), "tune": "zerolatency"}
        codec.open()
        return codec

    def open_clip(self, start_pts: int, track_id: int, packets: list[Packet] | None = None) -> None:
        """A new clip from the ring's keyframe at or before `start_pts`, or from `packets` (due for it already)."""
        packets = self.ring.since(start_pts) if packets is None else packets
        first = packets[0].pts if packets else start_pts
        path = self.files.path_for(first / 1000 + self.wall_offset, f"_track{track_id}")
        self.clip = ClipFile(path, self.codec, self.fps, first)
        self.last_path = str(path)
        self.pending = deque(packets)
        self.files.expire(path, time.time())

    def close_clip(self) -> None:
        clip, self.clip = self.clip, None
        self.pending.clear()
        self.close_at = None
        if clip is not None:
            clip.close()


class ClipStage:
    """The event clips stage (after the render stage): per camera with `events.clips`, see the module."""

    name = "clips"

    def __init__(self, configs: list[EventsConfig], recordings: list[RecordingConfig], names: list[str],
                 fps: list[float | None], counts: list[Counts], web_url: str | None,
                 share: list[bool]):
        """`web_url`: where the web view serves (its events name their clip's address there), if it does;
        `share`: per source, whether its recording takes the packets (`FrameResult.encoded`) rather than
        encoding the frame again."""
        self._cameras: list[_Camera | None] = []
        for events, recording, name, rate in zip(configs, recordings, names, fps):
            if not events.clips:
                self._cameras.append(None)
                continue
            folder = Path(events.clips.replace("{name}", name))
            self._cameras.append(_Camera(name, folder, events, recording, rate if rate and rate > 0 else 25.0,
                                         events.end_after))
        for camera, count in zip(self._cameras, counts):
            if camera is not None:
                camera.counts = count
                count.clips = 0  # the summary says how many clips each camera with clips made
        self._web_url = web_url
        self._share = share

    def __call__(self, result: FrameResult) -> FrameResult:
        camera = self._cameras[result.source_id]
        if camera is None:
            return result
        try:
            packets = self._frame(camera, result)
        except OSError as exc:
            raise _failure(camera, exc) from None
        if self._share[result.source_id]:
            result = dataclasses.replace(result, encoded=tuple(packets))
        return self._name_clips(camera, result)

    def _frame(self, camera: _Camera, result: FrameResult) -> list[Packet]:
        frame = result.frame
        pts = camera.pts(frame.stream_time)
        if camera.codec is None:
            camera.wall_offset = time.time() - (time.monotonic() - frame.captured) - pts / 1000
        packets = camera.encode(frame.image, pts)
        for packet in packets:
            camera.ring.add(packet)
            if camera.clip is not None:
                camera.pending.append(packet)
        update = result.tracks if isinstance(result.tracks, TrackUpdate) else TrackUpdate()
        self._tracks(camera, update, pts)
        self._flush(camera, pts - camera.hold_ms)
        return packets

    def _tracks(self, camera: _Camera, update: TrackUpdate, pts: int) -> None:
        for track in update.started:
            camera.active.add(track.id)
            camera.close_at = None
            if camera.clip is None:
                # The track was first seen a few frames before it was confirmed: pre-capture counts from then.
                first = camera.timeline(track.first_seen, pts)
                camera.open_clip(first - round(camera.settings.pre_capture * 1000), track.id)
                camera.counts.clips += 1
        for track in update.ended:
            camera.active.discard(track.id)
            if not camera.active and camera.clip is not None:
                camera.close_at = camera.timeline(track.last_seen, pts) + round(camera.settings.post_capture * 1000)

    def _flush(self, camera: _Camera, until: int) -> None:
        """Write the clip's pending packets up to `until`; close it once its end has passed."""
        max_ms = round(camera.settings.max_clip_seconds * 1000)
        while camera.clip is not None and camera.pending and camera.pending[0].pts <= until:
            packet = camera.pending[0]
            if camera.close_at is not None and packet.pts > camera.close_at:
                camera.close_clip()
                return
            if packet.key and packet.pts - camera.clip.first_pts >= max_ms:
                # A track that never ends: the next clip goes on from this keyframe.
                rest, close_at = list(camera.pending), camera.close_at
                camera.close_clip()
                camera.open_clip(packet.pts, min(camera.active) if camera.active else 0, rest)
                camera.close_at = close_at  # the last track's post-capture may end in the next clip
                camera.counts.clips += 1
                continue
            camera.clip.write(camera.pending.popleft())
        if camera.clip is not None and camera.close_at is not None and until >= camera.close_at:
            camera.close_clip()

    def _name_clips(self, camera: _Camera, result: FrameResult) -> FrameResult:
        """Each end event names the clip its track is in (still being written during post-capture)."""
        if not any(e.kind == "end" for e in result.events) or camera.last_path is None:
            return result
        return dataclasses.replace(result, events=self.name_clips(result.source_id, result.events))

    def name_clips(self, source_id: int, events: tuple[Event, ...] | list[Event]) -> tuple[Event, ...]:
        camera = self._cameras[source_id]
        if camera is None or camera.last_path is None:
            return tuple(events)
        url = f"{self._web_url}clips/{Path(camera.last_path).name}" if self._web_url else None
        return tuple(dataclasses.replace(e, clip=camera.last_path, clip_url=url) if e.kind == "end" else e
                     for e in events)

    def finish(self, source_id: int, events: tuple[Event, ...] | list[Event]) -> tuple[Event, ...]:
        """The source ended: its last tracks' end events name their clip, which ends with the source."""
        named = self.name_clips(source_id, events)
        camera = self._cameras[source_id]
        if camera is not None:
            self._end(camera)
        return named

    @staticmethod
    def _end(camera: _Camera) -> None:
        """What the clip is still waiting for is written (up to its end), and it is closed."""
        try:
            while camera.clip is not None and camera.pending:
                if camera.close_at is not None and camera.pending[0].pts > camera.close_at:
                    break
                camera.clip.write(camera.pending.popleft())
            camera.close_clip()
        except OSError as exc:
            raise _failure(camera, exc) from None

    def ring_bytes(self) -> dict[str, int]:
        """Per camera with clips: the most its ring held (for the measured cost in docs/events.md)."""
        return {c.name: c.ring.peak_bytes for c in self._cameras if c is not None}

    def close(self) -> None:
        """Every open clip is finished (a stop, or an error elsewhere); the first write error is raised."""
        error: OutputError | None = None
        for camera in self._cameras:
            if camera is None:
                continue
            try:
                self._end(camera)
            except OutputError as exc:
                error = error or exc
        if error is not None:
            raise error


def _failure(camera: _Camera, exc: OSError) -> OutputError:
    """The one line for a clip that could not be written: the clip's file, or its folder before one was named."""
    where = camera.clip.path if camera.clip is not None else camera.files.folder
    return write_error(f"{where} (event clips of {camera.name})", exc)
