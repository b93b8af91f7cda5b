"""The settings tree: one dataclass per section, each checking its own values when it is built.

Each section first checks its values against its own type hints (`config.fields`: the `Literal`
choices, kinds, finite numbers), then its ranges and the rules between its own keys. Rules that span
sections are `config.rules`, run by `Config.check` and `Config.plans`. streamdet.config.loader loads
the tree from YAML (and the tokens from the environment); CLI flags override it with `override`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError
from . import rules
from .events import EventsConfig, TrackConfig, check_shape
from .fields import check_fields
from .mqtt import MqttConfig
from .names import NAME_CHARS, is_plain_name
from .web import WebConfig
from ..urls import NETWORK_SCHEMES, check_url, is_loopback, mask_url, parse_server, scheme_of


@dataclass
class ModelConfig:
    name: str = "ssdlite_mobilenet_v2"
    labels: str | None = None
    cache_dir: str | None = None
    base_url: str | None = None
    fp32: bool = False

    def __post_init__(self) -> None:
        check_fields(self)


# Past these, more requests, streams or threads only add memory and latency on
# any machine streamdet runs on, and frames in flight grow with requests.
LIMITS = {"nireq": 64, "streams": 64, "threads": 256}


# OpenVINO's performance hints; CUMULATIVE_THROUGHPUT spreads requests over every device of AUTO.
Hint = Literal["THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT"]
HINTS: tuple[str, ...] = typing.get_args(Hint)


# Precisions a device infers in; "auto" leaves it to OpenVINO (bf16 on CPUs with AVX-512 BF16 or AMX, f16 on GPUs).
Precision = Literal["f32", "bf16", "f16", "auto"]
PRECISION_NAMES: tuple[str, ...] = typing.get_args(Precision)
# f32 by measurement (docs/precision.md): bf16 and f16 change the detections, so they are the user's choice.
DEFAULT_PRECISION = "f32"


MAX_SERVER_TIMEOUT = 300.0  # past this a request is lost, not slow: the outage handling should take over


@dataclass
class InferenceConfig:
    device: str = "CPU"
    hint: Hint = "THROUGHPUT"
    precision: Precision = DEFAULT_PRECISION
    nireq: int = 0
    streams: int = 0
    threads: int = 0
    server: str = field(default="", repr=False)  # grpc[s]://host:port of a KServe v2 server; "" = infer here
    server_model: str = "ssdlite_mobilenet_v2"
    server_version: int = 0
    server_timeout: float = 10.0
    server_ca: str | None = None
    server_token: str | None = field(default=None, repr=False)  # or STREAMDET_SERVER_TOKEN, read by the loader

    def __post_init__(self) -> None:
        check_fields(self)
        for key, limit in LIMITS.items():
            if not 0 <= getattr(self, key) <= limit:
                raise ValueError(f"{key} must be 0 (automatic) or a number up to {limit}")
        if not 0 < self.server_timeout <= MAX_SERVER_TIMEOUT:
            raise ValueError(f"server_timeout must be a positive number of seconds (at most {MAX_SERVER_TIMEOUT:g})")
        if self.server_version < 0:
            raise ValueError("server_version must be 0 (the server's choice, usually the newest) or a version number")
        if not is_plain_name(self.server_model):
            raise ValueError(f"server_model {self.server_model!r} is not a model name ({NAME_CHARS})")
        if self.server:
            self._check_server()

    def _check_server(self) -> None:
        scheme, host, _ = parse_server(self.server)
        if self.server_ca is not None and scheme != "grpcs":
            raise ValueError("server_ca is the CA bundle for a grpcs:// server; the server is grpc:// (no TLS)")
        if self.server_token and scheme == "grpc" and not is_loopback(host):
            raise ValueError(f"server {mask_url(self.server)!r}: a token would cross the network unencrypted; "
                             "use grpcs://")


@dataclass
class DetectConfig:
    threshold: float = 0.5
    classes: list[str] = field(default_factory=list)
    # Motion gating: the network runs only on frames where something moved (see streamdet.motion).
    motion: bool = False
    motion_threshold: int = 25            # grey-level change (of 255) that counts as motion, after blurring
    motion_mask: list[list[list[float]]] = field(default_factory=list)  # polygons where motion is ignored
    stationary_interval: float = 10.0     # seconds: still scenes are looked at again this often
    # The network sees at most this many frames a second of the camera (0: every frame); the frames between
    # carry the tracks' predictions (see streamdet.scheduler).
    fps: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if not 1 <= self.motion_threshold <= 254:
            raise ValueError("motion_threshold must be a grey-level change between 1 and 254")
        if not 0 < self.stationary_interval <= 3600:
            raise ValueError("stationary_interval must be a positive number of seconds (at most 3600)")
        if not 0 <= self.fps <= 240:
            raise ValueError("fps must be 0 (every frame) or frames a second the network sees (at most 240)")
        for k, polygon in enumerate(self.motion_mask):
            if not isinstance(polygon, list) or len(polygon) < 3:
                raise ValueError(f"motion_mask polygon {k + 1} needs at least 3 [x, y] points")
            check_shape("motion_mask", f"polygon{k + 1}", polygon)


# all = never drop (files), newest = keep only the newest (cameras); auto picks per source.
Policy = Literal["auto", "all", "newest"]
Transport = Literal["tcp", "udp"]
# How a network camera is decoded: software, or on a GPU's media engine through FFmpeg (streamdet.sources.demux).
Hwaccel = Literal["none", "auto", "vaapi", "qsv", "cuda"]
HWACCELS: tuple[str, ...] = typing.get_args(Hwaccel)


@dataclass
class SourceConfig:
    loop: bool = False
    policy: Policy = "auto"
    decode_threads: int = 0
    ignore_errors: bool = False
    rtsp_transport: Transport = "tcp"
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 30.0
    reconnect_attempts: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    hwaccel: Hwaccel = "none"

    def __post_init__(self) -> None:
        check_fields(self)
        for key in ("open_timeout", "read_timeout", "reconnect_initial", "reconnect_max"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be a positive number of seconds")
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be at least reconnect_initial")
        for key in ("decode_threads", "reconnect_attempts", "width", "height"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be 0 or a positive number")
        if self.fps < 0:
            raise ValueError("fps must be 0 (camera default) or positive")


@dataclass
class OutputConfig:
    video: str | None = None
    json: str | None = None
    events: str | None = None
    summary_json: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        check_fields(self)


# annotated: the frames as drawn, encoded here; copy: a network camera's own stream as sent.
RecordingMode = Literal["annotated", "copy"]


@dataclass
class RecordingConfig:
    mode: RecordingMode = "annotated"
    codec: Literal["h264", "mp4v"] = "h264"
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "superfast"
    crf: int = 23
    segment_seconds: float = 0.0
    keep_hours: float = 0.0
    keep_gb: float = 0.0
    on_error: Literal["stop", "continue"] = "stop"

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 <= self.crf <= 51:
            raise ValueError("crf must be between 0 (lossless) and 51 (smallest)")
        for key in ("segment_seconds", "keep_hours", "keep_gb"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be 0 (off) or positive")


@dataclass
class DisplayConfig:
    show: Literal["auto", "yes", "no"] = "auto"

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class OverlayConfig:
    draw: Literal["auto", "yes", "no"] = "auto"
    labels: bool = True
    scores: bool = True
    fps: bool = True
    line_width: int = 0
    font_scale: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self)
        # Past these a label or a line covers the whole picture; OpenCV fails on far larger values.
        if not 0 <= self.line_width <= 100:
            raise ValueError("line_width must be 0 (automatic) or a number of pixels up to 100")
        if not 0 <= self.font_scale <= 20:
            raise ValueError("font_scale must be 0 (automatic) or a positive number up to 20")


LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass
class LoggingConfig:
    level: LogLevel = "info"
    quiet: bool = False
    status_interval: float = 10.0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.status_interval < 0:
            raise ValueError("status_interval must be 0 (off) or a positive number of seconds")


# The sections a source entry may override, and the keys of them that belong to the whole run.
PER_SOURCE = {"source": SourceConfig, "detect": DetectConfig, "track": TrackConfig, "events": EventsConfig,
              "output": OutputConfig, "recording": RecordingConfig}
RUN_WIDE = {"output": ("summary_json", "overwrite")}


@dataclass
class SourceEntry:
    """One entry of `sources:`: where frames come from, and this source's own settings. `source`, `detect` and
    `output` hold only the keys the entry sets; every other key comes from the section of the same name (see
    `Config.plans`)."""

    url: str
    name: str | None = None
    detect_url: str | None = None  # a sub-stream of the same camera to detect on; `url` is what is recorded
    source: dict[str, Any] = field(default_factory=dict)
    detect: dict[str, Any] = field(default_factory=dict)
    track: dict[str, Any] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    recording: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # where it was written (file and line), for error messages

    def __post_init__(self) -> None:
        if not str(self.url).strip():
            raise ValueError("url must not be empty")
        if scheme_of(str(self.url)) in NETWORK_SCHEMES:
            check_url(str(self.url))  # here, so that a URL no camera could take fails before the model loads
        if self.detect_url is not None:
            if scheme_of(str(self.url)) not in NETWORK_SCHEMES or scheme_of(str(self.detect_url)) not in NETWORK_SCHEMES:
                raise ValueError("detect_url is a network camera's sub-stream: url and detect_url must both be "
                                 "rtsp:// or http(s):// URLs")
            check_url(str(self.detect_url))
        if self.name is not None and not is_plain_name(self.name):
            raise ValueError(f"name {self.name!r} may hold only {NAME_CHARS} (it names files)")
        for section, cls in PER_SOURCE.items():
            given = getattr(self, section)
            known = {f.name for f in dataclasses.fields(cls)} - set(RUN_WIDE.get(section, ()))
            unknown = sorted(set(given) - known)
            if unknown:
                raise ValueError(f"unknown key '{section}.{unknown[0]}' for one source; allowed: {', '.join(sorted(known))}")
            dataclasses.replace(cls(), **given)  # runs the section's own checks on what this entry sets

    @property
    def label(self) -> str:
        return self.name or mask_url(self.url)


@dataclass(frozen=True)
class SourcePlan:
    """One source with its settings resolved: the entry's own keys over the sections'."""

    index: int
    url: str
    name: str | None
    source: SourceConfig
    detect: DetectConfig
    track: TrackConfig
    events: EventsConfig
    output: OutputConfig
    recording: RecordingConfig
    where: str = ""  # where its entry was written (file and line), for error messages
    detect_url: str | None = None

    @property
    def context(self) -> str:
        """How an error names this source: where it was written, and its name or masked URL."""
        where = f"{self.where}: " if self.where else ""
        return f"{where}source '{self.name or mask_url(self.url)}'"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    sources: list[SourceEntry] = field(default_factory=list)  # plain strings are taken too (API, CLI)
    source: SourceConfig = field(default_factory=SourceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    web: WebConfig = field(default_factory=WebConfig)

    def check(self) -> None:
        """The rules that span sections (config.rules); raises ConfigError. Each section checked itself when
        it was built; these wait until the tree is whole (CLI flags complete what a file began)."""
        self.plans()

    def plans(self) -> list[SourcePlan]:
        """Every source with its own settings over the sections', checked by config.rules; raises ConfigError
        naming the source."""
        plans = []
        # The Python API and the CLI give plain strings: entries with no settings of their own.
        try:
            entries = [s if isinstance(s, SourceEntry) else SourceEntry(url=str(s)) for s in self.sources]
        except ValueError as exc:
            raise ConfigError(f"source: {exc}; give a file, folder, camera index or URL") from None
        rules.check_names(entries)
        for i, entry in enumerate(entries):
            sections = {}
            for section in PER_SOURCE:
                try:
                    sections[section] = dataclasses.replace(getattr(self, section), **getattr(entry, section))
                except ValueError as exc:
                    where = f"{entry.where}: " if entry.where else ""
                    raise ConfigError(f"{where}source '{entry.label}': {section}: {exc}") from None
            plan = SourcePlan(index=i, url=entry.url, name=entry.name, where=entry.where,
                              detect_url=entry.detect_url, **sections)
            rules.check_source(plan)
            plans.append(plan)
        rules.check_run(self, plans)
        return plans


def override(config: Config, section: str, **values: Any) -> None:
    """Apply CLI flags (None means 'not given') to one section, re-running its checks (the rules between
    sections wait for `Config.check`, once every flag is in)."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return
    try:
        setattr(config, section, dataclasses.replace(getattr(config, section), **given))
    except ValueError as exc:
        raise ConfigError(f"{section}: {exc}") from None
