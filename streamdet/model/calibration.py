"""Frames for quantising a model and for checking the result: which files, which frames, and the
model input each frame becomes.

The input must be what the pipeline feeds the model, or the INT8 ranges fit
other data: `prepare` does in numpy what Detector.infer_input and the
preprocessing built by model.ir.prepare do inside the compiled model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENCV_FFMPEG_IS_THREAD_SAFE", "1")  # as streamdet.sources sets it, before cv2 loads

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402

from ..errors import SourceError  # noqa: E402
from .detector import fit_input  # noqa: E402
from .ir import ModelForm, input_dims
from ..sources.files import IMAGE_SUFFIXES  # noqa: E402

# Inside folders only: a file named on the command line is tried whatever its name.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"})


@dataclass(frozen=True)
class Clip:
    """One file of footage: a video, or a still image (one frame)."""

    path: Path
    frames: int
    still: bool
    group: str  # what the user named: the file, or the folder it is in ("name/")


@dataclass(frozen=True)
class Footage:
    clips: tuple[Clip, ...]

    @property
    def total(self) -> int:
        return sum(c.frames for c in self.clips)

    def names(self, indices: np.ndarray | None = None) -> str:
        """The files and folders as named (folders as "name/"), those holding any of `indices` only
        when given, each once."""
        clips = self.clips if indices is None else [self.clips[i] for i in sorted(set(self.locate(indices)[0]))]
        return ", ".join(dict.fromkeys(c.group for c in clips))

    def locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(clip number, frame within the clip) of each index into all the footage end to end."""
        starts = np.cumsum([0] + [c.frames for c in self.clips])
        clip = np.searchsorted(starts, indices, side="right") - 1
        return clip, indices - starts[clip]


@dataclass(frozen=True)
class InputSpec:
    """What the raw model takes: size (width, height) as cv2.resize takes it, form, element type."""

    size: tuple[int, int]
    form: str
    dtype: np.dtype


def input_spec(model: ov.Model, form: ModelForm) -> InputSpec:
    port = model.inputs[0]
    dims = input_dims(port, form)
    height, width = (dims[2], dims[3]) if form.form == "legacy" else (dims[1], dims[2])
    return InputSpec((width, height), form.form, np.dtype(port.get_element_type().to_dtype()))


def prepare(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """An 8-bit BGR frame as the raw model's input: resized, then colour order, layout and element type
    converted as the compiled model's preprocessing does (RGB for the TF form, NCHW for the legacy one)."""
    image = fit_input(image, spec.size)
    if spec.form == "tf":
        batch = image[np.newaxis, :, :, ::-1]        # NHWC, RGB
    else:
        batch = image.transpose(2, 0, 1)[np.newaxis]  # NCHW, BGR
    return np.ascontiguousarray(batch, dtype=spec.dtype)


def _files(spec: str, flag: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        try:
            files = sorted(p for p in path.iterdir()
                           if p.suffix.lower() in VIDEO_SUFFIXES.union(IMAGE_SUFFIXES) and p.is_file())
        except OSError as exc:
            raise SourceError(f"{flag} '{spec}': the folder cannot be read ({exc.strerror})") from None
        if not files:
            raise SourceError(f"{flag} '{spec}': the folder holds no videos or images; "
                              f"give a folder with {' '.join(sorted(VIDEO_SUFFIXES.union(IMAGE_SUFFIXES)))} files")
        return files
    if not path.exists():
        raise SourceError(f"{flag} '{spec}': no such file or folder; check the path")
    return [path]


def _clip(path: Path, flag: str, group: str) -> Clip:
    if not os.access(path, os.R_OK):
        raise SourceError(f"{flag} '{path}': permission denied; make the file readable")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if not cv2.haveImageReader(str(path)):
            raise SourceError(f"{flag} '{path}': not a readable image; give a video, an image or a folder of them")
        return Clip(path, 1, still=True, group=group)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise SourceError(f"{flag} '{path}': not a readable video (not a video file, or a codec FFmpeg "
                              "lacks); give a video, an image or a folder of them")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:  # the container does not say: count by decoding
            count = 0
            while cap.grab():
                count += 1
        return Clip(path, count, still=False, group=group)
    finally:
        cap.release()


def _group(spec: str) -> str:
    path = Path(spec)
    return f"{path.resolve().name}/" if path.is_dir() else path.name


def list_footage(specs: Sequence[str], flag: str) -> Footage:
    """Every video and image `specs` name (folders: theirs, in name order), checked to open, with
    their frame counts; a SourceError naming the first that is missing or unreadable, or when
    there are no frames at all."""
    clips = tuple(_clip(path, flag, _group(spec)) for spec in specs for path in _files(spec, flag))
    footage = Footage(clips)
    if footage.total == 0:
        raise SourceError(f"{flag}: no frames in {footage.names()}; give footage from the cameras the model will watch")
    return footage


def spread(candidates: np.ndarray, count: int) -> np.ndarray:
    """`count` of the sorted `candidates`, evenly spread over them (all of them when there are fewer)."""
    if count >= len(candidates):
        return candidates
    return candidates[((np.arange(count) + 0.5) * len(candidates) / count).astype(np.int64)]


def split(total: int, calibrate: int, check: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of frames to calibrate on and, from those left between them, frames to check on.

    When the footage is too short for both counts, it is shared in their proportion.
    """
    if total < calibrate + check:
        calibrate = max(1, round(total * calibrate / (calibrate + check)))
        check = total - calibrate
    if check < 1:
        raise SourceError(f"--calib: only {total} frame(s), none left to check the INT8 model on; "
                          "give longer footage, or other footage with --check")
    chosen = spread(np.arange(total), calibrate)
    return chosen, spread(np.setdiff1d(np.arange(total), chosen), check)


def read_frames(footage: Footage, indices: np.ndarray, transform: Callable[[np.ndarray], np.ndarray],
                flag: str) -> tuple[list[np.ndarray], list[int]]:
    """transform(frame) of each frame `indices` picks, and the clip number of each; every clip is decoded
    once from its start, so no seeking (often inexact in compressed video) is needed."""
    clip_of, frame_of = footage.locate(np.sort(indices))
    out: list[np.ndarray] = []
    owners: list[int] = []
    for number, clip in enumerate(footage.clips):
        wanted = set(frame_of[clip_of == number].tolist())
        if not wanted:
            continue
        if clip.still:
            image = cv2.imread(str(clip.path), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"{flag} '{clip.path}': cannot be decoded as an image")
            out.append(transform(image))
            owners.append(number)
            continue
        cap = cv2.VideoCapture(str(clip.path), cv2.CAP_FFMPEG)
        try:
            for index in range(max(wanted) + 1):
                # The container may promise more frames than there are: then the ones there are.
                if not cap.grab():
                    break
                if index in wanted:
                    ok, image = cap.retrieve()
                    if not ok:
                        break
                    out.append(transform(image))
                    owners.append(number)
        finally:
            cap.release()
    return out, owners
