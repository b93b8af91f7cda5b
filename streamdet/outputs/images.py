"""Annotated pictures: one image file, or a folder of them named after the input images."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from ..detections import FrameResult
from ..errors import OutputError
from .base import Output, staged_path, write_error



class ImageOutput(Output):
    """Each picture is encoded under a hidden name and moved into place, so no half image is ever left.

    `folder` set: one file per input image, under the input's file name.
    Otherwise `path` is the one picture to write (a single-image source).
    """

    shows_pictures = True

    def __init__(self, path: str | os.PathLike, folder: bool):
        self.path = Path(path)
        self.label = str(self.path)
        self.folder = folder

    def write(self, result: FrameResult) -> None:
        target = self.path / (result.frame.file or f"{result.frame.index:06d}.png") if self.folder else self.path
        staged = staged_path(target)
        try:
            if self.folder:
                self.path.mkdir(exist_ok=True)
            ok = cv2.imwrite(str(staged), result.frame.image)
            if not ok:
                raise OutputError(f"output '{target}': the image could not be encoded as {target.suffix}")
            os.replace(staged, target)
        except OSError as exc:
            raise write_error(str(target), exc) from None
        finally:
            staged.unlink(missing_ok=True)

    def close(self) -> None:
        pass
