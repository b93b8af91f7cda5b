"""The settings tree: YAML to dataclasses, per-source settings, and errors that name the key and line."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from streamdet.cli import build_parser
from streamdet.cli.run import build_config
from streamdet.config.mqtt import MqttConfig
from streamdet.config.sections import (Config, DetectConfig, Hint, Hwaccel, InferenceConfig, LoggingConfig, LogLevel,
                                       OverlayConfig, Policy, Precision, RecordingConfig, RecordingMode, SourceConfig,
                                       SourceEntry, Transport, WebConfig, override)
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
    from streamdet.assembly.plan import unique_names

    # Two clip.mp4 from different folders, a third source named "clip", and a file called clip~1.mp4.
    given = [None, "clip", None, None, "door", None]
    generated = ["clip", "x", "clip", "clip~1", "y", "door"]
    names = unique_names(given, generated)
    assert names == ["clip~2", "clip", "clip~3", "clip~1", "door", "door~1"]
    assert unique_names(given, generated) == names  # the same sources get the same names every run
    # Names that clash with nothing stay as they are.
    assert unique_names([None, None, "c"], ["a", "b", "d"]) == ["a", "b", "c"]


def test_a_choice_no_literal_lists_is_refused_when_built_through_the_python_api(tmp_path):
    """The Python API once took any string: policy 'latest' passed, and an unknown codec failed later, on a
    writer thread. Now a section refuses it as it is built, in the loader's words."""
    with pytest.raises(ValueError) as api:
        Config(source=SourceConfig(policy="latest"))
    assert str(api.value) == "policy: 'latest' is not one of 'auto', 'all', 'newest'"
    with pytest.raises(ValueError) as codec:
        RecordingConfig(codec="vp9")
    assert str(codec.value) == "codec: 'vp9' is not one of 'h264', 'mp4v'"
    assert "\n" not in str(api.value) + str(codec.value)
    yaml_message = _error(tmp_path, "source: {policy: latest}\n")
    assert yaml_message.endswith("source.policy: 'latest' is not one of 'auto', 'all', 'newest'"), yaml_message
    # CLI flags go through the same check (here: a value argparse would not have let through).
    with pytest.raises(ConfigError, match=r"^recording: codec: 'vp9' is not one of 'h264', 'mp4v'$"):
        override(Config(), "recording", codec="vp9")


@pytest.mark.parametrize("section, values, message", [
    (InferenceConfig, {"precision": "f64"}, "precision: 'f64' is not one of 'f32', 'bf16', 'f16', 'auto'"),
    (SourceConfig, {"hwaccel": "metal"}, "hwaccel: 'metal' is not one of 'none', 'auto', 'vaapi', 'qsv', 'cuda'"),
    (DetectConfig, {"threshold": "high"}, "threshold: 'high' is not a number"),
    (SourceConfig, {"loop": "yes"}, "loop: 'yes' is not true or false"),
    (OverlayConfig, {"font_scale": float("nan")}, "font_scale must be a finite number, not nan"),
    (SourceConfig, {"open_timeout": float("inf")}, "open_timeout must be a finite number, not inf"),
])
def test_every_section_checks_its_values_against_its_types(section, values, message):
    with pytest.raises(ValueError) as info:
        section(**values)
    assert str(info.value) == message


def _flag(parser, path: list[str], option: str):
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return next(a for a in parser._actions if option in a.option_strings)


@pytest.mark.parametrize("path, option, values", [
    (["run"], "--hint", typing.get_args(Hint)),
    (["run"], "--precision", typing.get_args(Precision)),
    (["run"], "--record", typing.get_args(RecordingMode)),
    (["run"], "--policy", typing.get_args(Policy)),
    (["run"], "--rtsp-transport", typing.get_args(Transport)),
    (["run"], "--hwaccel", typing.get_args(Hwaccel)),
    (["run"], "--log-level", typing.get_args(LogLevel)),
    (["bench"], "--precision", typing.get_args(Precision)),
    (["bench"], "--record", ("none", *typing.get_args(RecordingMode))),
    (["model", "check"], "--precision", typing.get_args(Precision)),
])
def test_the_clis_choices_are_the_types_values(path, option, values):
    assert tuple(_flag(build_parser(), path, option).choices) == values


def test_the_field_each_run_flag_sets_has_the_type_its_choices_come_from():
    hints = {cls: typing.get_type_hints(cls) for cls in (InferenceConfig, SourceConfig, RecordingConfig, LoggingConfig)}
    assert hints[InferenceConfig]["hint"] is Hint and hints[InferenceConfig]["precision"] is Precision
    assert hints[SourceConfig]["policy"] is Policy and hints[SourceConfig]["rtsp_transport"] is Transport
    assert hints[SourceConfig]["hwaccel"] is Hwaccel and hints[RecordingConfig]["mode"] is RecordingMode
    assert hints[LoggingConfig]["level"] is LogLevel


