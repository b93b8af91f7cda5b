"""Segment names and expiry (no model, no encoder)."""

from __future__ import annotations

import time

import pytest

from streamdet.config import RecordingConfig
from streamdet.outputs.segments import Segments

pytestmark = pytest.mark.unit


def test_names_never_repeat_and_only_this_template_is_ours(tmp_path):
    segments = Segments(str(tmp_path / "door_{start}.mp4"), RecordingConfig())
    t = time.mktime((2026, 11, 25, 10, 0, 0, 0, 0, -1))
    first = segments.path_for(t)
    assert first.name == "door_20261125-100000.mp4"
    first.write_bytes(b"x")
    second = segments.path_for(t + 0.5)  # a second segment in the same second
    assert second.name == "door_20261125-100000-1.mp4"
    second.write_bytes(b"x")
    for other in ("door_20261125-100000.mp4.part", "doorway_20261125-100000.mp4", "door_2026.mp4",
                  "yard_20261125-100000.mp4", "door_20261125-100000.mkv"):
        (tmp_path / other).write_bytes(b"x")
    assert [p.name for p, _ in segments.ours()] == [first.name, second.name]


def test_expiry_by_age_and_by_size_keeps_the_current_file(tmp_path):
    now = time.mktime((2026, 11, 25, 12, 0, 0, 0, 0, -1))
    names = [f"cam_20261125-{h:02d}0000.mp4" for h in range(8, 13)]  # 08:00 .. 12:00
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 1000)
    by_age = Segments(str(tmp_path / "cam_{start}.mp4"), RecordingConfig(keep_hours=2.5))
    deleted = by_age.expire(tmp_path / names[-1], now)
    assert [p.name for p in deleted] == names[:2]  # 08:00 and 09:00 started more than 2.5 h ago
    by_size = Segments(str(tmp_path / "cam_{start}.mp4"), RecordingConfig(keep_gb=2500 / 1e9))
    deleted = by_size.expire(tmp_path / names[-1], now)
    assert [p.name for p in deleted] == [names[2]]  # 3 files of 1000 bytes -> 2 left, the current one among them
    assert sorted(p.name for p in tmp_path.iterdir()) == names[3:]
    assert Segments(str(tmp_path / "cam_{start}.mp4"), RecordingConfig()).expire(None, now) == []
