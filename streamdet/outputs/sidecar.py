"""The detections of a copied recording segment, in a file beside it: `SEGMENT.jsonl` for `SEGMENT.mp4`.

A copy recording (recording.mode: copy) holds the camera's own pictures, nothing drawn on them. What the run
found in them goes here, one line per processed frame, placed on the segment's own timeline (`pts`, seconds
from the segment's start, as a player reports `currentTime`), with everything the live drawing shows: the
boxes (in the recorded picture's pixels, `size`), the FPS/latency plate and the zones and lines with their
counts. The web view's recording player draws from it, and `streamdet render` burns it in.

A line is the JSONL output's line (streamdet.outputs.jsonl.record) and these keys:

    pts     seconds on the segment's timeline
    size    [width, height] the boxes and shapes are in (the recorded stream's)
    plate   {"fps": float|null, "latency_ms": float} as drawn live; absent where no plate is drawn
    scene   {"zones": {name: {"points": [[x, y], ...], "inside": n}},
             "lines": {name: {"points": [[x, y], [x, y]], "in": n, "out": n}}}; absent without zones and lines
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..detections import Detections, FrameResult
from .jsonl import record

SUFFIX = ".jsonl"


def sidecar_path(segment: Path) -> Path:
    """Where a segment's detections go: beside it, the same name with .jsonl."""
    return segment.with_suffix(SUFFIX)


def sidecar_record(result: FrameResult, size: tuple[int, int], plate) -> dict:
    """One frame's line without its `pts` (`plate` a streamdet.drawing.OverlayStatus or None)."""
    line = record(result)
    line["size"] = list(size)
    if plate is not None:
        line["plate"] = {"fps": None if plate.fps is None else round(plate.fps, 2),
                         "latency_ms": round(plate.latency_ms, 1)}
    state = result.scene
    if state is not None and (state.scene.zones or state.scene.lines):
        line["scene"] = {
            "zones": {name: {"points": np.round(poly, 1).tolist(), "inside": state.counts.zones[name]["inside"]}
                      for name, poly in state.scene.zones.items()},
            "lines": {name: {"points": np.round(seg, 1).tolist(), "in": state.counts.lines[name]["in"],
                             "out": state.counts.lines[name]["out"]}
                      for name, seg in state.scene.lines.items()},
        }
    return line


def sidecar_text(line: dict, pts_s: float) -> str:
    """The line with its place on the segment's timeline, as written: JSON and a newline."""
    return json.dumps({"pts": round(pts_s, 4), **line}, separators=(",", ":")) + "\n"


def sidecar_line(result: FrameResult, pts_s: float, size: tuple[int, int], plate) -> str:
    """One frame's line at `pts_s`, ended by a newline."""
    return sidecar_text(sidecar_record(result, size, plate), pts_s)


@dataclass(frozen=True)
class SidecarFrame:
    """One line read back: what was found at `pts` and how it was drawn."""

    pts: float
    size: tuple[int, int]
    detections: Detections
    plate: dict | None
    scene: dict | None


def read_sidecar(path: Path) -> list[SidecarFrame]:
    """Every whole line of a sidecar, in pts order; a line cut off by a crash is skipped."""
    frames = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for text in f:
            try:
                line = json.loads(text)
                found = line["detections"]
                tracks = [d.get("track") for d in found]
                detections = Detections(
                    xyxy=np.array([d["box"] for d in found], np.float32).reshape(-1, 4),
                    scores=np.array([d["score"] for d in found], np.float32),
                    class_ids=np.array([d["class_id"] for d in found], np.int32),
                    labels=tuple(str(d["label"]) for d in found),
                    track_ids=(np.array([t or -1 for t in tracks], np.int32)
                               if any("track" in d for d in found) else None),
                )
                frames.append(SidecarFrame(float(line["pts"]), (int(line["size"][0]), int(line["size"][1])),
                                           detections, line.get("plate"), line.get("scene")))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                continue
    frames.sort(key=lambda f: f.pts)
    return frames
