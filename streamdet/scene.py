"""What a source's scene is and what happens in it, as the events stage makes it and the outputs, the
drawing and `streamdet render` read it: the zones and lines in pixels, their counts, and events.

Below both the stages (streamdet.events) and the outputs, so neither reaches up to the other for them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .config.events import EventsConfig, LineConfig, ZoneConfig, in_fractions
from .errors import ConfigError


@dataclass(frozen=True)
class Event:
    kind: str                      # start, end, zone_enter, zone_exit, line_cross
    source: str
    track: int
    label: str
    score: float                   # the track's best score so far
    box: tuple[float, ...]         # the track's box in this frame (pixels, x1 y1 x2 y2)
    time: str                      # wall-clock time of the frame, ISO 8601 UTC
    frame: int
    pts_s: float | None            # position in a video file
    zone: str | None = None
    line: str | None = None
    direction: str | None = None   # line_cross: in or out
    duration_s: float | None = None  # end: from the first to the last sighting
    snapshot: str | None = None    # end: the JPEG of the best frame, when events.snapshots is set
    clip: str | None = None        # end: the video of the track with pre- and post-capture, when events.clips is set
    clip_url: str | None = None    # end: where the web view serves that clip, when it is on

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Scene:
    """A source's zones and lines in pixels, for pictures of `size` (width, height; (0, 0) before any came)."""

    zones: dict[str, np.ndarray]   # name -> (n, 2) float32 polygon
    lines: dict[str, np.ndarray]   # name -> (2, 2) float32 segment
    size: tuple[int, int] = (0, 0)

    @classmethod
    def of(cls, events: EventsConfig, width: int, height: int, source: str) -> Scene:
        """The config's shapes for a frame of this size; raises ConfigError for a point outside the frame
        (unchecked while the size is not known: a camera away at the start)."""
        scene = cls.resized(events, width, height)
        if width and height:
            for kind, shapes in (("zone", scene.zones), ("line", scene.lines)):
                for name, points in shapes.items():
                    outside = [p for p in points.tolist() if p[0] > width or p[1] > height]
                    if outside:
                        x, y = outside[0]
                        raise ConfigError(f"source '{source}': {kind} '{name}': point [{x:g}, {y:g}] is outside "
                                          f"the {width}x{height} frame; give pixels inside it, or fractions from 0 to 1")
        return scene

    @classmethod
    def resized(cls, events: EventsConfig, width: int, height: int) -> Scene:
        """The config's shapes for pictures of this size, unchecked: shapes given in fractions are put on this
        size again (a camera back at another resolution), shapes given in pixels stay where they were given."""
        def pixels(shape: ZoneConfig | LineConfig) -> np.ndarray:
            points = np.array(shape.points, np.float32)
            if in_fractions(shape.points):
                points *= np.array([width, height], np.float32)
            return points

        return cls({z.name: pixels(z) for z in events.zones}, {line.name: pixels(line) for line in events.lines},
                   (width, height))

    def __bool__(self) -> bool:
        return bool(self.zones or self.lines)


@dataclass
class Counts:
    """What happened at one source, for the summary and the overlay."""

    tracks: dict[str, int] = field(default_factory=dict)          # label -> tracks started
    zones: dict[str, dict[str, int]] = field(default_factory=dict)  # zone -> enter/exit/inside
    lines: dict[str, dict[str, int]] = field(default_factory=dict)  # line -> in/out

    def copy(self) -> Counts:
        return Counts(dict(self.tracks), {k: dict(v) for k, v in self.zones.items()},
                      {k: dict(v) for k, v in self.lines.items()})


@dataclass(frozen=True)
class SceneState:
    """A source's zones and lines with their counts as they stood at one frame (the counts a copy)."""

    scene: Scene
    counts: Counts
