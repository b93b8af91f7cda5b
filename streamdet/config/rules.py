"""The rules that span sections of the settings: what no one section can check when it is built.

A section checks its own keys (and the rules between them) as it is built; these need the whole tree,
and run once it is whole: `Config.plans` runs them (a run starts there, however its Config was made:
from YAML, CLI flags or the Python API), and `streamdet run` runs them through `Config.check` as soon as
every flag is in. Each raises ConfigError, one line naming the setting (and the source, where it is one's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .sections import Config, SourceEntry, SourcePlan


def check_names(entries: list[SourceEntry]) -> None:
    """Two sources under one name would write into one file, and nothing could tell their frames apart."""
    first: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if entry.name is None:
            continue
        where = entry.where or f"sources[{i}]"
        if entry.name in first:
            raise ConfigError(f"{where}: source name '{entry.name}' is given twice (first at {first[entry.name]}); "
                              "give each source its own name")
        first[entry.name] = where


def check_source(plan: SourcePlan) -> None:
    """One source's entry against the sections it resolved to."""
    if plan.detect_url and (plan.recording.mode != "copy" or not plan.output.video):
        # Detected on the sub-stream, recorded from the main one: without a copy recording the main stream
        # would be read for nothing (give the sub-stream as url), and an annotated one would show the
        # sub-stream's pictures.
        raise ConfigError(f"{plan.context}: detect_url needs a copy recording of url (output.video with "
                          "recording.mode: copy); without one, give the sub-stream as url")


def check_run(config: Config, plans: list[SourcePlan]) -> None:
    """The run-wide sections against each other, and the run's sources as a whole."""
    if config.mqtt.discovery and not config.mqtt.url:
        raise ConfigError("mqtt.discovery needs a broker: give --mqtt URL or mqtt.url")
    # A copy recording asked for with nowhere to record it would silently record nothing.
    if plans and all(p.recording.mode == "copy" and not p.output.video for p in plans):
        raise ConfigError("recording.mode copy (--record copy) records a camera's own stream into output.video, "
                          "and none is given; pass --output, e.g. -o rec_{name}_{start}.mp4, or leave the mode out")

