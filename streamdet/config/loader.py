"""Reading the settings file: YAML to the dataclass tree of streamdet.config, checked.

Validation walks the YAML node tree (not the plain loaded dict) so an error can
name the line the bad key or value stands on.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .fields import describe
from .sections import PER_SOURCE, Config, SourceEntry
from ..errors import ConfigError

# Tokens come from the environment, so they are in neither the process list nor a shared settings file;
# one the file gives (not null) wins. Read here, where the settings are loaded, and passed in like any other value.
FROM_ENVIRONMENT = {"web": {"token": "STREAMDET_WEB_TOKEN", "metrics_token": "STREAMDET_METRICS_TOKEN"},
                    "inference": {"server_token": "STREAMDET_SERVER_TOKEN"}}


def _environment() -> dict[str, dict[str, str]]:
    """The sections' values the environment gives (an empty variable gives none)."""
    return {section: {key: os.environ[name] for key, name in keys.items() if os.environ.get(name)}
            for section, keys in FROM_ENVIRONMENT.items()}


def _where(node: yaml.Node | None, origin: str) -> str:
    if node is None:
        return origin
    return f"{origin} line {node.start_mark.line + 1}"


def _convert(node: yaml.Node, tp: Any, key: str, origin: str) -> Any:
    """Turn one YAML node into a value of type `tp`, or raise ConfigError naming `key`."""

    def bad(extra: str = "") -> ConfigError:
        shown = node.value if isinstance(node, yaml.ScalarNode) else type(node).__name__.replace("Node", "").lower()
        return ConfigError(f"{_where(node, origin)}: {key}: {shown!r} is not {describe(tp)}{extra}")

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
        try:
            return SourceEntry(url=str(_convert(node, str, key, origin)), where=where)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: {exc}; give a file, folder, camera index or URL") from None
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{where}: {key}: give a file, URL or camera index, or a mapping with url: and name:")
    pairs = _pairs(node, origin)
    name_node = pairs.get("name", (None, None))[1]
    label = f"{key} ({name_node.value})" if isinstance(name_node, yaml.ScalarNode) else key
    values: dict[str, Any] = {}
    for name, (key_node, value_node) in pairs.items():
        if name in ("url", "name", "detect_url"):
            values[name] = _convert(value_node, str, f"{label}.{name}", origin)
        elif name in PER_SOURCE:
            if not isinstance(value_node, yaml.MappingNode):
                raise ConfigError(f"{_where(value_node, origin)}: {label}.{name}: give a mapping of {name} settings")
            values[name] = _section_overrides(PER_SOURCE[name], value_node, f"{label}.{name}", origin)
        else:
            allowed = ", ".join(["url", "name", "detect_url", *PER_SOURCE])
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


def _build(cls: type, node: yaml.MappingNode | None, prefix: str, origin: str,
           beneath: dict[str, Any] | None = None) -> Any:
    """`cls` from a mapping node (None: no keys given), over `beneath` (values the file's own keys win over
    unless null, by key; for a section, its own such values by key)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    beneath = beneath or {}
    values: dict[str, Any] = {}
    for key, (key_node, value_node) in (_pairs(node, origin) if node is not None else {}).items():
        if key not in hints:
            raise ConfigError(
                f"{_where(key_node, origin)}: unknown key '{prefix}{key}'; allowed keys: {', '.join(names)}"
            )
        if isinstance(beneath.get(key), dict) and isinstance(value_node, yaml.MappingNode):
            values[key] = _build(hints[key], value_node, f"{prefix}{key}.", origin, beneath[key])
        else:
            values[key] = _convert(value_node, hints[key], prefix + key, origin)
    try:
        for key, value in beneath.items():
            if values.get(key) is None:  # absent, or null as the shipped config.yaml writes a token
                values[key] = hints[key](**value) if isinstance(value, dict) else value
        return cls(**values)
    except ValueError as exc:
        where = _where(node, origin) if node is not None else origin
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'}: {exc}") from None


def load_config(path: str | os.PathLike | None) -> Config:
    """Read and check a YAML settings file, with the tokens the environment gives (FROM_ENVIRONMENT); None gives
    the built-in defaults with them. The rules between sections wait for `Config.check` (CLI flags may
    complete what the file began)."""
    if path is None:
        return _build(Config, None, "", "config", _environment())
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config '{path}': no such file; check the --config path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config '{path}': cannot be read ({exc})") from None
    return parse_config(text, path)


def parse_config(text: str, path: str | os.PathLike) -> Config:
    """The settings `text` holds, checked as load_config checks the file `path` (errors name it and the line):
    the camera API checks a changed file this way before it writes it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config '{path}'{where}: not valid YAML: {problem}") from None
    if root is None:
        return _build(Config, None, "", f"config '{path}'", _environment())
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"config '{path}': the top level must be a mapping of sections (model:, inference:, ...)")
    return _build(Config, root, "", f"config '{path}'", _environment())
