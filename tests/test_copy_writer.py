"""A copy recording's writer thread that dies is seen at the next frame, and what waits for it is bounded:
the recording fed the packets of a real clip (bikes, H.264 with B-frames) as a camera's reader hands them over.
"""

from __future__ import annotations

import logging
import threading

import av
import numpy as np
import pytest
from av.bitstream import BitStreamFilterContext

from helpers import wait_for
from media import clip
from streamdet.config.sections import RecordingConfig
from streamdet.detections import Detections, FrameResult
from streamdet.errors import OutputError
from streamdet.outputs import sidecar_writer
from streamdet.outputs.copy import CopyRecording
from streamdet.outputs.sidecar import read_sidecar, sidecar_path
from streamdet.sources.base import Frame
from streamdet.sources.demux import CameraPacket, PacketTap, stream_format

ARRIVED = 1000.0


def _clip_packets():
    """bikes' video packets as a camera sends them (Annex B, decode order), connection 1."""
    with av.open(str(clip("bikes"))) as container:
        video = container.streams.video[0]
        fmt = stream_format(video, None)
        annex_b = BitStreamFilterContext("h264_mp4toannexb", video)
        packets = [CameraPacket(1, False, bytes(p), p.pts, p.dts, p.is_keyframe,
                                ARRIVED + float((p.dts + 1024) * video.time_base))
                   for packet in container.demux(video) for p in annex_b.filter(packet if packet.size else None)]
    return fmt, packets


def _result(picture: int) -> FrameResult:
    """The processed frame of bikes' picture `picture` (camera time picture * 40 ms), one person in it."""
    frame = Frame(np.zeros((272, 640, 3), np.uint8), picture, None, 0.0, camera_pts_ms=picture * 40.0, connection=1)
    found = Detections(np.array([[10, 20, 110, 220]], np.float32), np.array([0.9], np.float32),
                       np.array([1], np.int32), ("person",))
    return FrameResult("cam", frame, found, latency_ms=12.0)


def _writer_alive() -> bool:
    return any(t.name == "copy-cam" and t.is_alive() for t in threading.enumerate())


def _poison_one_line(monkeypatch) -> threading.Event:
    """The next detections line fails as it is made, on the writer thread, outside its guarded writes."""
    failed = threading.Event()
    real = sidecar_writer.sidecar_text

    def once(line, pts_s):
        if not failed.is_set():
            failed.set()
            raise ValueError("Out of range float values are not JSON compliant")
        return real(line, pts_s)

    monkeypatch.setattr(sidecar_writer, "sidecar_text", once)
    return failed


@pytest.mark.unit
def test_under_on_error_continue_a_dead_writer_is_seen_at_the_next_frame_and_recording_goes_on(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(CopyRecording, "_RETRY_S", 0.0)  # a new file at the next keyframe (5 s later in a run)
    fmt, packets = _clip_packets()
    failed = _poison_one_line(monkeypatch)
    tap, video = PacketTap(), tmp_path / "cam.mp4"
    recording = CopyRecording(video, tap, "cam", RecordingConfig(mode="copy", on_error="continue"))
    tap.connected(1, fmt)
    recording.write(_result(0))
    for packet in packets[:60]:
        tap.put(packet)
    assert failed.wait(10), "the writer never made the line"
    wait_for(lambda: not _writer_alive(), 10, "the writer thread to end")
    with caplog.at_level(logging.ERROR, logger="streamdet.recording"):
        recording.write(_result(100))  # the next frame: the dead writer is seen
    assert "Out of range float" in caplog.text and "recording again in a new file" in caplog.text
    assert _writer_alive()
    for picture in range(110, 250, 10):
        recording.write(_result(picture))
    for packet in packets[60:]:
        tap.put(packet)
    recording.close()  # no error left over: the recording went on
    second = tmp_path / "cam-1.mp4"
    with av.open(str(second)) as container:
        pictures = sum(1 for _ in container.decode(video=0))
    assert pictures >= 100  # from the keyframe after the failure (picture 137) to the end
    lines = read_sidecar(sidecar_path(second))
    assert len(lines) >= 10 and all(line.size == (640, 272) for line in lines)


@pytest.mark.unit
def test_under_on_error_stop_a_dead_writer_stops_the_run_at_the_next_frame(tmp_path, monkeypatch):
    fmt, packets = _clip_packets()
    failed = _poison_one_line(monkeypatch)
    tap = PacketTap()
    recording = CopyRecording(tmp_path / "cam.mp4", tap, "cam", RecordingConfig(mode="copy"))
    tap.connected(1, fmt)
    recording.write(_result(0))
    for packet in packets[:60]:
        tap.put(packet)
    assert failed.wait(10)
    wait_for(lambda: not _writer_alive(), 10, "the writer thread to end")
    with pytest.raises(OutputError, match="Out of range float"):
        recording.write(_result(100))
    with pytest.raises(OutputError):
        recording.close()


@pytest.mark.unit
def test_the_lines_waiting_for_a_writer_that_is_behind_are_bounded():
    writer = sidecar_writer.SidecarWriter()
    for picture in range(20000):  # a writer that never drains: a disk hung for 13 minutes at 25 fps
        writer.add(_result(picture))
    assert writer.dropped >= 20000 - 4096  # the oldest went, counted (and told at the end)


def _packet(size: int, key: bool = False) -> CameraPacket:
    return CameraPacket(1, False, bytes(size), 0, 0, key, 0.0)


@pytest.mark.unit
def test_the_tap_hands_its_packets_over_in_batches_bounded_in_bytes():
    tap = PacketTap(max_bytes=10_000)
    for k in range(4):
        tap.put(_packet(2000, key=k == 0))
    tap.put(_packet(2000))
    tap.put(_packet(2000))  # past the bound: dropped, and so is the video up to the next keyframe
    tap.put(_packet(100))
    assert tap.dropped == 2 and tap.bytes == 10_000
    assert [len(p.data) for p in tap.take_all(0.0)] == [2000] * 5 and tap.bytes == 0
    tap.put(_packet(100))
    tap.put(_packet(100, key=True))
    assert tap.dropped == 3 and [p.key for p in tap.take_all(0.0)] == [True]
    # A writer waiting out its linger is woken at once by a new connection, or by the tap closing.
    batches = []
    writer = threading.Thread(target=lambda: [batches.append(tap.take_all(60.0)) for _ in range(2)])
    writer.start()
    tap.put(_packet(100))
    tap.connected(2, None)
    wait_for(lambda: batches, 10, "a batch with the connection")
    tap.close()
    writer.join(timeout=10)
    assert not writer.is_alive() and tap.take_all(60.0) == []
    taken = [item for batch in batches for item in batch]
    assert [type(item).__name__ for item in taken] == ["CameraPacket", "Connected"]
