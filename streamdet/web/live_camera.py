"""A network camera's live stream from its own packets (taken from its LiveTap on the camera's reader thread):
no decoding or encoding for watching, whatever `recording.mode` is, and its AAC sound when it sends it.

Each packet becomes a fragment of its own once the next one of its track has come (its duration is the gap to
it: one frame period of delay), placed on the stream's timeline by the copy recording's own Timeline; each
processed frame's detections are placed on that timeline too, so the page draws them on their own frame. A
new connection begins a new stream (the player starts again), and so does the first viewer after a pause.
"""

from __future__ import annotations

import threading
import logging
from collections import deque

from ..detections import FrameResult
from ..outputs.fmp4 import AUDIO_FLAGS, DELTA_FLAGS, KEY_FLAGS, InitSegment, Sample, fragment, init_segment
from ..outputs.timeline import Timeline
from ..sources.demux import CameraPacket, Connected, to_lengths
from ..sources.live_tap import LiveTap
from .live_feed import LiveFeed, channel_record, channel_text

log = logging.getLogger("streamdet")

_WAITING = 64  # frames' lines waiting for their packets; past this the oldest go


class CameraFeed:
    """The LiveTap's receiver: a camera's packets into its LiveFeed while watched, and its frames' lines."""

    def __init__(self, feed: LiveFeed, tap: LiveTap):
        self.feed = feed
        self._lock = threading.Lock()  # packets come on the reader thread, frames on the output thread
        self._last: Connected | None = None
        self._timeline: Timeline | None = None   # None: not streaming (nobody watched at the last packet)
        self._init: InitSegment | None = None
        self._seq = 0
        self._held: dict[bool, tuple[bytes, bool, float, float] | None] = {False: None, True: None}
        self._started = False  # the stream's first keyframe has come
        self._starts = 0       # the feed's `starts` when this stream began
        self._waiting: deque[tuple[int, float | None, float, dict]] = deque(maxlen=_WAITING)
        self.told: str | None = None  # the codec this camera sends that MSE cannot take, said once
        tap.receiver = self
        if tap.last is not None:
            self.connected(tap.last)

    @property
    def watched(self) -> bool:
        return self.feed.watched

    # ------------------------------------------------------------ reader thread

    def connected(self, item: Connected) -> None:
        with self._lock:
            self._last = item
            self._timeline = None  # the next packet watched begins a new stream

    def put(self, packet: CameraPacket) -> None:
        with self._lock:
            last = self._last
            if last is None or packet.connection != last.connection or last.format is None:
                return
            if self._timeline is not None and self._starts != self.feed.starts:
                self._timeline = None  # watched again after a pause: the ring holds the old stream's end
            if self._timeline is None and not self._begin(last):
                return
            if packet.audio:
                self._audio(packet)
            else:
                self._video(packet)

    def _begin(self, last: Connected) -> bool:
        init = init_segment(last.format.header, sound=True)
        if init is None:
            if self.told is None:
                self.told = last.format.video_codec
                log.info("live view: the camera sends %s, which browsers do not all play through MSE: its tile "
                         "shows no live H.264 (MJPEG still works)", last.format.video_codec)
            return False
        self._timeline = Timeline()
        self._timeline.connected(last)
        self._init, self._seq, self._started, self._starts = init, 0, False, self.feed.starts
        self._held = {False: None, True: None}
        self._waiting.clear()
        self.feed.begin(init)
        return True

    def _video(self, packet: CameraPacket) -> None:
        if not self._started and not packet.key:
            return  # a stream starts at a keyframe
        self._started = True
        placed = self._timeline.video(packet)
        self._emit(False, placed.dts_s)
        self._held[False] = (to_lengths(packet.data), packet.key, placed.dts_s, placed.pts_s)
        self._place_waiting()

    def _audio(self, packet: CameraPacket) -> None:
        if self._init.audio is None or not self._started:
            return
        at = self._timeline.audio(packet)
        if at is None:
            return
        self._emit(True, at)
        self._held[True] = (packet.data, True, at, at)

    def _emit(self, audio: bool, next_dts: float) -> None:
        """The track's held packet, now that the next one says how long it lasts."""
        held = self._held[audio]
        if held is None:
            return
        data, key, dts, pts = held
        track = self._init.audio if audio else self._init.video
        scale = track.timescale
        start = round(dts * scale)
        duration = max(1, round(next_dts * scale) - start)
        flags = AUDIO_FLAGS if audio else KEY_FLAGS if key else DELTA_FLAGS
        self._seq += 1
        sample = Sample(duration, len(data), flags, round(pts * scale) - start)
        self.feed.add(fragment(self._seq, track.id, max(0, start), [sample], data), key and not audio, pts)

    # ------------------------------------------------------------ output thread

    def frame(self, result: FrameResult) -> None:
        """A processed frame: its detections go to the channel once placed on the stream's timeline."""
        if not self.feed.line_viewers:
            return
        frame = result.frame
        line = channel_record(result)
        with self._lock:
            self._waiting.append((frame.connection, frame.camera_pts_ms, frame.captured, line))
            self._place_waiting()

    def _place_waiting(self) -> None:
        timeline = self._timeline
        if timeline is None:
            self._waiting.clear()
            return
        while self._waiting:
            connection, pts_ms, captured, line = self._waiting[0]
            at = timeline.place(connection, pts_ms, captured)
            if at is None:
                return  # its packet has not come yet
            self._waiting.popleft()
            if at >= 0:  # a frame from before the stream began is on no picture of it
                self.feed.add_line(channel_text(line, at, self.feed.session))
