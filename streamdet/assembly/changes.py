"""What a reload did (SIGHUP, or POST /api/reload): the cameras added, removed and changed, the settings that
kept their old value, or why nothing changed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reload:
    """The outcome of reading the config file again. `kept`: settings that cannot change while running (model,
    device, precision, web listener), which kept their old value; `error`: one line, the new config was invalid
    and nothing changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"reload refused, the run goes on unchanged: {self.error}"
        parts = [f"{word} {', '.join(names)}" for word, names in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed)) if names]
        if self.kept:
            parts.append(f"kept until a restart: {', '.join(self.kept)}")
        return "reload: " + ("; ".join(parts) if parts else "nothing changed")
