"""What a new settings file changes for a run that is going: the cameras added, removed and changed, and the
run-wide settings that cannot change while it runs (`diff`, pure); and what a reload did (`Reload`).

A camera is known by its name, or by its url where it has none: an entry renamed is one camera removed and
another added. A camera is changed when anything it resolves to (its own keys over the sections': source,
detect, track, events, output, recording, its url and detect_url) differs; the sections' own keys (e.g.
`events:`) are defaults the cameras inherit, so a change there changes the cameras that take it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config.sections import Config, OutputConfig, SourcePlan
from ..urls import mask_url

# What a run holds open for its whole life, so it keeps the old value: the model and where it runs (loaded
# once), the web listener and its settings, the MQTT connection, the window, the drawing, the logging, and the
# run-wide outputs (the summary, --overwrite). Named key by key in the reload's line.
FROZEN_SECTIONS = ("model", "inference", "web", "mqtt", "display", "overlay", "logging")
FROZEN_KEYS = {"output": ("summary_json", "overwrite")}


@dataclass(frozen=True)
class Changes:
    """The difference between the settings a run goes on and new ones; nothing applied yet."""

    added: tuple[SourcePlan, ...]    # new cameras, with their settings resolved (their `index` is the new file's)
    removed: tuple[str, ...]         # cameras (by `camera_key`) the new settings no longer have
    changed: tuple[SourcePlan, ...]  # cameras with other settings: removed and added again under the same name
    kept: tuple[str, ...]            # run-wide settings that changed but cannot while running ("model.name")

    @property
    def cameras(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True)
class Reload:
    """What a reload did: the cameras by the names the run shows, and the settings it kept; or why it changed
    nothing (`error`: the one line the settings' checks gave)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    error: str | None = None

    def line(self) -> str:
        """The one log line."""
        if self.error is not None:
            return f"reload refused, the run goes on unchanged: {self.error}"
        parts = [f"{what} {', '.join(names)}" for what, names in
                 (("added", self.added), ("removed", self.removed), ("restarted", self.changed)) if names]
        line = "reload: " + ("; ".join(parts) if parts else "no camera changed")
        if self.kept:
            line += f"; these cannot change while running and keep their old value: {', '.join(self.kept)}"
        return line

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def camera_key(plan: SourcePlan) -> str:
    """How a camera is known across settings files: its name, else its url."""
    return plan.name or plan.url


def camera_label(plan: SourcePlan) -> str:
    """How a camera is shown before the run has named it: its name, else its url without credentials."""
    return plan.name or mask_url(plan.url)


def _resolved(plan: SourcePlan) -> SourcePlan:
    """What makes the camera what it is, without where it stands in the file and the run-wide output keys."""
    output = dataclasses.replace(plan.output, **{key: getattr(OutputConfig(), key) for key in FROZEN_KEYS["output"]})
    return dataclasses.replace(plan, index=0, where="", output=output)


def kept_settings(old: Config, new: Config) -> tuple[str, ...]:
    """The run-wide keys that differ and cannot change while running, as `section.key`, each once."""
    kept = []
    for section in FROZEN_SECTIONS:
        before, after = getattr(old, section), getattr(new, section)
        kept += [f"{section}.{f.name}" for f in dataclasses.fields(before)
                 if getattr(before, f.name) != getattr(after, f.name)]
    for section, keys in FROZEN_KEYS.items():
        kept += [f"{section}.{key}" for key in keys
                 if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)]
    return tuple(kept)


def with_kept(old: Config, new: Config) -> Config:
    """`new` with the settings that cannot change while running put back to `old`'s."""
    kept = {section: getattr(old, section) for section in FROZEN_SECTIONS}
    for section, keys in FROZEN_KEYS.items():
        kept[section] = dataclasses.replace(getattr(new, section),
                                            **{key: getattr(getattr(old, section), key) for key in keys})
    return dataclasses.replace(new, **kept)


def diff(old_plans: list[SourcePlan], new_plans: list[SourcePlan], old: Config, new: Config) -> Changes:
    """The cameras added, removed and changed from `old_plans` (what runs) to `new_plans` (both from
    `Config.plans()`), and the frozen settings that differ between `old` and `new`."""
    before = {camera_key(p): p for p in old_plans}
    after = {camera_key(p): p for p in new_plans}
    added = tuple(p for key, p in after.items() if key not in before)
    removed = tuple(key for key in before if key not in after)
    changed = tuple(p for key, p in after.items() if key in before and _resolved(p) != _resolved(before[key]))
    return Changes(added=added, removed=removed, changed=changed, kept=kept_settings(old, new))


@dataclass(frozen=True)
class SettingsFile:
    """Where a run's settings come from, so that a reload can read them again: the file (the camera API writes
    it back), and how the run read it (that file with the command's flags over it)."""

    path: Path
    read: Callable[[], Config]
