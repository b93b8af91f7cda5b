"""Segment names, the record of what a camera wrote, and expiry (no model, no encoder)."""

from __future__ import annotations

import json
import logging
import os
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
    segments.finish(first)  # a file still being written is never expired
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


def test_a_user_file_under_a_deleted_segments_name_and_inode_is_not_expired(tmp_path):
    """#32 item 8: ext4 gives a freed inode to the next file; a user's file made under a deleted segment's name
    can get the same inode. A finished file is known by its size and change time too, so it is left alone."""
    template = str(tmp_path / "cam_{start}.mp4")
    now = time.mktime((2026, 12, 4, 14, 30, 0, 0, 0, -1))
    segments = Segments(template, RecordingConfig())
    gone = segments.path_for(now - 60)
    gone.write_bytes(b"x" * 1000)
    segments.finish(gone)
    written = gone.stat().st_ino
    gone.unlink()  # deleted by hand, the record still names it
    gone.write_bytes(b"the user's own file")
    # What inode reuse does: the record's inode is the new file's (made deterministic on any file system).
    index = segments.index
    index.write_text(index.read_text().replace(f'"inode": {written}',
                                               f'"inode": {gone.stat().st_ino}'))
    next_run = Segments(template, RecordingConfig(keep_gb=1e-9))
    current = next_run.path_for(now)
    assert next_run.expire(current, now) == []
    assert gone.read_bytes() == b"the user's own file"
    assert [p for p, _ in next_run.ours()] == [current]


def test_bad_record_lines_are_skipped_with_one_warning_each_naming_the_record_and_line(tmp_path, caplog):
    """#32 item 9: a NUL in a name crashed every start (`embedded null byte`), a start of 1e999 made the
    recordings API a 500; each bad line is skipped with one warning naming the file and the line."""
    caplog.set_level(logging.WARNING, "streamdet.recording")
    template = str(tmp_path / "cam_{start}.mp4")
    now = time.mktime((2026, 12, 4, 14, 30, 0, 0, 0, -1))
    good = Segments(template, RecordingConfig()).path_for(now)
    good.write_bytes(b"x" * 10)
    index = tmp_path / ".cam_{start}.mp4.segments"
    inode = good.stat().st_ino
    with open(index, "a") as f:
        f.write(json.dumps({"name": "cam_\u0000.mp4", "start": now, "inode": inode}) + "\n")
        f.write(f'{{"name": "{good.name}", "start": 1e999, "inode": {inode}}}\n')
        f.write('{"name": "../escape.mp4", "start": 1, "inode": 1}\n')
    segments = Segments(template, RecordingConfig(keep_hours=1))
    assert [(p, s) for p, s in segments.ours()] == [(good, now)]
    assert segments.expire(None, now) == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3, warned
    for line, what in ((2, "name"), (3, "start"), (4, "name")):
        assert any(f"{index}: line {line} skipped" in m and what in m for m in warned), warned
    assert all("\0" not in m for m in warned)


def test_a_new_files_expiry_costs_the_same_however_long_the_record(tmp_path, monkeypatch):
    """#32 item 10: every new clip read the whole record and stat-ed every file in it (35 ms at 2,000 clips,
    360 ms at 20,000). The record is read once; a new file then costs a few calls, not one per file."""
    template = str(tmp_path / "cam_{start}.mp4")
    start = time.mktime((2026, 12, 1, 0, 0, 0, 0, 0, -1))
    writer = Segments(template, RecordingConfig())
    for i in range(2000):
        path = writer.path_for(start + i)
        path.write_bytes(b"x")
        writer.finish(path)
    segments = Segments(template, RecordingConfig(keep_gb=1990 / 1e9))
    segments.expire(None, start + 3000)  # the first call of a run reads the record
    calls = []
    for name in ("stat", "lstat", "fstat"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _real=real, **k: calls.append(a) or _real(*a, **k))
    for i in range(3):
        current = segments.path_for(start + 3000 + i)
        current.write_bytes(b"x")
        deleted = segments.expire(current, start + 3000 + i)
        segments.finish(current)
        assert len(deleted) == 1
    assert len(calls) < 30, len(calls)


def test_clips_take_theirs_over_from_the_record_they_shared_with_a_recording(tmp_path):
    """#32 item 1: clips and a recording named alike in one folder shared `.T.segments`; clips now keep
    `.T.clips`, and on the first run take over the clip lines of the old one (the recording's stay its)."""
    template = str(tmp_path / "cam_{start}.mp4")
    now = time.mktime((2026, 12, 4, 14, 30, 0, 0, 0, -1))
    shared = Segments(template, RecordingConfig())  # what both wrote before
    recording = shared.path_for(now)
    old_clip = shared.take(tmp_path / "cam_20261204-142000_track3.mp4", now - 600)
    shared.close()
    clips = Segments(template, RecordingConfig(), kind="clips")
    assert [p for p, _ in clips.ours()] == [old_clip]
    assert (tmp_path / ".cam_{start}.mp4.clips").exists()
    assert [p for p, _ in Segments(template, RecordingConfig()).ours()] == [old_clip, recording]
