"""Event clips as files: what the clip stage (streamdet.clips) decided, written on a writer thread.

The clip stage encodes each frame, keeps the ring of packets and decides when a clip starts (its name, its
first packet), which packets go into it and when it ends; it hands those steps on with the frame
(`FrameResult.clip_steps`). This output carries them out on a thread of its own: each clip's name taken
(never over a file) and entered in the camera's record (streamdet.outputs.segments), its packets muxed into
fragmented MP4 flushed per fragment (a kill -9 keeps all but the last second), and the camera's older clips
expired by keep_days / keep_gb. Its queue is bounded, so a writer that falls behind slows the run and
never drops a packet; an error on the thread stops the work and is raised by the next write (or by close).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..detections import FrameResult
from ..errors import OutputError
from .base import Output, WriterThread, as_output_error
from .h264 import Packet
from .segments import Retention, Segments
from .video import Remuxer


@dataclass(frozen=True, slots=True)
class ClipStart:
    """A new clip begins (the one open, if any, ends first); named by the clip stage when it decided it."""

    path: Path
    start: float              # wall time of its first packet
    first_pts: int            # its first packet's time (a keyframe's): time 0 in the file
    size: tuple[int, int]     # the packets' picture size
    fps: float


@dataclass(frozen=True, slots=True)
class ClipEnd:
    """The open clip is complete."""


CLIP_END = ClipEnd()


class ClipsOutput(Output):
    """One camera's event clips, in `folder`, named `{name}_{start}_track{id}.mp4`."""

    takes_events = True  # the clip open when its source ends gets its last packets with the last tracks' end
    _QUEUE = 32

    def __init__(self, folder: str, source_name: str, keep: Retention):
        self.source_name = source_name
        self.label = f"{folder} (event clips of {source_name})"
        self.made = 0  # clips begun: the run summary's figure
        # Its own record (.T.clips): a recording named like the clips in the same folder has another.
        self._files = Segments(str(Path(folder) / f"{source_name}_{{start}}.mp4"), keep, kind="clips")
        self._clip: Remuxer | None = None
        self._start: ClipStart | None = None
        self._writer = WriterThread(f"clips-{source_name}", self._QUEUE)  # each frame's clip steps
        self._error: OutputError | None = None
        self._closed = False

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise self._error
        if not result.clip_steps:
            return
        if not self._writer.started:
            self._writer.start(self._work)
        self._writer.put(result.clip_steps)

    def holds(self, path: Path) -> bool:
        """`path` is a clip this output wrote (or is writing) and still the very file (what may be served)."""
        return self._files.holds(path)

    def _work(self) -> None:
        c0 = time.thread_time()
        for steps in self._writer.items():
            if self._error is not None:
                continue  # keep taking steps so write() never blocks on a dead writer
            try:
                for step in steps:
                    self._step(step)
            except Exception as exc:
                self._error = self._failure(exc)
                self._drop_clip()
            self.cpu_s = time.thread_time() - c0

    def _step(self, step: ClipStart | ClipEnd | Packet) -> None:
        if isinstance(step, Packet):
            self._clip.add(step.data, step.key, step.pts - self._start.first_pts)
            return
        self._end_clip()
        if isinstance(step, ClipStart):
            self._files.take(step.path, step.start)
            self._clip, self._start = Remuxer(step.path, step.size, step.fps), step
            self.made += 1
            self._files.expire(step.path, time.time())

    def _end_clip(self) -> None:
        clip, self._clip = self._clip, None
        if clip is not None:
            clip.close()
            self._files.finish(self._start.path)

    def _drop_clip(self) -> None:
        try:
            self._end_clip()
        except Exception:
            pass  # the clip is already failing; what was written before stays playable

    def _failure(self, exc: BaseException) -> OutputError:
        """The one line for a clip that could not be written: the clip's file, or its folder before one was open."""
        where = self._start.path if self._clip is not None else self._files.folder
        return as_output_error(f"{where} (event clips of {self.source_name})", exc, "writing the event clip")

    def close(self) -> None:
        """The open clip ends with what it was given (a stop, or an error elsewhere); raises the writer's error."""
        if self._closed:
            return
        self._closed = True
        self._writer.finish()
        if self._error is None:
            try:
                self._end_clip()
            except Exception as exc:
                self._error = self._failure(exc)
        self._files.close()
        if self._error is not None:
            raise self._error
