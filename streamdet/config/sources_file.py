"""The cameras of a settings file (`sources:`), read and changed one at a time with the file's comments kept.

A change is made on ruamel.yaml's round-trip tree of the file (docs/dependencies.md says why that library): the
rest of the file keeps its comments, order, quoting and indentation, and a camera changed keeps the comments on
the keys it still has. The text that results is checked whole by the loader, with the same rules and messages as
the file at start-up (config.loader.parse_config, then Config.check), before anything is written
(config.rewrite). What the file holds is read as the loader reads it (PyYAML): values ruamel.yaml's YAML 1.2
would take otherwise (`yes`, `on`, `0o7`) are written quoted when they are strings.

A camera is addressed by its `name:`; an entry without one is listed but cannot be addressed (give it a name).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from ..errors import ConfigError, StreamdetError
from ..urls import mask_url
from .loader import parse_config
from .names import NAME_CHARS, is_plain_name
from .rewrite import replace_file

URL_KEYS = ("url", "detect_url")


class SourceNotFound(StreamdetError):
    """No camera of that name in the file."""


class FileChanged(StreamdetError):
    """The file was changed by someone else while a change was made on it."""


@dataclass(frozen=True)
class Change:
    """A camera added, replaced or removed in the file: `previous` is the file's text before it (kept as the
    backup too), so the change can be taken back whole (`undo`)."""

    name: str
    created: bool
    removed: bool
    previous: str


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Every entry of `sources:` as the loader reads it; a plain string is {"url": ...}."""
    return [entry if isinstance(entry, dict) else {"url": str(entry)} for entry in _entries(_read(path), path)]


def read_entry(path: Path, name: str) -> dict[str, Any]:
    for entry in read_entries(path):
        if entry.get("name") == name:
            return entry
    raise SourceNotFound(f"no camera named '{name}' in {path} (a camera is addressed by its name:)")


