"""How the command line logs: one `streamdet: ...` line per message on stderr."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="streamdet: %(message)s", stream=sys.stderr, force=True)
    if level != "debug":
        # OpenCV's own warnings repeat, less clearly, what our log lines say
        # (a stream timed out, an open failed), or are about settings made on
        # purpose (OPENCV_FFMPEG_IS_THREAD_SAFE); FFmpeg's error lines stay, as
        # they carry the cause (connection refused, 401 Unauthorized).
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
