"""SIGHUP for `streamdet run`: read the settings again and apply them, off the signal handler.

The handler only sets a flag; a thread of its own (started and joined with the run) reads the file and
asks the pipeline (`Pipeline.reload_settings`, which applies the change on the output loop's thread and logs
its one line). Signals that come while a reload goes are one more reload after it, not one each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("streamdet")


class ReloadOnSignal:
    """`request()` from a signal handler; `close()` once the run is over."""

    def __init__(self, reload: Callable[[], object], on_reload: Callable[[str], None] = lambda phase: None):
        """`reload`: reads the settings again and applies them (`Pipeline.reload_settings`); `on_reload(phase)`:
        told "reloading" before and "ready" after each (systemd's RELOADING=1 and READY=1)."""
        self._reload = reload
        self._on_reload = on_reload
        self._asked = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self._thread.start()

    def request(self, *_signal) -> None:
        """The signal handler: nothing but a flag (a handler runs between two bytecodes of the output loop)."""
        self._asked.set()

    def _run(self) -> None:
        while True:
            self._asked.wait()
            if self._closing:
                return
            self._asked.clear()
            self._on_reload("reloading")
            try:
                self._reload()
            except Exception:  # a reload that failed unexpectedly must not end the run: it said why in the log
                log.exception("reload failed")
            finally:
                self._on_reload("ready")

    def close(self) -> None:
        self._closing = True
        self._asked.set()
        self._thread.join(timeout=10)
