"""The copy recording without a camera: the timeline (streamdet.outputs.timeline), the sidecar writer
(streamdet.outputs.sidecar_writer) and the whole recording fed the packets of a real clip (bikes: H.264 with
B-frames, 25 fps, 250 pictures, its first packet's dts -1024 of 1/12800 s) as a camera's reader would hand
them over, arriving at the clip's own pace.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from av.bitstream import BitStreamFilterContext

from media import clip
from streamdet.config.sections import RecordingConfig
from streamdet.detections import Detections, FrameResult
from streamdet.outputs.copy import CopyRecording
from streamdet.outputs.sidecar import read_sidecar, sidecar_path
from streamdet.outputs.sidecar_writer import SidecarWriter
from streamdet.outputs.timeline import Timeline
from streamdet.sources.base import Frame
from streamdet.sources.demux import CameraPacket, Connected, PacketTap, StreamFormat, stream_format

ARRIVED = 1000.0  # when the first packet came (time.monotonic() in a run)
TB = Fraction(1, 12800)


def _clip_packets(connection: int, arrived: float) -> tuple[StreamFormat, list[CameraPacket]]:
    """bikes' video packets as a camera sends them (Annex B, in decode order), arriving at the clip's own pace
    from `arrived`."""
    with av.open(str(clip("bikes"))) as container:
        video = container.streams.video[0]
        fmt = stream_format(video, None)
        annex_b = BitStreamFilterContext("h264_mp4toannexb", video)
        packets = [CameraPacket(connection, False, bytes(p), p.pts, p.dts, p.is_keyframe,
                                arrived + float((p.dts + 1024) * video.time_base))
                   for packet in container.demux(video) for p in annex_b.filter(packet if packet.size else None)]
    return fmt, packets


def _result(picture: int, connection: int = 1, captured: float = 0.0, camera_pts: bool = True) -> FrameResult:
    """The processed frame of bikes' picture `picture` (its pts is picture * 512), one person found in it."""
    frame = Frame(np.zeros((272, 640, 3), np.uint8), picture, None, captured,
                  camera_pts_ms=picture * 40.0 if camera_pts else None, connection=connection)
    found = Detections(np.array([[10, 20, 110, 220]], np.float32), np.array([0.9], np.float32),
                       np.array([1], np.int32), ("person",))
    return FrameResult("cam", frame, found, latency_ms=12.0)


@pytest.mark.unit
def test_the_clips_pictures_are_placed_at_their_own_times_once_their_packets_came():
    fmt, packets = _clip_packets(1, ARRIVED)
    timeline = Timeline()
    timeline.connected(Connected(1, fmt, ARRIVED - 0.5))
    assert timeline.place(1, 0.0, ARRIVED) is None  # no packet yet
    placed = [timeline.video(p) for p in packets[:100]]
    assert placed[0].dts_s == 0.0 and placed[0].pts_s == pytest.approx(0.08)  # the first picture shows after a B-frame's delay
    assert [p.pts_s for p in placed[:4]] == pytest.approx([0.08, 0.24, 0.16, 0.12])
    assert timeline.current.last_s == pytest.approx(99 * 0.04)
    # Picture k shows at 0.08 + k * 0.04 s; the pictures whose packets have not come wait.
    assert timeline.place(1, 10 * 40.0, ARRIVED) == pytest.approx(0.48)
    assert timeline.place(1, 96 * 40.0, ARRIVED) == pytest.approx(96 * 0.04 + 0.08)
    assert timeline.place(1, 98 * 40.0, ARRIVED) is None
    placed += [timeline.video(p) for p in packets[100:]]
    assert sorted(p.pts_s for p in placed) == pytest.approx([0.08 + k * 0.04 for k in range(250)])
    assert timeline.place(1, 98 * 40.0, ARRIVED) == pytest.approx(98 * 0.04 + 0.08)


@pytest.mark.unit
def test_a_reconnect_goes_on_after_a_gap_as_long_as_the_outage_and_late_frames_keep_their_place():
    fmt, first = _clip_packets(1, ARRIVED)
    _, second = _clip_packets(2, ARRIVED + 13.0)  # back with its times afresh, 3.04 s after its last packet
    timeline = Timeline()
    timeline.connected(Connected(1, fmt, ARRIVED))
    for packet in first:
        timeline.video(packet)
    end = timeline.current.last_s
    assert end == pytest.approx(9.96) and timeline.current.last_arrived == pytest.approx(ARRIVED + 9.96)
    timeline.connected(Connected(2, fmt, ARRIVED + 12.0))
    assert timeline.place(2, 0.0, ARRIVED + 12.0) is None
    back = timeline.video(second[0])
    assert back.dts_s == pytest.approx(end + 3.04)  # the outage: from the last packet to the first one back
    assert timeline.place(2, 0.0, ARRIVED) is None  # its picture shows two packets' places later
    for packet in second[1:4]:
        timeline.video(packet)
    assert timeline.place(2, 0.0, ARRIVED) == pytest.approx(end + 3.04 + 0.08)
    assert timeline.place(1, 200 * 40.0, ARRIVED) == pytest.approx(0.08 + 200 * 0.04)  # a late line of the first

    quick = Timeline()  # back at once: still a frame's gap, never two pictures at one time
    quick.connected(Connected(1, fmt, ARRIVED))
    for packet in first:
        quick.video(packet)
    quick.connected(Connected(2, fmt, ARRIVED + 9.96))
    _, again = _clip_packets(2, ARRIVED + 9.96)
    assert quick.video(again[0]).dts_s == pytest.approx(end + 0.04)


