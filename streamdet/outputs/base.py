"""What every output is: something that takes processed frames and is finalised once."""

from __future__ import annotations

import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path

from ..detections import FrameResult
from ..errors import OutputError
from ..files import replace_whole


class Output(ABC):
    """A recording, a folder of images, a JSONL file, an events file, a window, the web view, the MQTT publisher.

    `write` is called on the pipeline's output thread, in frame order.
    `close` finalises (safe to call twice), also after a failed run, and
    raises OutputError when the output could not be completed.
    """

    label: str = ""            # what error messages call it: the path, or "window"
    shows_pictures = False     # it wants frames with boxes drawn on them
    takes_events = False       # it publishes events; also handed those of tracks that end with their source
    cpu_s: float = 0.0         # CPU seconds spent on threads the output owns

    @abstractmethod
    def write(self, result: FrameResult) -> None: ...

    def flush(self) -> None:
        """Push out anything buffered; called when the pipeline is idle."""

    @abstractmethod
    def close(self) -> None: ...


class WriterThread:
    """An output's own writer thread and the bounded queue it drains: a writer that falls behind makes `put`
    wait (the run slows, nothing is dropped); `finish` lets it take what is queued and joins it."""

    def __init__(self, name: str, size: int):
        self._name = name
        self._queue: queue.Queue = queue.Queue(size)
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, work: Callable[[], None]) -> None:
        """`work` runs on the thread and takes the items with `items()`."""
        self._thread = threading.Thread(target=work, name=self._name, daemon=True)
        self._thread.start()

    def put(self, item) -> None:
        self._queue.put(item)

    def items(self) -> Iterator:
        """On the thread: each item put, until `finish`."""
        while (item := self._queue.get()) is not None:
            yield item

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


def write_error(label: str, exc: OSError) -> OutputError:
    """The one-line message for a failed write: which output, and the system's reason."""
    reason = exc.strerror or str(exc)
    hint = {28: "; free some space", 27: "; the file grew past the size limit", 13: "; check the permissions"}
    return OutputError(f"output '{label}': writing failed ({reason}{hint.get(exc.errno or 0, '')})")


def as_output_error(label: str, error: BaseException, what: str) -> OutputError:
    """The one line for what stopped a writer thread: its own OutputError, a write error, or what failed."""
    if isinstance(error, OutputError):
        return error
    if isinstance(error, OSError):
        return write_error(label, error)
    return OutputError(f"output '{label}': {what} failed ({error})")


def staged_path(final: Path) -> Path:
    """A hidden name beside `final`, with its extension (writers pick the format by it), for writing before the move."""
    return final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")


def write_atomically(path: str | os.PathLike, data: bytes, label: str | None = None) -> None:
    """Write a small file whole: to a temporary name beside it, then moved over the final name."""
    try:
        replace_whole(path, data)
    except OSError as exc:
        raise write_error(label or str(path), exc) from None
