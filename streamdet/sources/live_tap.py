"""A network camera's packets for its live view in the browser (streamdet.web.live_camera), taken on its reader
thread: nothing is copied or kept while nobody watches, beyond each connection's format (one line per
connection), so that a viewer who comes later can start at the next keyframe.

Unlike the copy recording's PacketTap there is no queue: the receiver takes each packet at once, on the reader
thread, into a ring of its own bounded in bytes; it never blocks.
"""

from __future__ import annotations

from typing import Protocol

from .demux import CameraPacket, Connected


class PacketReceiver(Protocol):
    """Who takes the packets (streamdet.web.live_camera.CameraFeed)."""

    @property
    def watched(self) -> bool: ...

    def connected(self, item: Connected) -> None: ...

    def put(self, packet: CameraPacket) -> None: ...


class LiveTap:
    """Where a camera's reader hands its packets for the live view; `receiver` is set once the web view is up."""

    def __init__(self) -> None:
        self.receiver: PacketReceiver | None = None
        self.last: Connected | None = None  # the newest connection, for a receiver attached after it came

    @property
    def watched(self) -> bool:
        """Whether packets are wanted now: checked per packet before any copy is made."""
        receiver = self.receiver
        return receiver is not None and receiver.watched

    def connected(self, item: Connected) -> None:
        self.last = item
        receiver = self.receiver
        if receiver is not None:
            receiver.connected(item)

    def put(self, packet: CameraPacket) -> None:
        receiver = self.receiver
        if receiver is not None:
            receiver.put(packet)
