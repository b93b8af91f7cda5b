"""Telling sources apart by how they are written, and masking credentials (no model, no network)."""

from __future__ import annotations

import pytest

from streamdet.config import SourceConfig
from streamdet.errors import SourceError
from streamdet.sources import ImageFilesSource, NetworkSource, VideoFileSource, open_source
from streamdet.urls import mask_url, safe_name

pytestmark = pytest.mark.unit


def test_mask_url():
    assert mask_url("rtsp://admin:hunter2@10.0.0.5:554/stream1") == "rtsp://***:***@10.0.0.5:554/stream1"
    assert mask_url("http://user@cam.local/video.mjpg") == "http://***@cam.local/video.mjpg"
    assert mask_url("http://cam/video?user=a&password=hunter2&res=hd") == "http://cam/video?user=a&password=***&res=hd"
    assert mask_url("https://cam/live.m3u8?token=abc") == "https://cam/live.m3u8?token=***"
    assert mask_url("rtsp://[::1]:8554/live") == "rtsp://[::1]:8554/live"
    assert mask_url("rtsp://u:p@[::1]:8554/live") == "rtsp://***:***@[::1]:8554/live"


def test_safe_name_has_no_credentials():
    assert safe_name("rtsp://admin:hunter2@192.168.1.20:554/stream1") == "192.168.1.20_554_stream1"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///tmp/x.mp4", "RTMP://u:pw@host/live", "udp://0.0.0.0:5000"])
def test_unsupported_schemes_are_refused_naming_the_supported_ones(url):
    with pytest.raises(SourceError) as info:
        open_source(url)
    message = str(info.value)
    assert "is not supported" in message and "rtsp://, rtsps://, http://, https://" in message
    assert "pw" not in message and "ftp:/127" not in message


def test_kinds_by_how_they_are_written(tmp_path):
    video, image, folder = tmp_path / "a.mp4", tmp_path / "b.JPG", tmp_path / "pics"
    video.write_bytes(b"x")
    image.write_bytes(b"x")
    folder.mkdir()
    assert isinstance(open_source(str(video)), VideoFileSource)
    assert isinstance(open_source(str(image)), ImageFilesSource)
    assert isinstance(open_source(str(folder)), ImageFilesSource)
    assert isinstance(open_source("rtsp://cam/live", SourceConfig(read_timeout=2)), NetworkSource)
    assert isinstance(open_source("HTTPS://cam/live.m3u8"), NetworkSource)
    with pytest.raises(SourceError, match=r"no camera at index 7 \(/dev/video7 does not exist\)"):
        open_source("7")
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing.mp4"))
