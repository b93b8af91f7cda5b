"""Telling sources apart by how they are written, and masking credentials (no model, no network)."""

from __future__ import annotations

import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from streamdet.config.sections import Config, SourceConfig, SourceEntry
from streamdet.config.mqtt import MqttConfig
from streamdet.errors import ConfigError, SourceError
from streamdet.outputs.mqtt import MqttError, MqttPublisher
from streamdet.sources import ImageFilesSource, NetworkSource, VideoFileSource, open_source
from streamdet.urls import check_url, mask_url, safe_name


@pytest.mark.unit
def test_mask_url():
    assert mask_url("rtsp://admin:hunter2@10.0.0.5:554/stream1") == "rtsp://***:***@10.0.0.5:554/stream1"
    assert mask_url("http://user@cam.local/video.mjpg") == "http://***@cam.local/video.mjpg"
    assert mask_url("http://cam/video?user=a&password=hunter2&res=hd") == "http://cam/video?user=***&password=***&res=hd"
    assert mask_url("https://cam/live.m3u8?token=abc") == "https://cam/live.m3u8?token=***"
    assert mask_url("rtsp://[::1]:8554/live") == "rtsp://[::1]:8554/live"
    assert mask_url("rtsp://u:p@[::1]:8554/live") == "rtsp://***:***@[::1]:8554/live"


# (URL, what mask_url shows, a fragment of the one-line error or None when the URL is usable, its secrets)
URL_TABLE = [
    ("http://cam/videostream.cgi?loginuse=admin&loginpas=SECRET",
     "http://cam/videostream.cgi?loginuse=***&loginpas=***", None, ["admin", "SECRET"]),
    ("rtsp://cam/live?user=admin&pw=SECRET", "rtsp://cam/live?user=***&pw=***", None, ["admin", "SECRET"]),
    ("rtsp://cam/cam/realmonitor?channel=1&subtype=0", "rtsp://cam/cam/realmonitor?channel=1&subtype=0", None, []),
    ("http://cam/snap?SECRET", "http://cam/snap?***", None, ["SECRET"]),
    ("rtsp://cam/live#SECRET", "rtsp://cam/live#***", None, ["SECRET"]),
    ("rtsp://10.0.0.1:554/user=admin&password=SECRET&channel=1&stream=0.sdp",
     "rtsp://10.0.0.1:554/user=***&password=***&channel=1&stream=0.sdp", None, ["admin", "SECRET"]),
    ("rtsp://admin:Zq%2FKx@127.0.0.1:9/live", "rtsp://***:***@127.0.0.1:9/live", None, ["admin", "Zq", "Kx"]),
    ("rtsp://admin:Zq@Kx@127.0.0.1:9/live", "rtsp://***:***@127.0.0.1:9/live", None, ["admin", "Zq", "Kx"]),
    ("rtsp://cam:Zq/Kx@127.0.0.1:9/stream", "rtsp://***:***@127.0.0.1:9/stream", "percent-encode / ? # @",
     ["cam:", "Zq", "Kx"]),
    ("rtsp://admin:Zq?Kx@127.0.0.1:18555/live", "rtsp://***:***@127.0.0.1:18555/live", "percent-encode / ? # @",
     ["admin", "Zq", "Kx"]),
    ("rtsp://admin:Zq@Kx/Wv#Jm% x@127.0.0.1:554/live", "rtsp://***:***@127.0.0.1:554/live", "percent-encode / ? # @",
     ["admin", "Zq", "Kx", "Wv", "Jm"]),
    ("rtsp://u:SECRET@127.0.0.1:99999/live", "rtsp://***:***@127.0.0.1:99999/live", "from 1 to 65535", ["SECRET"]),
    ("rtsp://u:SECRET@127.0.0.1:0/live", "rtsp://***:***@127.0.0.1:0/live", "from 1 to 65535", ["SECRET"]),
    ("rtsp://[::1/live", "rtsp://[::1/live", "IPv6 host in brackets, as rtsp://[::1]:port/path", []),
    ("rtsp://u:SECRET@[::1]:8554/live", "rtsp://***:***@[::1]:8554/live", None, ["SECRET"]),
    ("rtsp://u:SECRET@[nohost]/live", "rtsp://***:***@[nohost]/live", "not an IPv6 address", ["SECRET"]),
    ("http://u:SECRET@:8080/x", "http://***:***@:8080/x", "no host", ["SECRET"]),
]


@pytest.mark.unit
@pytest.mark.parametrize("url, shown, error, secrets", URL_TABLE, ids=[row[0] for row in URL_TABLE])
def test_url_table_masked_and_checked_without_a_secret_fragment_anywhere(url, shown, error, secrets):
    assert mask_url(url) == shown
    texts = [mask_url(url)]
    if error is None:
        check_url(url)
        source = open_source(url)
        texts += [source.display_name, source.name, SourceEntry(url=url).label]
    else:
        for call, kind in ((check_url, ValueError), (open_source, SourceError), (SourceEntry, ValueError),
                           (lambda u: Config(sources=[u]).plans(), ConfigError)):
            with pytest.raises(kind) as info:
                call(url)
            assert error in str(info.value) and "\n" not in str(info.value)
            texts.append(str(info.value))
        with pytest.raises(MqttError) as info:
            MqttPublisher(MqttConfig(url="mqtt" + url[url.index("://"):]))
        texts.append(str(info.value))
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)


@pytest.mark.unit
def test_a_password_with_a_raw_slash_is_one_line_through_the_cli(tmp_path):
    proc = streamdet("run", "--source", "rtsp://cam:Zq/Kx@127.0.0.1:9/stream", "--model", str(tmp_path / "no.xml"),
                     env=cli_env(tmp_path / "cache"), timeout=60)
    assert_one_line_error(proc, "rtsp://***:***@127.0.0.1:9/stream", "percent-encode / ? # @ in the password")
    assert "Zq" not in proc.stderr and "Kx" not in proc.stderr


@pytest.mark.unit
def test_safe_name_has_no_credentials():
    assert safe_name("rtsp://admin:hunter2@192.168.1.20:554/stream1") == "192.168.1.20_554_stream1"


@pytest.mark.unit
@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///tmp/x.mp4", "RTMP://u:pw@host/live", "udp://0.0.0.0:5000"])
def test_unsupported_schemes_are_refused_naming_the_supported_ones(url):
    with pytest.raises(SourceError) as info:
        open_source(url)
    message = str(info.value)
    assert "is not supported" in message and "rtsp://, rtsps://, http://, https://" in message
    assert "pw" not in message and "ftp:/127" not in message


@pytest.mark.unit
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
