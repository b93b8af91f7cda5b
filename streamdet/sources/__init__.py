"""Where frames come from: files, folders of images, webcams and network cameras.

`open_source` picks the kind from how the source is written and checks only
what is cheap; `Source.open()` does the slow part.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

# OpenCV serialises every FFmpeg open behind one process-wide lock unless told
# that FFmpeg is thread-safe (it is since FFmpeg 4). With the lock, a camera
# that hangs while opening holds up every other open - other cameras'
# reconnects and files alike - for its whole open timeout. Set before cv2 loads.
os.environ.setdefault("OPENCV_FFMPEG_IS_THREAD_SAFE", "1")

from ..config.sections import SourceConfig  # noqa: E402
from ..errors import SourceError  # noqa: E402
from .base import Frame, Source, SourceHealth, SourceInfo  # noqa: E402
from .files import IMAGE_SUFFIXES, ImageFilesSource, VideoFileSource  # noqa: E402
from .cameras import CameraSource, NetworkSource  # noqa: E402
from .live import LiveSource  # noqa: E402
from ..urls import NETWORK_SCHEMES, is_camera_spec, mask_url, scheme_of  # noqa: E402

__all__ = ["Frame", "Source", "SourceHealth", "SourceInfo", "ImageFilesSource", "VideoFileSource", "LiveSource",
           "NetworkSource", "CameraSource", "open_source", "open_all", "mask_url"]


def open_source(spec: str, settings: SourceConfig = SourceConfig()) -> Source:
    """The source `spec` names (file, folder, image, camera index or URL); not opened yet."""
    spec = str(spec)
    scheme = scheme_of(spec)
    if scheme is not None:
        if scheme not in NETWORK_SCHEMES:
            supported = ", ".join(f"{s}://" for s in NETWORK_SCHEMES)
            raise SourceError(f"source '{mask_url(spec)}': {scheme}:// is not supported; use {supported}, "
                              "a file, a folder of images or a camera index")
        return NetworkSource(spec, settings)
    if is_camera_spec(spec):
        return CameraSource(spec, settings)
    path = Path(spec)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource(path, settings)
    return VideoFileSource(path, settings)


def open_all(sources: list[Source]) -> list[SourceInfo]:
    """Open every source at once: a camera that is down must not hold up the others for its open timeout."""
    if len(sources) == 1:
        return [sources[0].open()]
    infos: list[SourceInfo | None] = [None] * len(sources)
    errors: list[BaseException | None] = [None] * len(sources)

    def open_one(k: int) -> None:
        try:
            infos[k] = sources[k].open()
        except BaseException as exc:  # re-raised below, on the caller's thread
            errors[k] = exc

    threads = [threading.Thread(target=open_one, args=(k,), name=f"open-{s.name}", daemon=True)
               for k, s in enumerate(sources)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return infos  # type: ignore[return-value]
