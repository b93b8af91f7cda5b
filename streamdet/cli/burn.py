"""The work of `streamdet render` (streamdet.cli.render): a copied segment with its detections file burnt in, drawn as a live run draws.

A copy recording keeps the camera's own pictures and writes what the run found beside each segment
(streamdet.outputs.sidecar). This decodes the segment, draws each frame's line with the live drawing
(streamdet.drawing.Annotator: zones and lines with their counts, then boxes, labels, the plate) and encodes
the result with the recording's encoder, each frame at its own time.
"""

from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..config.sections import OverlayConfig, RecordingConfig
from ..detections import Detections
from ..errors import OutputError, SourceError
from ..outputs.base import write_error
from ..outputs.sidecar import SidecarFrame, read_sidecar_counted, sidecar_path
from ..outputs.video import RECORDING_SUFFIXES, Encoder
from ..drawing import Annotator, OverlayStatus
from ..scene import Counts
from ..sources.demux import bgr_converter

log = logging.getLogger("streamdet")

# A frame the live run skipped (newest-frame policy) shows the line before it up to this long after it.
HOLD_S = 1.0


@dataclass(frozen=True)
class RenderJob:
    """What `streamdet render` was asked to do, its paths checked (`check_job`)."""

    segment: Path
    detections: Path
    output: Path
    lines: list[SidecarFrame]


@dataclass(frozen=True)
class Rendered:
    frames: int        # frames decoded and encoded
    lines_used: int    # distinct detection lines drawn on at least one frame
    lines: int         # lines the detections file holds


def check_job(segment: Path, detections: Path | None, output: Path, overwrite: bool) -> RenderJob:
    """Every cheap check, before anything is decoded; raises SourceError / OutputError with one line."""
    if not segment.is_file():
        raise SourceError(f"segment '{segment}': no such file; give a recorded segment (.mp4)")
    if detections is None:
        detections = sidecar_path(segment)
        if not detections.is_file():
            raise SourceError(f"segment '{segment}': no detections file {detections.name} beside it; "
                              "pass --detections")
    elif not detections.is_file():
        raise SourceError(f"detections '{detections}': no such file; give the segment's .jsonl")
    _check_output(output, [segment, detections], overwrite)
    _check_video(segment)
    try:
        lines, skipped = read_sidecar_counted(detections)
    except OSError as exc:
        raise SourceError(f"detections '{detections}': cannot be read ({exc.strerror or exc})") from None
    if skipped and lines:
        log.warning("detections '%s': %d line(s) skipped (damaged, or values no picture has: not numbers, "
                    "out of range); the other %d are drawn", detections, skipped, len(lines))
    if not lines and detections.stat().st_size > 0:
        raise SourceError(f"detections '{detections}': no line with pts and size in it; give the detections file "
                          "a copy recording writes beside its segment (SEGMENT.jsonl)")
    return RenderJob(segment, detections, output, lines)


def _check_output(output: Path, inputs: list[Path], overwrite: bool) -> None:
    if output.suffix.lower() not in RECORDING_SUFFIXES:
        shown = f"'{output.suffix}'" if output.suffix else "a name without an extension"
        raise OutputError(f"output '{output}': {shown} is not a supported recording format; "
                          f"use {', '.join(RECORDING_SUFFIXES)}")
    real = os.path.realpath(output)
    inode = _inode(output)
    for path in inputs:
        if real == os.path.realpath(path) or (inode is not None and inode == _inode(path)):
            raise OutputError(f"output '{output}' is the input '{path}'; choose another path")
    if output.is_dir():
        raise OutputError(f"output '{output}': is a folder; give a file name")
    parent = output.parent
    if not parent.is_dir():
        raise OutputError(f"output '{output}': folder '{parent}' does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output '{output}': folder '{parent}' is not writable; choose another path")
    if output.exists() and not overwrite:
        raise OutputError(f"output '{output}' exists already; choose another path, or pass --overwrite to replace it")


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _check_video(segment: Path) -> None:
    """Opening reads only the header: a file that is no video is refused before any decoding."""
    try:
        with av.open(str(segment)) as container:
            if not container.streams.video:
                raise SourceError(f"segment '{segment}': has no video stream; give a recorded segment")
    except av.FFmpegError as exc:
        raise SourceError(f"segment '{segment}': not a video ({exc.strerror or exc}); "
                          "give a recorded segment") from None


