"""Segment names, the record of what a camera wrote, and expiry (no model, no encoder)."""

from __future__ import annotations

import logging
import time

import pytest

from streamdet.config.sections import RecordingConfig
from streamdet.outputs.segments import Segments


@pytest.mark.unit
def test_names_never_repeat_and_only_recorded_files_are_ours(tmp_path):
    segments = Segments(str(tmp_path / "door_{start}.mp4"), RecordingConfig())
    t = time.mktime((2026, 11, 25, 10, 0, 0, 0, 0, -1))
    first = segments.path_for(t)
    assert first.name == "door_20261125-100000.mp4" and first.read_bytes() == b""  # the name is taken at once
    second = segments.path_for(t + 0.5)  # a second segment in the same second
    assert second.name == "door_20261125-100000-1.mp4"
    for other in ("door_20261125-100000.mp4.part", "doorway_20261125-100000.mp4", "door_2026.mp4",
                  "yard_20261125-100000.mp4", "door_20261125-100000.mkv", "door_20261125-110000.mp4"):
        (tmp_path / other).write_bytes(b"x")
    assert [p.name for p, _ in segments.ours()] == [first.name, second.name]
    # A recorded name replaced by another file (not the one written) is no longer ours.
    (tmp_path / "other").write_bytes(b"someone else's")
    (tmp_path / "other").replace(second)
    assert [p.name for p, _ in segments.ours()] == [first.name]


def _record(segments: Segments, names: list[str], starts: list[float]) -> None:
    for name, start in zip(names, starts):
        path = segments.path_for(start)
        assert path.name == name
        path.write_bytes(b"x" * 1000)


@pytest.mark.unit
def test_expiry_by_age_and_by_size_keeps_the_current_file_and_survives_a_restart(tmp_path):
    now = time.mktime((2026, 11, 25, 12, 0, 0, 0, 0, -1))
    starts = [now - 3600 * h for h in range(4, -1, -1)]  # 08:00 .. 12:00
    names = [f"cam_20261125-{h:02d}0000.mp4" for h in range(8, 13)]
    _record(Segments(str(tmp_path / "cam_{start}.mp4"), RecordingConfig()), names, starts)
    # Each Segments below is a new run of the same camera: the record on disk is what it knows.
    by_age = Segments(str(tmp_path / "cam_{start}.mp4"), RecordingConfig(keep_hours=2.5))
    deleted = by_age.expire(tmp_path / names[-1], now)
    assert [p.name for p in deleted] == names[:2]  # 08:00 and 09:00 started more than 2.5 h ago
    by_size = Segments(str(tmp_path / "cam_{start}.mp4"), RecordingConfig(keep_gb=2500 / 1e9))
    deleted = by_size.expire(tmp_path / names[-1], now)
    assert [p.name for p in deleted] == [names[2]]  # 3 files of 1000 bytes -> 2 left, the current one among them
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == names[3:]
    assert Segments(str(tmp_path / "cam_{start}.mp4"), RecordingConfig()).expire(None, now) == []
    assert [p.name for p, _ in by_age.ours()] == names[3:]  # the record holds only what is left


@pytest.mark.unit
def test_expiry_leaves_look_alikes_and_impossible_dates_alone_and_counts_them(tmp_path, caplog):
    caplog.set_level(logging.INFO, "streamdet.recording")
    decoys = ["20190704-120000.mp4", "20200101-000000-3.mp4", "20261399-999999.mp4"]
    for name in decoys:
        (tmp_path / name).write_bytes(b"not streamdet's" * 100)
    segments = Segments(str(tmp_path / "{start}.mp4"), RecordingConfig(keep_gb=1e-9))
    now = time.mktime((2026, 12, 4, 14, 30, 0, 0, 0, -1))
    first = segments.path_for(now)
    first.write_bytes(b"x" * 100)
    current = segments.path_for(now + 1)
    assert segments.expire(current, now + 1) == [first]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(decoys + [current.name])
    assert any("3 file(s) named like segments" in m and "left alone" in m for m in caplog.messages), caplog.messages


@pytest.mark.unit
def test_a_record_line_cut_off_by_a_crash_loses_no_later_segment(tmp_path):
    segments = Segments(str(tmp_path / "cam_{start}.mp4"), RecordingConfig(keep_gb=1e-9))
    now = time.mktime((2026, 12, 4, 14, 30, 0, 0, 0, -1))
    first = segments.path_for(now)
    with open(segments.index, "a") as index:
        index.write('{"name": "cam_2026')  # what a kill -9 in the middle of a write leaves
    second = segments.path_for(now + 1)
    assert [p for p, _ in segments.ours()] == [first, second]
