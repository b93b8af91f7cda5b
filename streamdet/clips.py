"""Event clips: a video of each tracked object, from `pre_capture` before it appears to `post_capture` after
it is last seen, drawn as the recording is (boxes, zones, lines).

The clip stage runs after the drawing stage. It encodes each frame of a camera with clips once (H.264, a
keyframe every second, streamdet.outputs.h264) into a ring of packets that reaches back to the keyframe at
or before now - pre_capture (bounded in bytes too), and decides what the clips are: when a track starts, a
clip begins with the ring's packets from that keyframe; packets go on into it while any track of the camera
is active, and it ends post_capture after the last one was seen (or at max_clip_seconds, when a new clip
goes on from the next keyframe). Overlapping tracks of one camera share one clip: a crowd gives one video of
the scene, not one copy of the same pictures per person. The end event of each track names its clip.

What it decided travels with the frame (`FrameResult.clip_steps`: a clip's start with its name, its
packets, its end); the clips output (streamdet.outputs.clips) writes the files on its own thread. When the
camera is also recorded as H.264 in MP4, the frame's packets go on with it too (`FrameResult.encoded`) and
the recording muxes them: each frame is encoded once.

A track is known to have ended only `end_after` after it was last seen; when post_capture is shorter, packets
wait that difference before they go into a clip, so the clip still ends post_capture after the last sighting.
Clips are named `{name}_{start}_track{id}.mp4`, `{start}` the local time of their first frame.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from pathlib import Path

import numpy as np

from .clock import wall_time
from .config.events import CLIP_RING_BYTES, EventsConfig
from .config.sections import RecordingConfig
from .detections import FrameResult
from .outputs.clips import CLIP_END, ClipStart
from .outputs.h264 import Packet, PacketEncoder
from .outputs.segments import segment_path
from .urls import link
from .scene import Event
from .tracking import TrackUpdate

log = logging.getLogger("streamdet.clips")

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


class _Camera:
    """One camera's encoder, ring and the clip open (as decided: its start and what is due for it)."""

    _NAMES_KEPT = 64  # names given lately, whose files the clips output may not have made yet

    def __init__(self, name: str, folder: Path, events: EventsConfig, recording: RecordingConfig, fps: float):
        self.name = name
        self.settings = events
        self.recording = recording
        self.fps = fps
        self.ring = PacketRing(round(events.pre_capture * 1000))
        self.template = str(folder / f"{name}_{{start}}.mp4")
        # Packets wait this long before they go into a clip, so one can end post_capture after the last sighting.
        self.hold_ms = max(0, round((events.end_after - events.post_capture) * 1000))
        self.encoder: PacketEncoder | None = None
        self.clip: ClipStart | None = None
        self.last_path: str | None = None   # the clip open (or just ended): what an end event names
        self.pending: deque[Packet] = deque()  # ring packets due for the open clip, not handed on yet
        self.active: set[int] = set()
        self.close_at: int | None = None    # pts after which the clip ends (no track active any more)
        self.wall = 0.0                     # the frame at hand's capture time (epoch s): a clip's name
        self._given: deque[Path] = deque(maxlen=self._NAMES_KEPT)
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

    def encode(self, image: np.ndarray, pts: int, wall: float) -> list[Packet]:
        if self.encoder is None:
            self.encoder = PacketEncoder(image.shape[1::-1], self.fps, self.recording)
        self.wall = wall
        return self.encoder.encode(image, pts, wall)

    def _clip_path(self, wall: float, track_id: int) -> Path:
        """A name no file has and none given lately: the clips output takes it, never over a file."""
        n = 0
        while (path := segment_path(self.template, wall, f"_track{track_id}", n)) in self._given \
                or path.exists():
            n += 1
        self._given.append(path)
        return path

    def open_clip(self, start_pts: int, track_id: int, steps: list, packets: list[Packet] | None = None) -> None:
        """A new clip from the ring's keyframe at or before `start_pts`, or from `packets` (due for it already)."""
        packets = self.ring.since(start_pts) if packets is None else packets
        first = packets[0].pts if packets else start_pts
        # Named by its first frame's capture time, as events are: a file read faster than it plays, or
        # looping, has stream times that run ahead of the clock.
        wall = packets[0].wall if packets else self.wall
        self.clip = ClipStart(self._clip_path(wall, track_id), wall, first, self.encoder.size, self.fps)
        self.last_path = str(self.clip.path)
        self.pending = deque(packets)
        steps.append(self.clip)

    def close_clip(self, steps: list) -> None:
        if self.clip is not None:
            steps.append(CLIP_END)
        self.clip = None
        self.pending.clear()
        self.close_at = None


