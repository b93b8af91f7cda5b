"""The settings tree: dataclasses loaded from YAML, checked, then overridden by CLI flags.

Validation walks the YAML node tree (not the plain loaded dict) so an error can
name the line the bad key or value stands on.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "ssdlite_mobilenet_v2"
    labels: str | None = None
    cache_dir: str | None = None
    base_url: str | None = None
    fp32: bool = False


@dataclass
class InferenceConfig:
    device: str = "CPU"
    hint: Literal["THROUGHPUT", "LATENCY"] = "THROUGHPUT"
    nireq: int = 0
    streams: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        for key in ("nireq", "streams", "threads"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be 0 (automatic) or a positive number")


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


@dataclass
class DisplayConfig:
    show: Literal["auto", "yes", "no"] = "auto"


@dataclass
class OverlayConfig:
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


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    sources: list[str] = field(default_factory=list)
    source: SourceConfig = field(default_factory=SourceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


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
        if isinstance(node, yaml.ScalarNode) and node.value != "" and args[0] is str:
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise bad()


def _build(cls: type, node: yaml.MappingNode, prefix: str, origin: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value
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