@pytest.mark.unit
def test_a_sub_streams_frame_is_placed_by_when_it_was_captured():
    fmt, packets = _clip_packets(1, ARRIVED)
    timeline = Timeline()
    timeline.connected(Connected(1, fmt, ARRIVED))
    assert timeline.place(7, None, ARRIVED) is None  # before any packet
    for packet in packets[:50]:
        timeline.video(packet)
    last = timeline.current.last_arrived
    assert timeline.place(7, 123.0, last - 0.5) == pytest.approx(49 * 0.04 - 0.5)
    assert timeline.place(1, None, last - 0.5) == pytest.approx(49 * 0.04 - 0.5)  # no camera time: the same
    assert timeline.place(7, 123.0, last + 0.01) is None  # captured after the newest packet came: it waits


@pytest.mark.unit
def test_lines_wait_for_their_packets_and_go_into_the_file_their_picture_is_in(tmp_path):
    fmt, packets = _clip_packets(1, ARRIVED)
    timeline = Timeline()
    timeline.connected(Connected(1, fmt, ARRIVED))
    writer = SidecarWriter()
    for picture in range(0, 250, 10):
        writer.add(_result(picture))
    first, second = tmp_path / "cam_1.mp4", tmp_path / "cam_2.mp4"
    assert writer.begin(first, 0.08, replace=False) == sidecar_path(first)
    for packet in packets[:60]:
        timeline.video(packet)
    writer.write(writer.due(timeline, final=False))
    assert writer.lines == 6  # pictures 0 to 50: the packets so far reach 2.36 s, picture 57's place
    # The next file starts at the keyframe of picture 137: lines before it end the first file, the rest wait.
    for packet in packets[60:137]:
        timeline.video(packet)
    start = timeline.video(packets[137])
    assert packets[137].key and start.pts_s == pytest.approx(0.08 + 137 * 0.04)
    writer.write(writer.due(timeline, final=False, until=start.pts_s))
    writer.end()
    assert writer.lines == 14
    assert writer.begin(second, start.pts_s, replace=False) == sidecar_path(second)
    for packet in packets[138:]:
        timeline.video(packet)
    writer.write(writer.due(timeline, final=True))
    writer.end()
    one, two = read_sidecar(sidecar_path(first)), read_sidecar(sidecar_path(second))
    assert [f.pts for f in one] == pytest.approx([k * 0.04 for k in range(0, 140, 10)])
    assert [f.pts for f in two] == pytest.approx([(k - 137) * 0.04 for k in range(140, 250, 10)])
    assert writer.lines == 25 and one[0].size == (640, 272) and one[0].detections.labels == ("person",)
    assert one[0].detections.xyxy.tolist() == [[10, 20, 110, 220]]


@pytest.mark.unit
def test_a_detections_file_that_is_not_ours_is_left_alone_and_its_lines_dropped(tmp_path):
    fmt, packets = _clip_packets(1, ARRIVED)
    timeline = Timeline()
    timeline.connected(Connected(1, fmt, ARRIVED))
    for packet in packets:
        timeline.video(packet)
    theirs = tmp_path / "cam.mp4"
    sidecar_path(theirs).write_text("someone else's\n")
    writer = SidecarWriter()
    writer.add(_result(5))
    assert writer.begin(theirs, 0.08, replace=False) is None
    assert writer.due(timeline, final=True) == []
    writer.end()
    assert sidecar_path(theirs).read_text() == "someone else's\n"
    assert writer.begin(theirs, 0.08, replace=True) == sidecar_path(theirs)  # the run's own one file: replaced
    writer.add(_result(5))
    writer.write(writer.due(timeline, final=True))
    writer.end()
    assert [f.pts for f in read_sidecar(sidecar_path(theirs))] == pytest.approx([0.2])


@pytest.mark.unit
def test_the_copy_recording_of_a_tap_holds_every_picture_and_each_frames_detections_at_its_time(tmp_path):
    fmt, packets = _clip_packets(1, ARRIVED)
    tap = PacketTap()
    video = tmp_path / "cam.mp4"
    recording = CopyRecording(video, tap, "cam", RecordingConfig(mode="copy"))
    tap.connected(1, fmt)
    for picture in range(0, 250, 25):
        recording.write(_result(picture))
    for packet in packets:
        tap.put(packet)
    recording.close()
    with av.open(str(video)) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    assert len(times) == 250 and recording.packets == 250
    assert np.diff(times) == pytest.approx([0.04] * 249)
    lines = read_sidecar(sidecar_path(video))
    assert [f.pts for f in lines] == pytest.approx([times[k] - times[0] for k in range(0, 250, 25)])
    assert recording.lines == 10
