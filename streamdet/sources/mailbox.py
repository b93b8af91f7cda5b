"""What a live source's reader thread tells its watchdog in `feed()`: opened, or lost.

The frames themselves do not pass through here: the reader hands them on itself (LiveSource._arrive).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .base import SourceInfo


@dataclass(frozen=True, slots=True)
class Opened:
    info: SourceInfo


@dataclass(frozen=True, slots=True)
class Lost:
    reason: str
    fatal: bool = False  # retrying cannot help (a decoder asked for that this machine lacks)


class Mailbox:
    """Hands what the current reader thread has to say to the watchdog, one item at a time.

    A reader that the watchdog gave up on is retired by bumping the
    generation: whatever it hands in afterwards is refused, which tells it to
    release its capture and end.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Opened | Lost | None = None
        self._generation = 0
        self._closed = False

    def put(self, generation: int, item: Opened | Lost) -> bool:
        """Wait for the slot; False when this reader is retired or the source closed."""
        with self._cond:
            while self._item is not None and generation == self._generation and not self._closed:
                self._cond.wait()
            if generation != self._generation or self._closed:
                return False
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> Opened | Lost | None:
        """The next item, or None after `timeout` seconds without one (or once closed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._item is None and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def current(self, generation: int) -> bool:
        """Whether a reader of this generation is still the one wanted (GIL-atomic read: no lock)."""
        return generation == self._generation and not self._closed

    def new_generation(self) -> int:
        """Retire the current reader (if any); the next one hands in under the number returned."""
        with self._cond:
            self._generation += 1
            self._item = None
            self._cond.notify_all()
            return self._generation

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