def masked(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as it may leave the server: its URLs with credentials and secret query values as ***."""
    return {key: mask_url(str(value)) if key in URL_KEYS and value is not None else value
            for key, value in entry.items()}


def put_entry(path: Path, name: str, given: dict[str, Any]) -> Change:
    """Add the camera `name` (the keys of a `sources:` entry, as in YAML), or replace the one of that name. A URL
    given as the masked form of the stored one keeps the stored one. Raises ConfigError (the file untouched)."""
    if not is_plain_name(name):
        raise ConfigError(f"camera name {name!r} may hold only {NAME_CHARS} (it names files)")
    if given.get("name", name) != name:
        raise ConfigError(f"name: {given['name']!r} differs from the name in the address ('{name}'); "
                          "a camera is renamed by adding it under the new name and removing the old one")
    text = _read(path)
    round_trip = _yaml(text)
    document, seq = _tree(round_trip, text, path)
    entries = _entries(text, path)
    index = _index(entries, name)
    entry = {"name": name, **{k: v for k, v in given.items() if k != "name"}}
    if index is None:
        seq.append(_node(entry))
    else:
        stored = entries[index]
        entry = _keep_stored_urls(entry, stored if isinstance(stored, dict) else {"url": str(stored)})
        if isinstance(seq[index], CommentedMap):
            _merge(seq[index], entry)
        else:
            seq[index] = _node(entry)
    _write(path, text, _dump(round_trip, document))
    return Change(name=name, created=index is None, removed=False, previous=text)


def remove_entry(path: Path, name: str) -> Change:
    text = _read(path)
    round_trip = _yaml(text)
    document, seq = _tree(round_trip, text, path)
    index = _index(_entries(text, path), name)
    if index is None:
        raise SourceNotFound(f"no camera named '{name}' in {path} (a camera is addressed by its name:)")
    del seq[index]
    if not seq:
        _empty(document, seq)
    _write(path, text, _dump(round_trip, document))
    return Change(name=name, created=False, removed=True, previous=text)


def undo(path: Path, change: Change) -> None:
    """The file as it was before `change` (the run refused it)."""
    replace_file(path, change.previous, None)


# ------------------------------------------------------------------ reading


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config '{path}': cannot be read ({exc})") from None


def _entries(text: str, path: Path) -> list[Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        parse_config(text, path)  # raises the loader's line for it
        raise
    sources = document.get("sources") if isinstance(document, dict) else None
    if sources is None:
        return []
    return sources if isinstance(sources, list) else [sources]


def _index(entries: list[Any], name: str) -> int | None:
    found = [i for i, entry in enumerate(entries) if isinstance(entry, dict) and entry.get("name") == name]
    return found[0] if found else None


def _keep_stored_urls(entry: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """Credentials never leave the server: a URL sent back as it was shown (masked) means the stored one."""
    kept = dict(entry)
    for key in URL_KEYS:
        old = stored.get(key)
        if old is not None and kept.get(key) == mask_url(str(old)):
            kept[key] = old
    return kept


# ------------------------------------------------------------------ the round-trip tree


def _yaml(text: str) -> YAML:
    """ruamel.yaml set to write as the file is written: its indentation, long lines kept whole, null as null."""
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 1 << 16
    mapping, offset = _indents(text)
    round_trip.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    round_trip.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    return round_trip


def _indents(text: str) -> tuple[int, int]:
    """How far the file indents a section's keys (the first indented key under a top-level `key:`), and a list's
    dashes under their key (the first block list); without either, as config.yaml: 2 and 2."""
    key = re.search(r"^[^\s#][^\n]*:[ \t]*(?:#[^\n]*)?\n(?:[ \t]*(?:#[^\n]*)?\n)*( +)[^\s#-]", text, re.M)
    dash = re.search(r"^( *)[^\s#-][^\n]*:[ \t]*(?:#[^\n]*)?\n(?:[ \t]*(?:#[^\n]*)?\n)*( *)- ", text, re.M)
    return (len(key.group(1)) if key else 2), (len(dash.group(2)) - len(dash.group(1)) if dash else 2)


def _tree(round_trip: YAML, text: str, path: Path) -> tuple[CommentedMap, CommentedSeq]:
    """The file's round-trip tree and its `sources:` list (made a block list, created if absent)."""
    try:
        document = round_trip.load(text)
    except RuamelError:
        parse_config(text, path)
        raise ConfigError(f"config '{path}': not valid YAML") from None
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        parse_config(text, path)
        raise ConfigError(f"config '{path}': the top level must be a mapping of sections")
    sources = document.get("sources")
    if not isinstance(sources, CommentedSeq):
        # None, or one source given as a string: a list of what there was.
        seq = CommentedSeq([] if sources is None else [sources])
        document["sources"] = seq
    seq = document["sources"]
    seq.fa.set_block_style()  # `sources: []` as the shipped file writes it: a camera added goes on its own lines
    _keep_trailing(seq)
    return document, seq


def _keep_trailing(seq: CommentedSeq) -> None:
    """The comment lines after the last camera belong to what follows the list, not to that camera, which
    ruamel.yaml hangs them on: they move to the list's end, so a camera added or removed leaves them in place."""
    slot = _last_slot(seq)
    if slot is None:
        return
    items, key, position = slot
    token = items[key][position]
    eol, newline, rest = token.value.partition("\n")
    if not rest:
        return
    if eol.strip():
        token.value = eol + newline
    else:
        items[key][position] = None
    if seq.ca.comment is None:
        seq.ca.comment = [None, None]  # without it ruamel.yaml writes no end comments at all
    seq.ca.end = [CommentToken(rest, CommentMark(0), None), *(seq.ca.end or [])]


def _last_slot(node: Any) -> tuple[dict, Any, int] | None:
    """Where the comment after a block mapping's or list's last line is kept: (comments, key, position)."""
    if not isinstance(node, (CommentedMap, CommentedSeq)) or not node or node.fa.flow_style():
        return None
    key = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
    inner = _last_slot(node[key])
    if inner is not None:
        return inner
    position = 2 if isinstance(node, CommentedMap) else 0
    comments = node.ca.items.get(key)
    if comments is None or len(comments) <= position or comments[position] is None:
        return None
    return node.ca.items, key, position


def _empty(document: CommentedMap, seq: CommentedSeq) -> None:
    """The last camera removed: `sources: []`, the comments after the list kept after it (ruamel.yaml writes an
    empty block list that holds comments as YAML no reader takes)."""
    after = "".join(token.value for token in seq.ca.end or [] if token is not None)
    document["sources"] = CommentedSeq()
    document["sources"].fa.set_flow_style()
    if after.strip():
        document.ca.items["sources"] = [None, None, CommentToken("\n" + after, CommentMark(0), None),
                                        None]


def _node(value: Any) -> Any:
    """A JSON value as ruamel.yaml writes it: mappings as blocks, lists of numbers and points on one line."""
    if isinstance(value, dict):
        node = CommentedMap()
        for key, item in value.items():
            node[str(key)] = _node(item)
        return node
    if isinstance(value, list):
        node = CommentedSeq(_node(item) for item in value)
        if not any(isinstance(item, dict) for item in value):
            node.fa.set_flow_style()
        return node
    if isinstance(value, str) and _resolves_otherwise(value):
        return DoubleQuotedScalarString(value)
    return value


def _resolves_otherwise(text: str) -> bool:
    """Whether the loader (PyYAML, YAML 1.1) would read `text` written plain as something else than this string."""
    return yaml.SafeLoader.resolve(yaml.SafeLoader, yaml.ScalarNode, text, (True, False)) != "tag:yaml.org,2002:str"


def _merge(old: CommentedMap, new: dict[str, Any]) -> None:
    """`old` made to hold `new`, keeping the keys (and their comments) whose values stay."""
    for key in [k for k in old if k not in new]:
        del old[key]
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), CommentedMap):
            _merge(old[key], value)
        elif key not in old or old[key] != value or isinstance(old[key], bool) != isinstance(value, bool):
            old[key] = _node(value)


def _dump(round_trip: YAML, document: CommentedMap) -> str:
    out = io.StringIO()
    round_trip.dump(document, out)
    return out.getvalue()


def _write(path: Path, before: str, after: str) -> None:
    """`after` checked whole as the loader checks the file, then written in place of `before` (kept as the
    backup), unless the file changed meanwhile."""
    parse_config(after, path).check()
    if _read(path) != before:
        raise FileChanged(f"config '{path}' was changed by someone else meanwhile; nothing was written: try again")
    try:
        replace_file(path, after, before)
    except OSError as exc:
        raise ConfigError(f"config '{path}' cannot be written ({exc.strerror or exc}); the camera API writes a "
                          "temporary file and a .bak beside it, so the folder must be writable for streamdet's "
                          "user") from None
