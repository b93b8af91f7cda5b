"""What expiry costs per new clip with N clips on record (#32 item 10): `python tests/bench_expiry.py [N ...]`.

A record of N finished one-byte clips is written in the record's oldest form (name, start, inode: what an
earlier version left), then a new run takes 50 new clips, each expiring the oldest (keep_gb just below the
total). Printed per N: setting up with the first call (the record read) and the mean per new clip after it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from streamdet.config.sections import RecordingConfig
from streamdet.outputs.segments import Segments, segment_path

NEW = 50


def _record(folder: Path, template: str, n: int, start: float) -> None:
    lines = []
    for i in range(n):
        path = segment_path(template, start + i, "_track1")
        path.write_bytes(b"x")
        lines.append(json.dumps({"name": path.name, "start": start + i, "inode": path.stat().st_ino}) + "\n")
    (folder / f".{Path(template).name}.clips").write_text("".join(lines))
    (folder / f".{Path(template).name}.segments").write_text("".join(lines))  # where earlier versions kept it


def measure(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        folder = Path(tmp)
        template = str(folder / "cam_{start}.mp4")
        start = time.mktime((2026, 1, 1, 0, 0, 0, 0, 0, -1))
        _record(folder, template, n, start)
        t0 = time.perf_counter()
        try:
            clips = Segments(template, RecordingConfig(keep_gb=(n - 1) / 1e9), kind="clips")
        except TypeError:  # before #32: one record for every feature
            clips = Segments(template, RecordingConfig(keep_gb=(n - 1) / 1e9))
        finish = getattr(clips, "finish", lambda path: None)
        clips.expire(None, start + n)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(NEW):
            path = clips.take(segment_path(template, start + n + i, "_track2"), start + n + i)
            path.write_bytes(b"x")
            clips.expire(path, start + n + i)
            finish(path)
        return first, (time.perf_counter() - t0) / NEW


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [2000, 20000]:
        first, each = measure(n)
        print(f"{n:6d} clips on record: set-up and first call {first * 1000:7.1f} ms, then per new clip {each * 1000:6.2f} ms")
