"""Event snapshots: the best frame of each ended track, its box drawn, as a JPEG in `events.snapshots`.

The events stage names each snapshot when it makes the track's end event (the event carries the name) and
hands the frame over on the FrameResult (`snapshots`); this output writes it whole (fsynced, then moved to
its name) before the outputs after it publish the event. With keep_days / keep_gb each source's snapshots
are entered in its record (streamdet.outputs.segments), and only those are ever expired.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..detections import FrameResult
from ..errors import OutputError
from .base import Output, write_atomically, write_error
from .segments import Retention, Segments


@dataclass(frozen=True)
class Snapshot:
    """An ended track's best frame, to be written as `path` (the name its end event carries)."""

    path: Path
    image: np.ndarray                 # the frame as it was kept; not drawn on here
    box: tuple[int, int, int, int]    # the track's box in it, pixels x1 y1 x2 y2
    track: int


def check_folder(folder: str) -> None:
    """Raises OutputError unless `folder` is a folder this run can write into (it is not made)."""
    if not Path(folder).is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"events.snapshots '{folder}': not a writable folder; create it first")


class SnapshotOutput(Output):
    """One source's snapshots, written on the output thread as their end events pass."""

    takes_events = True  # the tracks that end with their source have snapshots too

    def __init__(self, folder: str, source_name: str, keep: Retention):
        check_folder(folder)
        self.label = f"snapshots of {source_name}"
        # Kept on disk for expiry; in memory only without it, so what the web view serves is still checked.
        self._files = Segments(str(Path(folder) / f"{source_name}_{{start}}.jpg"), keep,
                               persist=bool(keep.keep_hours or keep.keep_gb))

    def write(self, result: FrameResult) -> None:
        for snapshot in result.snapshots:
            self._write(snapshot)

    def _write(self, snapshot: Snapshot) -> None:
        image = snapshot.image.copy()
        x1, y1, x2, y2 = snapshot.box
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 255), max(2, min(image.shape[:2]) // 200))
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        what = f"snapshot of track {snapshot.track}"
        write_atomically(snapshot.path, data.tobytes(), what)
        try:
            self._files.record(snapshot.path, time.time())
            self._files.expire(snapshot.path, time.time())
        except OSError as exc:
            raise write_error(what, exc) from None

    def holds(self, path: Path) -> bool:
        """`path` is a snapshot this output wrote and still the very file (what the web view may serve)."""
        return self._files.holds(path)

    def close(self) -> None:
        pass  # every snapshot is whole once written
