"""The newest frame of every source, turned into JPEG only while somebody looks.

The output thread hands in every frame (`publish`): it keeps a reference (the
result carries its plate and counts as they stood at that frame), so an
unwatched web view costs a lock and an assignment per frame. One encoder
thread draws (when no other output had the boxes drawn already), scales and encodes the newest
frame of each watched source at most `web.fps` times a second; every client
of that source gets the same bytes. A client never queues frames: it takes
the newest JPEG when it is ready for one, so a slow client only sees fewer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..config.web import WebConfig
from ..detections import FrameResult
from ..measures.meters import StageTimer

log = logging.getLogger("streamdet")

# The draw stage's drawing (streamdet.stages.Annotate.paint): `draw(image, result)` paints, on the encoder's
# thread, what the result holds (boxes, zones and counts, plate) onto the image.
Draw = Callable[[np.ndarray, FrameResult], None]


@dataclass(frozen=True, slots=True)
class Jpeg:
    seq: int          # the frame's number in this source's sequence of published frames
    data: bytes
    width: int
    height: int


class _Slot:
    """One source's newest frame and who wants it; guarded by the hub's lock."""

    __slots__ = ("result", "seq", "encoded_seq", "jpeg", "watchers", "wanted", "next_due")

    def __init__(self) -> None:
        self.result: FrameResult | None = None
        self.seq = 0
        self.encoded_seq = 0
        self.jpeg: Jpeg | None = None
        self.watchers = 0
        self.wanted = False   # a snapshot asked for the newest frame, whatever the rate cap
        self.next_due = 0.0

    def ready(self, now: float) -> bool:
        if self.result is None or self.seq == self.encoded_seq:
            return False
        return self.wanted or (self.watchers > 0 and now >= self.next_due)

    def pending_due(self) -> float | None:
        """When this slot can be encoded next, if a client waits for a newer frame than it has."""
        if self.result is None or self.seq == self.encoded_seq or not (self.watchers or self.wanted):
            return None
        return 0.0 if self.wanted else self.next_due


class FrameHub:
    """Frames in from the output thread, JPEGs out to the web server, one encoder thread between."""

    def __init__(self, sources: int, web: WebConfig, draw: Draw | None):
        self._web = web
        self._draw = draw
        self._slots = [_Slot() for _ in range(sources)]
        self._cond = threading.Condition()
        self._stopping = False
        self.error: BaseException | None = None
        self.encode_ms = StageTimer()
        self.cpu_s = 0.0
        self._listeners: list[Callable[[int], None]] = []
        self._thread = threading.Thread(target=self._run, name="web-encoder", daemon=True)
        self._thread.start()

    # ------------------------------------------------------- output thread

    def publish(self, source_id: int, result: FrameResult) -> None:
        slot = self._slots[source_id]
        with self._cond:
            slot.result = result
            slot.seq += 1
            if slot.watchers > 0 or slot.wanted:
                self._cond.notify()

    def add_source(self) -> int:
        """A source added while the run goes (a reload): its slot, and its id (the next one)."""
        with self._cond:
            self._slots.append(_Slot())
            return len(self._slots) - 1

    # -------------------------------------------------------- server thread

    def on_jpeg(self, listener: Callable[[int], None]) -> None:
        """`listener(source_id)` runs on the encoder thread after each new JPEG."""
        self._listeners.append(listener)

    def watch(self, source_id: int, delta: int) -> None:
        with self._cond:
            self._slots[source_id].watchers += delta
            self._cond.notify()

    def want(self, source_id: int) -> int:
        """Ask for the newest frame as JPEG, rate cap or not; returns the seq to wait for (0: no frame yet)."""
        slot = self._slots[source_id]
        with self._cond:
            if slot.result is None:
                return 0
            if slot.seq != slot.encoded_seq:
                slot.wanted = True
                self._cond.notify()
            return slot.seq

    def latest(self, source_id: int) -> Jpeg | None:
        return self._slots[source_id].jpeg

    def watchers(self) -> list[int]:
        with self._cond:
            return [slot.watchers for slot in self._slots]

    # ------------------------------------------------------- encoder thread

    def _run(self) -> None:
        c0 = time.thread_time()
        try:
            while True:
                work = self._next_work()
                if work is None:
                    return
                for source_id, seq, result in work:
                    jpeg = self._encode(seq, result)
                    self._slots[source_id].jpeg = jpeg
                    for listener in self._listeners:
                        listener(source_id)
                self.cpu_s = time.thread_time() - c0
        except BaseException as exc:  # raised by the web view on the output thread's next write
            self.error = exc
            log.debug("web encoder failed", exc_info=True)

    def _next_work(self) -> list[tuple[int, int, FrameResult]] | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                ready = [i for i, slot in enumerate(self._slots) if slot.ready(now)]
                if ready:
                    work = []
                    for i in ready:
                        slot = self._slots[i]
                        work.append((i, slot.seq, slot.result))
                        slot.encoded_seq = slot.seq
                        slot.wanted = False
                        slot.next_due = now + 1.0 / self._web.fps
                    return work
                dues = [d for d in (slot.pending_due() for slot in self._slots) if d is not None]
                # Without a frame due, sleep until publish/watch/want notifies: no polling.
                self._cond.wait(timeout=max(0.0, min(dues) - now) if dues else None)
            return None

    def _encode(self, seq: int, result: FrameResult) -> Jpeg:
        t0 = time.perf_counter()
        image = result.frame.image
        if self._draw is not None and not result.drawn:
            image = image.copy()  # the frame may still be read by other outputs: draw on our own copy
            self._draw(image, result)
        height, width = image.shape[:2]
        if width > self._web.max_width:
            height = max(1, round(height * self._web.max_width / width))
            width = self._web.max_width
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._web.quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for a {width}x{height} frame")
        self.encode_ms.add((time.perf_counter() - t0) * 1000)
        return Jpeg(seq=seq, data=data.tobytes(), width=width, height=height)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
