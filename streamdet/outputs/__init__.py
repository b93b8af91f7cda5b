"""Where processed frames go. Every output has the `Output` interface; `plan_targets`
checks all of a run's paths before any work, `open_output` makes one once its source is open.
"""

from __future__ import annotations

from ..config.sections import RecordingConfig
from ..sources import SourceInfo
from .base import Output, write_atomically
from .images import ImageOutput
from .jsonl import EventsOutput, JsonlOutput
from .plan import Target, plan_targets
from .video import VideoOutput
from .window import WindowOutput, display_available, want_window

__all__ = ["Output", "Target", "plan_targets", "open_output", "write_atomically", "WindowOutput",
           "display_available", "want_window", "VideoOutput", "ImageOutput", "JsonlOutput", "EventsOutput"]


def open_output(target: Target, info: SourceInfo, source_name: str, recording: RecordingConfig) -> Output:
    """The output for a checked target; files are created on the first frame, not here."""
    if target.kind == "video":
        return VideoOutput(target.path, info, source_name, recording)
    if target.kind in ("image", "images"):
        return ImageOutput(target.path, folder=target.kind == "images")
    if target.kind == "jsonl":
        return JsonlOutput(target.path, append=target.continues)
    if target.kind == "events":
        return EventsOutput(target.path, append=target.continues)
    raise ValueError(f"no output is made for a {target.kind} target")
