"""The settings tree: YAML to dataclasses, per-source settings, and errors that name the key and line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from streamdet.config.sections import Config, SourceEntry, override
from streamdet.config.loader import load_config
from streamdet.errors import ConfigError


ROOT = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text).plans()
    return str(info.value)


@pytest.mark.unit
def test_shipped_config_yaml_is_the_builtin_defaults_and_shows_every_key():
    assert load_config(ROOT / "config.yaml") == Config()
    shown = yaml.safe_load((ROOT / "config.yaml").read_text())
    for section in dataclasses.fields(Config):
        value = getattr(Config(), section.name)
        if dataclasses.is_dataclass(value):
            assert set(shown[section.name]) == {f.name for f in dataclasses.fields(value)}, section.name


@pytest.mark.unit
def test_sources_as_strings_and_as_mappings_with_their_own_settings(tmp_path):
    config = _load(tmp_path, """
detect:
  threshold: 0.4
  classes: [person]
source:
  read_timeout: 3
output:
  json: all.jsonl
sources:
  - clip.mp4
  - name: door
    url: rtsp://admin:pw@10.0.0.5/live
    source: {read_timeout: 1.5}
    detect: {threshold: 0.8}
    output: {video: door.mp4, json: door.jsonl}
""")
    clip, door = config.plans()
    assert (clip.url, clip.name, clip.detect.threshold, clip.source.read_timeout) == ("clip.mp4", None, 0.4, 3.0)
    assert clip.output.json == "all.jsonl" and clip.output.video is None
    assert (door.name, door.detect.threshold, door.detect.classes) == ("door", 0.8, ["person"])
    assert door.source.read_timeout == 1.5 and door.source.open_timeout == 10.0
    assert (door.output.video, door.output.json) == ("door.mp4", "door.jsonl")
    # CLI flags set the sections; an entry's own keys still win for that entry.
    override(config, "detect", threshold=0.3)
    clip, door = config.plans()
    assert (clip.detect.threshold, door.detect.threshold) == (0.3, 0.8)


@pytest.mark.unit
def test_a_single_source_may_be_a_scalar(tmp_path):
    assert [p.url for p in _load(tmp_path, "sources: clip.mp4\n").plans()] == ["clip.mp4"]


@pytest.mark.unit
def test_python_api_takes_plain_strings():
    assert [p.url for p in Config(sources=["a.mp4", "rtsp://h/x"]).plans()] == ["a.mp4", "rtsp://h/x"]


@pytest.mark.parametrize("text, fragments", [
    ("sources:\n  - name: door\n    url: a.mp4\n    detect:\n      treshold: 0.8\n",
     ["line 5", "sources[0] (door).detect.treshold", "allowed keys: threshold, classes"]),
    ("sources:\n  - a.mp4\n  - name: yard\n    url: b.mp4\n    colour: red\n", ["line 5", "(yard)", "unknown key 'colour'"]),
    ("sources:\n  - name: door\n    detect: {threshold: 0.5}\n", ["line 2", "no url"]),
    ("sources:\n  - name: door\n    url: a.mp4\n    detect: {threshold: 1.5}\n", ["line 4", "(door).detect", "between 0 and 1"]),
    ("sources:\n  - name: door\n    url: a.mp4\n    output: {summary_json: s.json}\n", ["door", "summary_json"]),
    ("sources:\n  - name: front door\n    url: a.mp4\n", ["line 2", "name 'front door'", "letters"]),
    ("detect:\n  threshold: 0.3\ndetect:\n  threshold: 0.4\n", ["line 3", "'detect' is given twice", "line 1"]),
    ("source:\n  open_timeout: .nan\n", ["line 2", "source.open_timeout", "finite"]),
    ("source:\n  read_timeout: .inf\n", ["line 2", "source.read_timeout"]),
    ("inference:\n  nireq: 10000\n", ["line 2", "nireq", "up to 64"]),
    ("inference:\n  threads: -1\n", ["threads"]),
    ("overlay:\n  draw: sometimes\n", ["line 2", "overlay.draw", "'auto', 'yes', 'no'"]),
    ("inference:\n  server: http://ovms:9000\n", ["line 2", "grpc://HOST:PORT"]),
    ("inference:\n  server: grpc://ovms\n", ["grpc://HOST:PORT"]),
    ("inference:\n  server: grpc://ovms:9000/v2/models/x\n", ["only grpc[s]://HOST:PORT", "server_model"]),
    ("inference:\n  server: grpc://user:pw@ovms:9000\n", ["grpc://***:***@ovms:9000", "server_token"]),
    ("inference:\n  server: grpc://ovms:9000\n  server_ca: ca.pem\n", ["server_ca", "grpcs://"]),
    ("inference:\n  server: grpc://10.0.0.5:9000\n  server_token: abcdefgh\n", ["unencrypted", "grpcs://"]),
    ("inference:\n  server_timeout: 0\n", ["server_timeout", "at most 300"]),
    ("inference:\n  server_timeout: 1000\n", ["server_timeout"]),
    ("inference:\n  server_model: ../x\n", ["server_model '../x'"]),
    ("inference:\n  server_version: -1\n", ["server_version"]),
])
@pytest.mark.unit
def test_errors_name_the_key_and_line(tmp_path, text, fragments):
    message = _error(tmp_path, text)
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.unit
def test_an_override_that_breaks_a_rule_with_the_sections_names_the_source(tmp_path):
    message = _error(tmp_path, """
