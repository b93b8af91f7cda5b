"""The settings tree: dataclasses loaded from YAML, checked, then overridden by CLI flags.

Validation walks the YAML node tree (not the plain loaded dict) so an error can
name the line the bad key or value stands on.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .urls import mask_url


@dataclass
class ModelConfig:
    name: str = "ssdlite_mobilenet_v2"
    labels: str | None = None
    cache_dir: str | None = None
    base_url: str | None = None
    fp32: bool = False


# Past these, more requests, streams or threads only add memory and latency on
# any machine streamdet runs on, and frames in flight grow with requests.
LIMITS = {"nireq": 64, "streams": 64, "threads": 256}


@dataclass
class InferenceConfig:
    device: str = "CPU"
    hint: Literal["THROUGHPUT", "LATENCY"] = "THROUGHPUT"
    nireq: int = 0
    streams: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        for key, limit in LIMITS.items():
            if not 0 <= getattr(self, key) <= limit:
                raise ValueError(f"{key} must be 0 (automatic) or a number up to {limit}")


@dataclass
class DetectConfig:
    threshold: float = 0.5
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")


@dataclass
class SourceConfig:
    loop: bool = False
    policy: Literal["auto", "all", "newest"] = "auto"
    decode_threads: int = 0
    ignore_errors: bool = False
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 30.0
    reconnect_attempts: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0

    def __post_init__(self) -> None:
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
    summary_json: str | None = None
    overwrite: bool = False


@dataclass
class DisplayConfig:
    show: Literal["auto", "yes", "no"] = "auto"


@dataclass
class OverlayConfig:
    draw: Literal["auto", "yes", "no"] = "auto"
    labels: bool = True
    scores: bool = True
    fps: bool = True
    line_width: int = 0
    font_scale: float = 0.0

    def __post_init__(self) -> None:
        if self.line_width < 0 or self.font_scale < 0:
            raise ValueError("line_width and font_scale must be 0 (automatic) or positive")


@dataclass
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    quiet: bool = False
    status_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.status_interval < 0:
            raise ValueError("status_interval must be 0 (off) or a positive number of seconds")


# The sections a source entry may override, and the keys of them that belong to the whole run.
PER_SOURCE = {"source": SourceConfig, "detect": DetectConfig, "output": OutputConfig}
RUN_WIDE = {"output": ("summary_json", "overwrite")}


@dataclass
class SourceEntry:
    """One entry of `sources:`: where frames come from, and this source's own settings.

    `source`, `detect` and `output` hold only the keys the entry sets; every
    other key comes from the section of the same name (see `Config.plans`).
    """

    url: str
    name: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    detect: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # where it was written (file and line), for error messages

    def __post_init__(self) -> None:
        if not str(self.url).strip():
            raise ValueError("url must not be empty")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError(f"name {self.name!r} may hold only letters, digits, '_', '-', '.' (it names files)")
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
    output: OutputConfig


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    sources: list[SourceEntry] = field(default_factory=list)  # plain strings are taken too (API, CLI)
    source: SourceConfig = field(default_factory=SourceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def plans(self) -> list[SourcePlan]:
        """Every source with its own settings over the sections'; raises ConfigError naming the source."""
        plans = []
        # The Python API and the CLI give plain strings: entries with no settings of their own.
        entries = [s if isinstance(s, SourceEntry) else SourceEntry(url=str(s)) for s in self.sources]
        for i, entry in enumerate(entries):
            sections = {}
            for section in PER_SOURCE:
                try:
                    sections[section] = dataclasses.replace(getattr(self, section), **getattr(entry, section))
                except ValueError as exc:
                    where = f"{entry.where}: " if entry.where else ""
                    raise ConfigError(f"{where}source '{entry.label}': {section}: {exc}") from None
            plans.append(SourcePlan(index=i, url=entry.url, name=entry.name, **sections))
        rtsp = {p.source.rtsp_transport for p in plans if str(p.url).lower().startswith(("rtsp://", "rtsps://"))}
        if len(rtsp) > 1:
            # OpenCV hands FFmpeg its capture options through one process-wide variable.
            raise ConfigError("sources ask for different rtsp_transport values (tcp and udp); OpenCV's FFmpeg "
                              "takes one for the whole process: give every RTSP source the same one")
        return plans


