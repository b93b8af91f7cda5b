"""The live stream of a source whose packets the run does not have (files, webcams, cameras read through
OpenCV, and cameras whose codec browsers do not all play): its frames encoded once, while watched, on one
thread for all such sources, with x264 `zerolatency` at the source's frame rate (streamdet.outputs.h264's
settings); every viewer of the source gets the same fragments.

The output thread hands in each frame (`publish`): a reference is kept only while somebody watches. The
encoder takes the newest frame of each watched source, so when it cannot keep up it skips frames rather than
queueing them. A frame's time on the stream is when it was handed in, so the stream plays at the rate the
run processes frames.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2

from ..config.sections import RecordingConfig
from ..detections import FrameResult
from ..measures.meters import StageTimer
from ..outputs.fmp4 import DELTA_FLAGS, KEY_FLAGS, InitSegment, Sample, fragment, init_segment
from ..outputs.h264 import TIME_BASE, even_size, fit_frame, set_up
from ..sources.demux import to_lengths
from .live_feed import LiveFeed, channel_record, channel_text

log = logging.getLogger("streamdet")

_MOVFLAGS = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


@dataclass
class _Slot:
    feed: LiveFeed
    fps: float
    result: FrameResult | None = None
    at: float = 0.0            # time.monotonic() when handed in
    seq: int = 0
    encoded: int = 0


class _Session:
    """One stream of one source: its encoder, the init segment it wrote, and the frame held for its duration."""

    def __init__(self, size: tuple[int, int], fps: float, starts: int, settings: RecordingConfig):
        self.size = even_size(*size)
        self.starts = starts
        self.began = time.monotonic()
        buffer = io.BytesIO()
        # A container only for the header: its stream's encoder writes the avcC the init segment needs.
        self._container = av.open(buffer, "w", format="mp4", options=_MOVFLAGS)
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        set_up(self._stream.codec_context, self.size, fps, "h264", settings)
        self._container.start_encoding()
        self.init: InitSegment | None = init_segment(buffer.getvalue(), sound=False)
        self.held: tuple[bytes, bool, float] | None = None
        self.seq = 0
        self.last_ms = -1

    def encode(self, image, at: float) -> list[tuple[bytes, bool]]:
        pts_ms = max(self.last_ms + 1, round((at - self.began) * 1000))
        self.last_ms = pts_ms
        frame = av.VideoFrame.from_ndarray(fit_frame(image, self.size), format="bgr24")
        frame.pts, frame.time_base = pts_ms, TIME_BASE
        return [(bytes(p), p.is_keyframe) for p in self._stream.encode(frame)]

    def close(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001  the header's container holds nothing anybody reads any more
            log.debug("live encoder: closing a stream's container failed", exc_info=True)


class LiveEncoder:
    """Frames in from the output thread, fragments out to each source's LiveFeed, one thread between."""

    def __init__(self, max_width: int, settings: RecordingConfig = RecordingConfig()):
        self._slots: dict[int, _Slot] = {}
        self._sessions: dict[int, _Session] = {}
        self._max_width = max_width
        self._settings = settings
        self._cond = threading.Condition()
        self._stopping = False
        self.error: BaseException | None = None
        self.encode_ms = StageTimer()
        self.cpu_s = 0.0
        self._thread = threading.Thread(target=self._run, name="web-live-encoder", daemon=True)

    def add(self, source_id: int, feed: LiveFeed, fps: float | None) -> None:
        """A source whose frames are encoded here while watched (at the start, or added by a reload on the output
        thread); the thread starts with the first."""
        with self._cond:
            self._slots[source_id] = _Slot(feed, fps or 25.0)
            if self._stopping or self._thread.ident is not None:
                return
        self._thread.start()

    def publish(self, source_id: int, result: FrameResult) -> None:
        """On the output thread: a frame of a source encoded here, kept only while its stream is watched."""
        slot = self._slots.get(source_id)
        if slot is None or not slot.feed.watched:
            return
        with self._cond:
            slot.result, slot.at = result, time.monotonic()
            slot.seq += 1
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _next(self) -> list[tuple[int, FrameResult, float]] | None:
        with self._cond:
            while not self._stopping:
                work = [(i, s.result, s.at) for i, s in self._slots.items() if s.seq != s.encoded and s.result]
                for i, _, _ in work:
                    slot = self._slots[i]
                    slot.encoded, slot.result = slot.seq, None
                if work:
                    return work
                self._cond.wait(timeout=1.0)
                self._end_unwatched()
            return None

    def _end_unwatched(self) -> None:
        for i in [i for i, s in self._sessions.items() if not self._slots[i].feed.watched]:
            self._sessions.pop(i).close()

    def _run(self) -> None:
        c0 = time.thread_time()
        try:
            while (work := self._next()) is not None:
                for i, result, at in work:
                    self._encode(i, result, at)
                self.cpu_s = time.thread_time() - c0
        except BaseException as exc:  # raised by the web view on the output thread's next write
            self.error = exc
            log.debug("live encoder failed", exc_info=True)
        finally:
            for session in self._sessions.values():
                session.close()
            self.cpu_s = time.thread_time() - c0

    def _encode(self, i: int, result: FrameResult, at: float) -> None:
        t0 = time.perf_counter()
        slot, image = self._slots[i], result.frame.image
        if image.shape[1] > self._max_width:
            height = max(2, round(image.shape[0] * self._max_width / image.shape[1]))
            image = cv2.resize(image, (self._max_width, height), interpolation=cv2.INTER_AREA)
        session = self._sessions.get(i)
        if session is None or session.starts != slot.feed.starts:
            if session is not None:
                session.close()
            session = self._sessions[i] = _Session(image.shape[1::-1], slot.fps, slot.feed.starts, self._settings)
            slot.feed.begin(session.init)
        for data, key in session.encode(image, at):
            pts_s = session.last_ms / 1000  # zerolatency: each frame's packet leaves with it
            if session.held is not None:
                self._emit(slot.feed, session, pts_s)
            session.held = (to_lengths(data), key, pts_s)
        if slot.feed.line_viewers:
            slot.feed.add_line(channel_text(channel_record(result), session.last_ms / 1000, slot.feed.session))
        self.encode_ms.add((time.perf_counter() - t0) * 1000)

    @staticmethod
    def _emit(feed: LiveFeed, session: _Session, next_s: float) -> None:
        data, key, at = session.held
        scale = session.init.video.timescale
        start = round(at * scale)
        session.seq += 1
        sample = Sample(max(1, round(next_s * scale) - start), len(data), KEY_FLAGS if key else DELTA_FLAGS)
        feed.add(fragment(session.seq, session.init.video.id, start, [sample], data), key, at)