class ClipStage:
    """The event clips stage (after the drawing stage): per camera with `events.clips`, see the module."""

    name = "clips"

    def __init__(self, configs: list[EventsConfig], recordings: list[RecordingConfig], names: list[str],
                 fps: list[float | None], web_url: str | None, share: list[bool]):
        """`web_url`: the base of links to the web view (its events name their clip's address there), if any;
        `share`: per source, whether its recording takes the packets (`FrameResult.encoded`) rather than
        encoding the frame again."""
        self._cameras = [_Camera(name, Path(events.clips.replace("{name}", name)), events, recording,
                                 rate if rate and rate > 0 else 25.0) if events.clips else None
                         for events, recording, name, rate in zip(configs, recordings, names, fps)]
        self._web_url = web_url
        self._share = share

    def __call__(self, result: FrameResult) -> FrameResult:
        camera = self._cameras[result.source_id]
        if camera is None:
            return result
        frame = result.frame
        pts = camera.pts(frame.stream_time)
        packets = camera.encode(frame.image, pts, wall_time(frame.captured))
        for packet in packets:
            camera.ring.add(packet)
            if camera.clip is not None:
                camera.pending.append(packet)
        steps: list = []
        self._tracks(camera, result.tracks if isinstance(result.tracks, TrackUpdate) else TrackUpdate(), pts, steps)
        self._flush(camera, pts - camera.hold_ms, steps)
        events = self._named(camera, result.events)
        return dataclasses.replace(result, clip_steps=tuple(steps), events=events,
                                   encoded=tuple(packets) if self._share[result.source_id] else ())

    def _tracks(self, camera: _Camera, update: TrackUpdate, pts: int, steps: list) -> None:
        for track in update.started:
            camera.active.add(track.id)
            camera.close_at = None
            if camera.clip is None:
                # The track was first seen a few frames before it was confirmed: pre-capture counts from then.
                first = camera.timeline(track.first_seen, pts)
                camera.open_clip(first - round(camera.settings.pre_capture * 1000), track.id, steps)
        for track in update.ended:
            camera.active.discard(track.id)
            if not camera.active and camera.clip is not None:
                camera.close_at = camera.timeline(track.last_seen, pts) + round(camera.settings.post_capture * 1000)

    def _flush(self, camera: _Camera, until: int, steps: list) -> None:
        """Hand on the clip's pending packets up to `until`; end it once its end has passed."""
        max_ms = round(camera.settings.max_clip_seconds * 1000)
        while camera.clip is not None and camera.pending and camera.pending[0].pts <= until:
            packet = camera.pending[0]
            if camera.close_at is not None and packet.pts > camera.close_at:
                camera.close_clip(steps)
                return
            if packet.key and packet.pts - camera.clip.first_pts >= max_ms:
                # A track that never ends: the next clip goes on from this keyframe.
                rest, close_at = list(camera.pending), camera.close_at
                camera.close_clip(steps)
                camera.open_clip(packet.pts, min(camera.active) if camera.active else 0, steps, rest)
                camera.close_at = close_at  # the last track's post-capture may end in the next clip
                continue
            steps.append(camera.pending.popleft())
        if camera.clip is not None and camera.close_at is not None and until >= camera.close_at:
            camera.close_clip(steps)

    def _named(self, camera: _Camera, events: tuple[Event, ...]) -> tuple[Event, ...]:
        """Each end event names the clip its track is in (still being written during post-capture)."""
        if camera.last_path is None or not any(e.kind == "end" for e in events):
            return events
        url = link(self._web_url, "clips", Path(camera.last_path).name) if self._web_url else None
        return tuple(dataclasses.replace(e, clip=camera.last_path, clip_url=url) if e.kind == "end" else e
                     for e in events)

    def extend(self, other: ClipStage) -> None:
        """Sources added while the run goes (a reload): `other`'s, made for them alone, after this one's."""
        self._cameras += other._cameras
        self._share += other._share

    def finish(self, ended: FrameResult) -> FrameResult:
        """The source ended (`ended`: its last frame with its last tracks' end events): they name their clip,
        which ends with the source, its due packets handed on with them."""
        camera = self._cameras[ended.source_id]
        if camera is None:
            return ended
        steps: list = []
        while camera.clip is not None and camera.pending:
            if camera.close_at is not None and camera.pending[0].pts > camera.close_at:
                break
            steps.append(camera.pending.popleft())
        camera.close_clip(steps)
        return dataclasses.replace(ended, events=self._named(camera, ended.events), clip_steps=tuple(steps))
