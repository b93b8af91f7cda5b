"""The rule for names the user gives (sources, zones, lines, server models): they become file names,
MQTT topics and server model folders, so one pattern holds them all."""

from __future__ import annotations

import re

# No spaces, no '/', no leading '.'. One rule for sources, zones, lines and server models, so a name
# `export-server` writes `run` takes.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
NAME_CHARS = "letters, digits, '_', '-', '.'"


def is_plain_name(text: str) -> bool:
    return re.fullmatch(NAME_PATTERN, text) is not None
