"""A window per source on the local display."""

from __future__ import annotations

import logging
import os

import cv2

from ..detections import FrameResult
from ..errors import StreamdetError
from .base import Output


log = logging.getLogger("streamdet")


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def want_window(show: str) -> bool:
    """Whether a run opens windows: `display.show` (auto, yes, no) against whether there is a display."""
    if show == "no":
        return False
    if display_available():
        return True
    if show == "yes":
        raise StreamdetError("--show: no display (DISPLAY is not set); run under a desktop session or use --no-show")
    log.info("no display (DISPLAY is not set): the window is off; results go to the outputs only")
    return False


class WindowOutput(Output):
    """q, Esc or the window's close button sets `closed`; the pipeline then stops the run."""

    label = "window"
    shows_pictures = True

    def __init__(self) -> None:
        self.closed = False
        self._windows: set[str] = set()

    def write(self, result: FrameResult) -> None:
        if self.closed:
            return
        name = result.source
        if name not in self._windows:
            cv2.namedWindow(name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            self._windows.add(name)
        cv2.imshow(name, result.frame.image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            self.closed = True
        elif cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) < 1:
            self.closed = True

    def close(self) -> None:
        if self._windows:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
            self._windows.clear()
