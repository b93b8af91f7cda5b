"""The settings of tracking and events: the `track:` and `events:` sections, and the zones and lines in them.

Sections of the settings tree (streamdet.config), kept apart because they belong together and the tree
would otherwise be one long file. The MQTT broker events go to is `config.mqtt`; the name rule, `config.names`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .fields import check_fields
from .names import NAME_CHARS, is_plain_name


@dataclass
class TrackConfig:
    enabled: bool = False
    high: float = 0.5
    low: float = 0.1
    new_track: float = 0.6
    birth_frames: int = 3
    match_iou: float = 0.2

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0.0 < self.low <= self.high <= 1.0:
            raise ValueError("low and high must satisfy 0 < low <= high <= 1")
        if not self.high <= self.new_track <= 1.0:
            raise ValueError("new_track must be between high and 1")
        if not 1 <= self.birth_frames <= 30:
            raise ValueError("birth_frames must be between 1 and 30")
        if not 0.0 < self.match_iou < 1.0:
            raise ValueError("match_iou must be between 0 and 1")


def check_shape(kind: str, name: str, points: list[list[float]]) -> None:
    """A zone's or line's name and points; how many points it needs is checked by each."""
    if not is_plain_name(name):
        raise ValueError(f"{kind} name {name!r} may hold only {NAME_CHARS} (it names topics)")
    for point in points:
        if len(point) != 2 or any(not math.isfinite(v) or v < 0 for v in point):
            raise ValueError(f"{kind} '{name}': {point} is not an [x, y] point "
                             "(pixels, or fractions of the frame from 0 to 1)")


@dataclass
class ZoneConfig:
    """A polygon; an object is in it when the middle of its box's bottom edge is (where it stands)."""

    name: str
    points: list[list[float]]

    def __post_init__(self) -> None:
        check_fields(self)
        check_shape("zone", self.name, self.points)
        if len(self.points) < 3:
            raise ValueError(f"zone '{self.name}' has {len(self.points)} point(s); a zone needs at least 3 [x, y] points")


@dataclass
class LineConfig:
    """A segment from the first point to the second; crossing it from its left to its right is `in`."""

    name: str
    points: list[list[float]]

    def __post_init__(self) -> None:
        check_fields(self)
        check_shape("line", self.name, self.points)
        if len(self.points) != 2 or self.points[0] == self.points[1]:
            raise ValueError(f"line '{self.name}' needs exactly 2 different [x, y] points")


def in_fractions(points: list[list[float]]) -> bool:
    """Points are fractions of the frame when every coordinate is at most 1."""
    return all(v <= 1.0 for p in points for v in p)


# Event clips: the ring of encoded packets reaches back this far at most (pre_capture may not ask for more);
# it is also held to CLIP_RING_BYTES, whichever comes first.
MAX_PRE_CAPTURE_S = 30.0
CLIP_RING_BYTES = 64 << 20


@dataclass
class EventsConfig:
    end_after: float = 2.0
    snapshots: str | None = None      # a folder: a JPEG of each ended track's best frame ({name} = source name)
    zones: list[ZoneConfig] = field(default_factory=list)
    lines: list[LineConfig] = field(default_factory=list)
    # A crossing counts once the point an object stands on is this far past the line, in heights of its box:
    # a detector's box jitters by a few per cent of its size, and an object standing on a line would
    # otherwise be counted in and out with every frame. 0.05 lets a walker count within a stride.
    cross_margin: float = 0.05
    clips: str | None = None          # a folder: a video of each tracked object ({name} = source name)
    pre_capture: float = 5.0          # seconds of video before a track starts
    post_capture: float = 5.0         # seconds after it ends
    max_clip_seconds: float = 300.0   # a track that never ends is cut into clips of at most this length
    keep_days: float = 0.0            # clips and snapshots of this source older than this are deleted; 0 = keep
    keep_gb: float = 0.0              # the oldest are deleted while they take more; 0 = no limit

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.end_after <= 3600:
            raise ValueError("end_after must be a positive number of seconds (at most 3600)")
        if not 0 <= self.pre_capture <= MAX_PRE_CAPTURE_S:
            raise ValueError(f"pre_capture must be between 0 and {MAX_PRE_CAPTURE_S:g} seconds (what the ring of "
                             "encoded video before an event holds)")
        if not 0 <= self.post_capture <= 3600:
            raise ValueError("post_capture must be between 0 and 3600 seconds")
        if not self.pre_capture + self.post_capture < self.max_clip_seconds <= 86400:
            raise ValueError("max_clip_seconds must be longer than pre_capture + post_capture (at most 86400)")
        if not 0 <= self.cross_margin <= 1:
            raise ValueError("cross_margin must be between 0 (count on the first change of side) and 1 "
                             "(a box's height past the line)")
        for key in ("snapshots", "clips"):
            if getattr(self, key) is not None and not getattr(self, key).strip():
                raise ValueError(f"{key} is empty; give a folder (it may hold {{name}}, the source's name), "
                                 "or leave it out (null) for none")
        for key in ("keep_days", "keep_gb"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be 0 (off) or positive")
        if self.clips and self.end_after - self.post_capture > MAX_PRE_CAPTURE_S:
            # A track is known to have ended only end_after after its last sighting: a clip's packets wait in
            # memory for the part of that beyond post_capture.
            raise ValueError(f"with clips, end_after may be at most post_capture + {MAX_PRE_CAPTURE_S:g} seconds")
        names = [z.name for z in self.zones] + [line.name for line in self.lines]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"zone/line name '{twice[0]}' is given twice; give each its own name")