def render_segment(job: RenderJob, style: OverlayConfig = OverlayConfig(),
                   settings: RecordingConfig = RecordingConfig()) -> Rendered:
    """Decode, draw, encode; raises OutputError for a write error (what was written before it stays)."""
    annotator = Annotator(style)
    times = [line.pts for line in job.lines]
    used: set[int] = set()
    frames = 0
    encoder: Encoder | None = None
    with av.open(str(job.segment)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        start = stream.start_time or 0
        to_bgr = bgr_converter()
        try:
            for frame in _frames(container, stream, job.segment):
                image = to_bgr(frame)
                t = float((frame.pts - start) * stream.time_base) if frame.pts is not None else frames / fps
                index = _line_at(times, t, 0.5 / fps)
                if index is not None:
                    used.add(index)
                    _draw(annotator, image, job.lines[index])
                if encoder is None:
                    encoder = Encoder(job.output, image.shape[1::-1], fps, settings)
                encoder.add(image, round(t * 1000))
                frames += 1
            if encoder is not None:
                encoder.close()
                encoder = None
        except OSError as exc:
            raise write_error(str(job.output), exc) from None
        finally:
            if encoder is not None:
                _close_quietly(encoder)
    if frames == 0:
        raise SourceError(f"segment '{job.segment}': no frame could be decoded (damaged or empty)")
    return Rendered(frames, len(used), len(job.lines))


def _frames(container, stream, segment: Path):
    """The segment's frames; a segment still being written (or cut by a crash) ends at its last whole frame."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
            decoded = packet.decode()
        except StopIteration:
            return
        except av.FFmpegError as exc:
            log.warning("segment '%s': decoding stopped (%s); rendered the frames before it", segment,
                        exc.strerror or exc)
            return
        yield from decoded


def _close_quietly(encoder: Encoder) -> None:
    try:
        encoder.close()
    except Exception:
        pass  # the write already failed; that error is the one to report


def _line_at(times: list[float], t: float, half_period: float) -> int | None:
    """The line for a frame at `t`: the newest at or before it (half a frame period's slack for rounding),
    held over frames the run skipped for at most HOLD_S; None when there is none that recent."""
    index = bisect.bisect_right(times, t + half_period) - 1
    if index < 0 or t - times[index] > HOLD_S:
        return None
    return index


def _draw(annotator: Annotator, image: np.ndarray, line: SidecarFrame) -> None:
    """The live drawing (streamdet.stages.Annotate.paint) from a line, scaled when the picture's size differs."""
    height, width = image.shape[:2]
    scale = np.ones(2, np.float32)
    if line.size[0] > 0 and line.size[1] > 0:
        scale = np.array([width / line.size[0], height / line.size[1]], np.float32)
    if line.scene:
        try:
            zones, lines, counts = _scene(line.scene, scale)
        except (ValueError, KeyError, TypeError, AttributeError):
            zones = None  # a hand-edited or damaged scene: the boxes still show
        if zones is not None:
            annotator.draw_scene(image, zones, lines, counts)
    annotator.draw(image, _scaled(line.detections, scale), _status(line.plate))


def _scaled(detections: Detections, scale: np.ndarray) -> Detections:
    if np.allclose(scale, 1.0):
        return detections
    return Detections(xyxy=detections.xyxy * np.tile(scale, 2), scores=detections.scores,
                      class_ids=detections.class_ids, labels=detections.labels, track_ids=detections.track_ids)


def _status(plate: dict | None) -> OverlayStatus | None:
    if not isinstance(plate, dict) or plate.get("latency_ms") is None:
        return None
    fps = plate.get("fps")
    return OverlayStatus(None if fps is None else float(fps), float(plate["latency_ms"]))


def _scene(scene: dict, scale: np.ndarray) -> tuple[dict, dict, Counts]:
    """A line's `scene` as draw_scene takes it: shapes in the picture's pixels, the counts as they stood."""
    zones, lines, counts = {}, {}, Counts()
    for name, zone in (scene.get("zones") or {}).items():
        zones[name] = np.array(zone["points"], np.float32).reshape(-1, 2) * scale
        counts.zones[name] = {"inside": int(zone.get("inside", 0))}
    for name, line in (scene.get("lines") or {}).items():
        lines[name] = np.array(line["points"], np.float32).reshape(2, 2) * scale
        counts.lines[name] = {"in": int(line.get("in", 0)), "out": int(line.get("out", 0))}
    return zones, lines, counts
