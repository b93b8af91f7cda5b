"""A camera's recording as a series of files: names from a template, and the oldest ones expired.

Only files whose names the template could have produced for this camera are
ever deleted: nothing streamdet did not write, and no other camera's files.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from ..config import RecordingConfig

log = logging.getLogger("streamdet.recording")

START_FORMAT = "%Y%m%d-%H%M%S"


class Segments:
    """File names for `template` (with `{start}`, `{name}` already filled in) and their expiry."""

    def __init__(self, template: str, settings: RecordingConfig):
        self.template = template
        self.settings = settings
        head, _, tail = Path(template).name.partition("{start}")
        self.folder = Path(template).parent
        # What this template makes: the start time, and a counter when two segments start in one second.
        self._pattern = re.compile(re.escape(head) + r"(\d{8}-\d{6})(?:-(\d+))?" + re.escape(tail) + r"\Z")

    def path_for(self, wall_time: float) -> Path:
        """The file for a segment starting at `wall_time`; never one that exists already."""
        stamp = time.strftime(START_FORMAT, time.localtime(wall_time))
        path = Path(self.template.replace("{start}", stamp))
        n = 1
        while path.exists():
            path = Path(self.template.replace("{start}", f"{stamp}-{n}"))
            n += 1
        return path

    def ours(self) -> list[tuple[Path, float]]:
        """This camera's segments in the folder, oldest first, with their start times."""
        found = []
        try:
            entries = list(self.folder.iterdir())
        except OSError:
            return []
        for path in entries:
            match = self._pattern.match(path.name)
            if match and path.is_file() and not path.is_symlink():
                start = time.mktime(time.strptime(match.group(1), START_FORMAT))
                found.append((path, start, int(match.group(2) or 0)))
        found.sort(key=lambda item: (item[1], item[2]))
        return [(path, start) for path, start, _ in found]

    def expire(self, current: Path | None, now: float) -> list[Path]:
        """Delete the oldest segments past `keep_hours` or beyond `keep_gb`; never `current`. Returns those deleted."""
        keep_s = self.settings.keep_hours * 3600
        keep_bytes = self.settings.keep_gb * 1e9
        if not keep_s and not keep_bytes:
            return []
        segments = [(p, s) for p, s in self.ours() if p != current]
        sizes = {p: p.stat().st_size for p, _ in segments}
        total = sum(sizes.values()) + (current.stat().st_size if current is not None and current.exists() else 0)
        deleted = []
        for path, start in segments:
            too_old = keep_s and now - start > keep_s
            too_big = keep_bytes and total > keep_bytes
            if not (too_old or too_big):
                break
            try:
                os.remove(path)
            except OSError as exc:
                log.warning("%s: could not delete an expired segment (%s)", path, exc.strerror)
                continue
            total -= sizes[path]
            deleted.append(path)
        if deleted:
            log.info("%s: deleted %d expired segment(s), oldest %s", self.folder, len(deleted), deleted[0].name)
        return deleted