source:
  reconnect_initial: 5
sources:
  - name: door
    url: rtsp://h/x
    source: {reconnect_max: 2}
""")
    assert "source 'door'" in message and "reconnect_max must be at least reconnect_initial" in message


@pytest.mark.unit
def test_rtsp_transport_may_differ_between_cameras(tmp_path):
    # Each camera is opened through PyAV with options of its own (OpenCV took one value per process).
    plans = _load(tmp_path, "sources:\n  - rtsp://cam1/live\n  - name: c\n    url: rtsp://h/x\n"
                            "    source: {rtsp_transport: udp}\n").plans()
    assert [p.source.rtsp_transport for p in plans] == ["tcp", "udp"]


@pytest.mark.unit
def test_an_unknown_hwaccel_is_refused(tmp_path):
    message = _error(tmp_path, "source: {hwaccel: metal}\nsources: [rtsp://cam1/live]\n")
    assert "hwaccel" in message and "metal" in message


@pytest.mark.unit
def test_credentials_never_reach_an_error_about_an_unnamed_source(tmp_path):
    message = _error(tmp_path, """
source:
  reconnect_initial: 5
sources:
  - url: rtsp://admin:hunter2@cam/live
    source: {reconnect_max: 2}
""")
    assert "hunter2" not in message and "rtsp://***:***@cam/live" in message


@pytest.mark.unit
def test_entries_check_their_settings_in_the_python_api_too():
    with pytest.raises(ValueError, match="between 0 and 1"):
        SourceEntry(url="a.mp4", detect={"threshold": 7})
    with pytest.raises(ValueError, match="unknown key 'detect.score'"):
        SourceEntry(url="a.mp4", detect={"score": 0.5})


@pytest.mark.unit
def test_server_settings_token_from_the_environment_and_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMDET_SERVER_TOKEN", "tok-from-env-1")
    config = _load(tmp_path, "inference:\n  server: grpcs://ovms.lan:9000\n  server_model: ped\n  server_version: 2\n")
    assert config.inference.server_token == "tok-from-env-1"
    assert "tok-from-env-1" not in repr(config) and "ovms.lan" not in repr(config.inference)
    # loopback may take a token in clear: it never leaves the machine
    override(config, "inference", server="grpc://127.0.0.1:9000")
    assert config.inference.server_version == 2


@pytest.mark.unit
def test_a_name_given_to_two_sources_is_refused_naming_both_lines(tmp_path):
    """Renamed silently, `a`, `a` and `a-1` once ran as a-0, a-1 and a-1: two cameras in one file."""
    message = _error(tmp_path, """
sources:
  - name: a
    url: carphone.mp4
  - name: a
    url: bigbuckbunny.mp4
  - name: a-1
    url: bikes.mp4
""")
    assert "line 5: source name 'a' is given twice (first at config" in message and "line 3)" in message, message
    with pytest.raises(ConfigError, match=r"sources\[1\]: source name 'door' is given twice \(first at sources\[0\]\)"):
        Config(sources=[SourceEntry(url="a.mp4", name="door"), SourceEntry(url="b.mp4", name="door")]).plans()


@pytest.mark.unit
def test_names_from_files_and_urls_never_equal_each_other_or_a_given_name():
    from streamdet.assembly import unique_names

    # Two clip.mp4 from different folders, a third source named "clip", and a file called clip~1.mp4.
    given = [None, "clip", None, None, "door", None]
    generated = ["clip", "x", "clip", "clip~1", "y", "door"]
    names = unique_names(given, generated)
    assert names == ["clip~2", "clip", "clip~3", "clip~1", "door", "door~1"]
    assert unique_names(given, generated) == names  # the same sources get the same names every run
    # Names that clash with nothing stay as they are.
    assert unique_names([None, None, "c"], ["a", "b", "d"]) == ["a", "b", "c"]
