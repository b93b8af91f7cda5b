"""A copy recording's timeline: a camera's connections, one after another, on one clock in seconds.

Each connection's packets keep their own spacing (the camera's timestamps); a reconnect goes on after a gap
as long as the outage was (measured by when packets arrived), at least a frame. A processed frame is placed
on the same timeline by its own timestamp when it came through a recorded connection, else (detected on a
sub-stream) by when it was captured against when the newest packet arrived.

Nothing here writes: the copy recording (streamdet.outputs.copy) muxes packets at the places given here and
its detections (streamdet.outputs.sidecar_writer) are written at the places frames get here.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..sources.demux import CameraPacket, Connected, StreamFormat

_KEEP_LINKS = 4  # earlier connections remembered, for frames processed after a reconnect


@dataclass
class Link:
    """One connection to the camera, placed on the recording's timeline."""

    id: int
    format: StreamFormat | None
    arrived: float
    first_dts: int | None = None     # the first video packet's dts (camera ticks)
    last_dts: int | None = None
    start_s: float = 0.0             # where that packet sits on the recording's timeline
    last_s: float = 0.0              # the newest video packet's place, and when it came
    last_arrived: float = 0.0

    def at(self, ticks: int, time_base: Fraction) -> float:
        return self.start_s + float((ticks - self.first_dts) * time_base)


@dataclass(frozen=True)
class Placed:
    """A video packet's place on the timeline, in seconds."""

    pts_s: float
    dts_s: float


class Timeline:
    """The connections of one camera on the recording's clock (used on the copy recording's writer thread)."""

    def __init__(self) -> None:
        self._links: dict[int, Link] = {}
        self.current: Link | None = None

    def connected(self, item: Connected) -> None:
        """A new connection: it goes on where the last one stopped, the outage added at its first packet."""
        before = self.current
        self.current = link = Link(item.connection, item.format, item.arrived)
        self._links = {k: v for k, v in self._links.items() if k >= item.connection - _KEEP_LINKS}
        self._links[item.connection] = link
        if before is not None and before.first_dts is not None:
            link.start_s = before.last_s
            link.last_s, link.last_arrived = before.last_s, before.last_arrived

    def recorded(self, packet: CameraPacket) -> bool:
        """Whether a packet is of the current connection and its video can be recorded."""
        link = self.current
        return link is not None and link.id == packet.connection and link.format is not None

    def video(self, packet: CameraPacket) -> Placed:
        """Place a video packet of the current connection (see `recorded`), and move the timeline on to it."""
        link = self.current
        fmt = link.format
        # RTP gives no dts until the camera's reordering is known, and may give a first keyframe no time at
        # all: those follow the previous packet by a frame period (the muxer needs every packet's dts).
        if packet.dts is not None:
            dts = packet.dts
        elif link.last_dts is not None:
            dts = link.last_dts + max(1, round(1 / ((fmt.fps or 25.0) * fmt.video_time_base)))
        else:
            dts = packet.pts if packet.pts is not None else 0
        link.last_dts = dts
        if link.first_dts is None:
            link.first_dts = dts
            if link.last_arrived:  # after an outage: the gap as long as it was, at least a frame
                link.start_s += max(packet.arrived - link.last_arrived, 1.0 / (fmt.fps or 25.0))
        dts_s = link.at(dts, fmt.video_time_base)
        pts_s = link.at(packet.pts, fmt.video_time_base) if packet.pts is not None else dts_s
        link.last_s, link.last_arrived = dts_s, packet.arrived
        return Placed(pts_s, dts_s)

    def audio(self, packet: CameraPacket) -> float | None:
        """Where a sound packet of the current connection plays; None before its video has started."""
        link = self.current
        if link.first_dts is None or packet.pts is None:
            return None
        # FFmpeg puts a connection's audio and video on one clock: the audio follows the video's start.
        fmt = link.format
        return link.start_s + float(packet.pts * fmt.audio_time_base - link.first_dts * fmt.video_time_base)

    def place(self, connection: int, pts_ms: float | None, captured: float) -> float | None:
        """Where a processed frame sits on the timeline; None while the packets have not got there."""
        link = self._links.get(connection)
        if link is not None and pts_ms is not None and link.first_dts is not None and link.format is not None:
            at = link.start_s + pts_ms / 1000 - float(link.first_dts * link.format.video_time_base)
            return at if at <= link.last_s or link is not self.current else None
        current = self.current
        if current is None or current.first_dts is None:
            return None
        # Another stream's frame (a sub-stream): by when it was captured against when packets came.
        if captured > current.last_arrived:
            return None
        return current.last_s - (current.last_arrived - captured)