@pytest.mark.parametrize("text, api, message", [
    ("mqtt: {discovery: true}\nsources: [a.mp4]\n",
     lambda: Config(sources=["a.mp4"], mqtt=MqttConfig(discovery=True)),
     "mqtt.discovery needs a broker: give --mqtt URL or mqtt.url"),
    ("sources:\n  - {name: cam, url: 'rtsp://h/main', detect_url: 'rtsp://h/sub'}\n",
     lambda: Config(sources=[SourceEntry(url="rtsp://h/main", name="cam", detect_url="rtsp://h/sub")]),
     "source 'cam': detect_url needs a copy recording of url (output.video with recording.mode: copy); "
     "without one, give the sub-stream as url"),
])
def test_a_rule_between_sections_refuses_the_same_from_yaml_the_api_and_the_cli(tmp_path, monkeypatch, text, api,
                                                                                message):
    config = api()  # built: the rule waits until the tree is whole ...
    for check in (config.check, config.plans):  # ... and refuses when it is checked or run
        with pytest.raises(ConfigError) as info:
            check()
        assert str(info.value) == message
    assert _error(tmp_path, text).endswith(message)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        build_config(build_parser().parse_args(["run", "--config", "site.yaml"]))
    assert str(info.value).endswith(message)


def test_flags_may_complete_what_the_file_began(tmp_path, monkeypatch):
    """The rules wait for every flag: a file asking for discovery, with the broker given as a flag, runs."""
    (tmp_path / "site.yaml").write_text("mqtt: {discovery: true}\nsources: [a.mp4]\n")
    monkeypatch.chdir(tmp_path)
    config = build_config(build_parser().parse_args(["run", "--config", "site.yaml", "--mqtt", "mqtt://127.0.0.1"]))
    assert config.mqtt.discovery and config.mqtt.url == "mqtt://127.0.0.1"


def test_tokens_come_from_the_environment_where_the_settings_are_loaded_and_the_files_win(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMDET_WEB_TOKEN", "web-token-from-env")
    monkeypatch.setenv("STREAMDET_SERVER_TOKEN", "server-token-from-env")
    # Sections read nothing from the environment: what the Python API builds is what it was given.
    assert WebConfig().token is None and InferenceConfig().server_token is None
    loaded = load_config(None)
    assert (loaded.web.token, loaded.inference.server_token) == ("web-token-from-env", "server-token-from-env")
    from_file = _load(tmp_path, "web:\n  listen: 0.0.0.0:8080\n  token: file-token-1\n")
    assert from_file.web.token == "file-token-1" and from_file.inference.server_token == "server-token-from-env"
    # The environment's token lets a file listen beyond this machine, as before; null (as the shipped
    # config.yaml writes every token) is no token given.
    assert _load(tmp_path, "web:\n  listen: 0.0.0.0:8080\n").web.token == "web-token-from-env"
    shipped = load_config(ROOT / "config.yaml")
    assert (shipped.web.token, shipped.inference.server_token) == ("web-token-from-env", "server-token-from-env")


@pytest.mark.parametrize("url, words", [
    ("cams.lan:8080", "write the address others open this web view at"),
    ("ftp://cams.lan/", "write the address others open this web view at"),
    ("http://", "write the address others open this web view at"),
    ("http://cams.lan:port/", "write the address others open this web view at"),
    ("http://user:hunter2@cams.lan/", "no user or password in it"),
    ("http://cams.lan/?x=1", "no query or fragment"),
    ("http://cams.lan/#top", "no query or fragment"),
])
def test_web_public_url_is_an_http_address_without_credentials(tmp_path, url, words):
    message = _error(tmp_path, f"web:\n  public_url: '{url}'\n")
    assert words in message and "hunter2" not in message and message.count("\n") == 0, message


def test_web_public_url_is_kept_with_a_slash_at_its_end(tmp_path):
    assert _load(tmp_path, "web:\n  public_url: https://cams.example/sd\n").web.public_url == "https://cams.example/sd/"
    assert WebConfig(public_url="http://[::1]:8080/").public_url == "http://[::1]:8080/"
    assert WebConfig().public_url is None


def test_a_file_or_url_that_would_name_a_source_dot_or_dot_dot_is_named_source_and_stays_in_its_folder(tmp_path):
    """A file called '...mp4' once became the source '..': `--clips 'clips/sub/{name}'` wrote into clips/."""
    import shutil

    from media import clip

    from streamdet.assembly.plan import plan_run, unique_names
    from streamdet.urls import safe_name

    dots = tmp_path / "...mp4"
    shutil.copy(clip("carphone_pristine"), dots)
    (tmp_path / "clips" / "sub" / "source").mkdir(parents=True)
    config = Config(sources=[str(dots)])
    config.events.clips = str(tmp_path / "clips" / "sub" / "{name}")
    plan = plan_run(config)
    assert plan.names == ["source"]
    folder = Path(config.events.clips.replace("{name}", plan.names[0]))  # as the clip stage and its output take it
    assert folder.resolve().parent == (tmp_path / "clips" / "sub").resolve(), folder
    assert unique_names([None, None, None, "source"], ["..", ".", "", "x"]) == ["source~1", "source~2", "source~3",
                                                                                  "source"]
    assert safe_name("rtsp://..") == "camera" and safe_name("http://./") == "camera"
    # A name given as '.', '..' or '' is refused as any name that does not start with a letter or digit.
    for name in (".", "..", ""):
        with pytest.raises(ValueError, match="may hold only letters, digits"):
            SourceEntry(url="a.mp4", name=name)