def _where(node: yaml.Node | None, origin: str) -> str:
    if node is None:
        return origin
    return f"{origin} line {node.start_mark.line + 1}"


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _convert(node: yaml.Node, tp: Any, key: str, origin: str) -> Any:
    """Turn one YAML node into a value of type `tp`, or raise ConfigError naming `key`."""

    def bad(extra: str = "") -> ConfigError:
        shown = node.value if isinstance(node, yaml.ScalarNode) else type(node).__name__.replace("Node", "").lower()
        return ConfigError(f"{_where(node, origin)}: {key}: {shown!r} is not {_describe(tp)}{extra}")

    if tp is SourceEntry:
        return _source_entry(node, key, origin)
    if dataclasses.is_dataclass(tp):
        if not isinstance(node, yaml.MappingNode):
            raise bad()
        return _build(tp, node, key + ".", origin)
    args = typing.get_args(tp)
    kind = typing.get_origin(tp)
    if kind in (typing.Union, types.UnionType):
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(node, arg, key, origin)
            except ConfigError:
                continue
        raise bad()
    if kind is list:
        if isinstance(node, yaml.ScalarNode) and node.value != "" and args[0] in (str, SourceEntry):
            # One source or class given as a scalar is a list of one.
            return [_convert(node, args[0], key, origin)]
        if not isinstance(node, yaml.SequenceNode):
            raise bad()
        return [_convert(item, args[0], f"{key}[{i}]", origin) for i, item in enumerate(node.value)]
    if not isinstance(node, yaml.ScalarNode):
        raise bad()
    value = yaml.safe_load(yaml.serialize(node))
    if kind is Literal:
        # YAML reads yes/no/on/off as booleans; accept them back as words.
        if isinstance(value, bool):
            value = {True: "yes", False: "no"}[value]
        if isinstance(value, str):
            for allowed in args:
                if value.lower() == str(allowed).lower():
                    return allowed
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise bad(" (a finite number)" if isinstance(value, float) else "")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise bad()


def _source_entry(node: yaml.Node, key: str, origin: str) -> SourceEntry:
    """A `sources:` entry: a plain string, or a mapping with url, name and per-source sections."""
    where = _where(node, origin)
    if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null":
        return SourceEntry(url=str(_convert(node, str, key, origin)), where=where)
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{where}: {key}: give a file, URL or camera index, or a mapping with url: and name:")
    pairs = _pairs(node, origin)
    name_node = pairs.get("name", (None, None))[1]
    label = f"{key} ({name_node.value})" if isinstance(name_node, yaml.ScalarNode) else key
    values: dict[str, Any] = {}
    for name, (key_node, value_node) in pairs.items():
        if name in ("url", "name"):
            values[name] = _convert(value_node, str, f"{label}.{name}", origin)
        elif name in PER_SOURCE:
            if not isinstance(value_node, yaml.MappingNode):
                raise ConfigError(f"{_where(value_node, origin)}: {label}.{name}: give a mapping of {name} settings")
            values[name] = _section_overrides(PER_SOURCE[name], value_node, f"{label}.{name}", origin)
        else:
            allowed = ", ".join(["url", "name", *PER_SOURCE])
            raise ConfigError(f"{_where(key_node, origin)}: {label}: unknown key '{name}'; allowed keys: {allowed}")
    if "url" not in values:
        raise ConfigError(f"{where}: {label}: no url; every source needs url: (a file, folder, camera index or URL)")
    try:
        return SourceEntry(**values, where=where)
    except ValueError as exc:
        raise ConfigError(f"{where}: {label}: {exc}") from None


def _section_overrides(cls: type, node: yaml.MappingNode, prefix: str, origin: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for name, (key_node, value_node) in _pairs(node, origin).items():
        if name not in hints:
            raise ConfigError(f"{_where(key_node, origin)}: unknown key '{prefix}.{name}'; allowed keys: {', '.join(allowed)}")
        values[name] = _convert(value_node, hints[name], f"{prefix}.{name}", origin)
    try:
        dataclasses.replace(cls(), **values)
    except ValueError as exc:
        raise ConfigError(f"{_where(node, origin)}: {prefix}: {exc}") from None
    return values


def _pairs(node: yaml.MappingNode, origin: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping's keys in order; a key given twice is an error (YAML would keep the last silently)."""
    pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in pairs:
            first = pairs[key][0].start_mark.line + 1
            raise ConfigError(f"{_where(key_node, origin)}: '{key}' is given twice (first on line {first}); keep one")
        pairs[key] = (key_node, value_node)
    return pairs


def _build(cls: type, node: yaml.MappingNode, prefix: str, origin: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, (key_node, value_node) in _pairs(node, origin).items():
        if key not in hints:
            raise ConfigError(
                f"{_where(key_node, origin)}: unknown key '{prefix}{key}'; allowed keys: {', '.join(names)}"
            )
        values[key] = _convert(value_node, hints[key], prefix + key, origin)
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"{_where(node, origin)}: {prefix.rstrip('.') or 'config'}: {exc}") from None


def load_config(path: str | os.PathLike | None) -> Config:
    """Read and check a YAML settings file; None gives the built-in defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config '{path}': no such file; check the --config path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config '{path}': cannot be read ({exc})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config '{path}'{where}: not valid YAML: {problem}") from None
    if root is None:
        return Config()
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"config '{path}': the top level must be a mapping of sections (model:, inference:, ...)")
    return _build(Config, root, "", f"config '{path}'")


def override(config: Config, section: str, **values: Any) -> None:
    """Apply CLI flags (None means 'not given') to one section, re-running its checks."""
    current = getattr(config, section)
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return
    try:
        setattr(config, section, dataclasses.replace(current, **given))
    except ValueError as exc:
        raise ConfigError(f"{section}: {exc}") from None
