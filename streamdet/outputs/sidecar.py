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


# Coordinates past this are no picture's (and past what OpenCV draws in int32): such a line is damaged.
MAX_COORD = 1e6
MAX_CLASS_ID = 2**31 - 1


def read_sidecar(path: Path) -> list[SidecarFrame]:
    """Every whole line of a sidecar, in pts order; a line cut off by a crash, or damaged, is skipped."""
    return read_sidecar_counted(path)[0]


def read_sidecar_counted(path: Path) -> tuple[list[SidecarFrame], int]:
    """`read_sidecar`, and how many whole lines it skipped: damaged, or with values nothing can draw (a NaN
    or huge box or point, a class id past int32, a plate that is no number)."""
    frames, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for text in f:
            try:
                frames.append(_frame(json.loads(text)))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError):
                skipped += text.endswith("\n")  # a last line cut off mid-write is expected, not counted
    frames.sort(key=lambda f: f.pts)
    return frames, skipped


def _frame(line: dict) -> SidecarFrame:
    """One line read back; raises ValueError (or a lookup error) for a value that is missing or out of range."""
    found = line["detections"]
    tracks = [d.get("track") for d in found]
    class_ids = [int(d["class_id"]) for d in found]
    if any(not 0 <= c <= MAX_CLASS_ID for c in class_ids):
        raise ValueError("class_id out of range")
    detections = Detections(
        xyxy=_coords(np.array([d["box"] for d in found], np.float64).reshape(-1, 4)).astype(np.float32),
        scores=_finite(np.array([d["score"] for d in found], np.float64)).astype(np.float32),
        class_ids=np.array(class_ids, np.int32),
        labels=tuple(str(d["label"]) for d in found),
        track_ids=(np.array([int(t or -1) for t in tracks], np.int32) if any("track" in d for d in found) else None),
    )
    size = (int(line["size"][0]), int(line["size"][1]))
    if not all(0 <= v <= MAX_COORD for v in size):
        raise ValueError("size out of range")
    return SidecarFrame(float(_finite(np.array(line["pts"], np.float64))), size, detections,
                        _plate(line.get("plate")), _scene(line.get("scene")))


def _finite(values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError("not a finite number")
    return values


def _coords(values: np.ndarray) -> np.ndarray:
    if not (np.abs(_finite(values)) <= MAX_COORD).all():
        raise ValueError("coordinate out of range")
    return values


def _plate(plate) -> dict | None:
    """The plate as drawn, its numbers checked; None where there is none."""
    if plate is None or plate.get("latency_ms") is None:
        return None
    fps = plate.get("fps")
    _finite(np.array([plate["latency_ms"], 0.0 if fps is None else fps], np.float64))
    return {"fps": None if fps is None else float(fps), "latency_ms": float(plate["latency_ms"])}


def _scene(scene) -> dict | None:
    """The zones and lines with their counts, each point and count checked; None where there are none."""
    if scene is None:
        return None
    zones = {str(name): {"points": _coords(np.array(z["points"], np.float64).reshape(-1, 2)).tolist(),
                         "inside": int(z.get("inside", 0))}
             for name, z in (scene.get("zones") or {}).items()}
    lines = {str(name): {"points": _coords(np.array(seg["points"], np.float64).reshape(2, 2)).tolist(),
                         "in": int(seg.get("in", 0)), "out": int(seg.get("out", 0))}
             for name, seg in (scene.get("lines") or {}).items()}
    return {"zones": zones, "lines": lines}
