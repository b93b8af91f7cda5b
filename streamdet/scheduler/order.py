"""Finished frames back in their sources' order, and the first error of a run."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from ..engines.base import Completed


class ReorderBuffer:
    """Finished frames arrive in any order from the engine's threads and leave in their source's order.

    `Job.seq` counts each source's frames. Sources do not wait for each other: a camera's frames between
    detections go on while another camera's frame is in the network.
    """

    def __init__(self) -> None:
        self._early: dict[tuple[int, int], Completed] = {}  # (source, seq): arrived before one of its source's
        self._next: dict[int, int] = {}                     # per source: the seq it hands out next
        self._ready: deque[Completed] = deque()
        self.handed = 0

    def put(self, completed: Completed) -> None:
        source, seq = completed.job.source_id, completed.job.seq
        expected = self._next.get(source, 0)
        if seq != expected:
            self._early[(source, seq)] = completed
            return
        while completed is not None:
            self._ready.append(completed)
            expected += 1
            completed = self._early.pop((source, expected), None)
        self._next[source] = expected

    def pop(self) -> Completed | None:
        """The next frame whose source's frames before it are out, if one has arrived."""
        if not self._ready:
            return None
        self.handed += 1
        return self._ready.popleft()

    def __len__(self) -> int:
        return len(self._early) + len(self._ready)


class Failure:
    """The first error raised on any thread of a run; later ones are consequences and are dropped."""

    def __init__(self, on_first: Callable[[], None]):
        self._lock = threading.Lock()
        self._on_first = on_first
        self.error: BaseException | None = None

    def record(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is not None:
                return
            self.error = exc
        self._on_first()
