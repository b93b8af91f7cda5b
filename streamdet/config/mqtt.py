"""The `mqtt:` section: the broker events go to, their topics, and Home Assistant discovery."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .fields import check_fields


def is_topic_prefix(text: str) -> bool:
    """A topic to put levels under: no wildcards, no spaces, no empty level (a, a/b; not a//b, /a, a/)."""
    return all(re.fullmatch(r"[^#+\s/]+", level) for level in text.split("/"))


@dataclass
class MqttConfig:
    url: str = field(default="", repr=False)  # may hold a password
    prefix: str = "streamdet"
    qos: int = 1
    required: bool = True
    outbox: int = 1000
    ca_file: str | None = None
    client_id: str = ""  # "" = streamdet-<host name>-<random>: unique, as a broker keeps one connection per id
    discovery: bool = False  # Home Assistant MQTT discovery (streamdet.outputs.hass); needs url (config.rules)
    discovery_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        check_fields(self)
        for key in ("prefix", "discovery_prefix"):
            if not is_topic_prefix(getattr(self, key)):
                raise ValueError(f"{key} must be a topic without '#', '+', spaces, empty levels or a "
                                 "leading/trailing '/'")
        if self.qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        if not 1 <= self.outbox <= 100_000:
            raise ValueError("outbox must be between 1 and 100000 events")
