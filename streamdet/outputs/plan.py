"""Where each output goes, checked before any work: nothing may be written over an input or another output.

Every path is compared resolved (symlinks and `..` followed) and, where it
exists, by inode (hard links), so no spelling of a path slips through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config.sections import SourcePlan
from ..errors import OutputError
from ..sources import ImageFilesSource, Source
from ..sources.files import IMAGE_SUFFIXES
from .sidecar import sidecar_path
from .video import RECORDING_SUFFIXES


@dataclass(frozen=True)
class Target:
    """One output file or folder and the sources that write to it."""

    kind: str                   # "video", "image" (one picture), "images" (a folder), "jsonl", "events", "summary",
                                # "sidecar" (a copy recording's detections, written by streamdet.outputs.copy),
                                # "clips" (a folder of event clips: checked here, written by outputs.clips),
                                # "snapshots" (a folder of snapshots: checked here, written by outputs.snapshots)
    path: str
    sources: tuple[int, ...]    # indexes into the run's sources; empty for the summary
    what: str                   # for messages: "recording of bikes"
    # A detections or events file this run wrote itself for the same camera, before a reload changed it: the
    # camera's lines go on at its end (appended), nothing in it is replaced (streamdet.assembly.plan.plan_added).
    continues: bool = False


def _suffixes(names) -> str:
    return ", ".join(names)


def _picture_kind(path: str, source: Source) -> str:
    """What `--output` makes for this source, from the name's extension and the kind of source."""
    suffix = Path(path).suffix.lower()
    if isinstance(source, ImageFilesSource):
        if suffix in RECORDING_SUFFIXES and source.folder:
            return "video"
        if suffix in IMAGE_SUFFIXES and not source.folder:
            return "image"
        if not suffix:
            return "images"
        if suffix in IMAGE_SUFFIXES:
            raise OutputError(f"output '{path}': source '{source.display_name}' is a folder of images; give a folder "
                              f"for the annotated images, or a video name ({_suffixes(RECORDING_SUFFIXES)})")
        raise OutputError(f"output '{path}': '{suffix}' is not a supported picture format for an image source; "
                          f"use {_suffixes(IMAGE_SUFFIXES)}, or a folder")
    if suffix in RECORDING_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        raise OutputError(f"output '{path}': an image name for the video source '{source.display_name}'; "
                          f"give a video name ({_suffixes(RECORDING_SUFFIXES)})")
    shown = f"'{suffix}'" if suffix else "a name without an extension"
    raise OutputError(f"output '{path}': {shown} is not a supported recording format; use {_suffixes(RECORDING_SUFFIXES)}")


def plan_targets(plans: list[SourcePlan], sources: list[Source], summary_json: str | None,
                 overwrite: bool, continuing: frozenset[str] = frozenset()) -> list[Target]:
    """Every output of the run, checked; raises OutputError naming the output (and what it clashes with).
    `continuing`: the resolved paths of detections and events files the run wrote itself for these cameras,
    which they go on writing (appended) rather than being refused as existing."""
    targets: list[Target] = []
    jsonl: dict[str, list[int]] = {}
    events: dict[str, list[int]] = {}
    for plan, source in zip(plans, sources):
        out = plan.output
        if out.video:
            path = out.video.replace("{name}", source.name)
            kind = _picture_kind(path, source)
            rec = plan.recording
            # Each new file (a segment, or a recording started again after an error) gets a name of its own.
            if (rec.segment_seconds or rec.keep_hours or rec.keep_gb or rec.on_error == "continue") \
                    and "{start}" not in path:
                raise OutputError(f"output '{path}': segments, their expiry and on_error: continue (recording:) need "
                                  "{start} in the recording path, e.g. rec_{name}_{start}.mp4")
            if "{start}" in str(Path(path).parent):
                # Segments of a camera live in one folder, where their expiry finds them; folders are not made.
                raise OutputError(f"output '{path}': {{start}} may only be in the file name, not in a folder; "
                                  "e.g. rec/cam_{start}.mp4")
            if "{start}" in path and kind != "video":
                raise OutputError(f"output '{path}': {{start}} is for recordings; name a video ({_suffixes(RECORDING_SUFFIXES)})")
            what = f"recording of {source.name}" if kind == "video" else f"annotated images of {source.name}"
            targets.append(Target(kind, path, (plan.index,), what))
            if kind == "video" and rec.mode == "copy":
                if Path(path).suffix.lower() not in (".mp4", ".mov"):
                    raise OutputError(f"output '{path}': a copy recording is fragmented MP4; name it .mp4 or .mov")
                if "{start}" not in path:  # segments' detections files get new names, like the segments
                    targets.append(Target("sidecar", str(sidecar_path(Path(path))), (plan.index,),
                                          f"detections of {source.name}'s copy recording"))
        if out.json:
            jsonl.setdefault(out.json.replace("{name}", source.name), []).append(plan.index)
        if out.events:
            events.setdefault(out.events.replace("{name}", source.name), []).append(plan.index)
    for kind, paths, what in (("jsonl", jsonl, "detections"), ("events", events, "events")):
        for path, users in paths.items():
            names = ", ".join(sources[i].name for i in users)
            targets.append(Target(kind, path, tuple(users), f"{what} of {names}",
                                  continues=os.path.realpath(path) in continuing))
    if summary_json:
        targets.append(Target("summary", summary_json, (), "run summary"))
    # Event clips' and snapshots' folders are checked with the rest; their outputs are made with the events'.
    folders = [Target(kind, folder.replace("{name}", source.name), (plan.index,), f"{what} of {source.name}")
               for plan, source in zip(plans, sources)
               for kind, folder, what in (("clips", plan.events.clips, "event clips"),
                                          ("snapshots", plan.events.snapshots, "snapshots")) if folder]
    _check(targets + folders, sources, overwrite)
    return targets


def _identity(path: str) -> tuple[str, tuple[int, int] | None]:
    """The resolved path and, when something exists there, its (device, inode)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        return real, (st.st_dev, st.st_ino)
    except OSError:
        return real, None


def _written_files(target: Target, sources: list[Source]) -> list[str]:
    """The files a target writes; for a folder of images, the input file names it will use."""
    if target.kind in ("clips", "snapshots"):
        return []  # new names only, never over a file (streamdet.outputs.segments, streamdet.events)
    if target.kind != "images":
        return [target.path]
    names: list[str] = []
    for i in target.sources:
        source = sources[i]
        if isinstance(source, ImageFilesSource):
            names += [p.name for p in source.listing()]
    return [os.path.join(target.path, n) for n in names]


def _check(targets: list[Target], sources: list[Source], overwrite: bool) -> None:
    inputs = [(s.display_name, *_identity(p), os.path.isdir(p)) for s in sources for p in s.input_paths]
    seen: dict[str, Target] = {}
    seen_inodes: dict[tuple[int, int], Target] = {}
    for target in targets:
        if target.path == "-":
            continue
        _check_folder(target)
        real, inode = _identity(target.path)
        for name, input_real, input_inode, is_dir in inputs:
            same = real == input_real or (inode is not None and inode == input_inode)
            inside = is_dir and real.startswith(input_real.rstrip(os.sep) + os.sep)
            if same or inside:
                where = "is" if same else "lies inside"
                raise OutputError(f"output '{target.path}' ({target.what}) {where} the input '{name}'; "
                                  "choose a path outside the inputs")
        other = seen.get(real) or (seen_inodes.get(inode) if inode else None)
        if other is not None:
            raise OutputError(f"output '{target.path}' is given twice: {other.what} and {target.what}; "
                              "give each its own path (with several sources, put {name} in it)")
        seen[real] = target
        if inode:
            seen_inodes[inode] = target
        if not overwrite and not target.continues:
            # Only files: writing into a pipe or a device (/dev/stdout, a FIFO to another program) loses nothing.
            for path in _written_files(target, sources):
                if os.path.isfile(path):
                    raise OutputError(f"output '{path}' ({target.what}) exists already; choose another path, "
                                      "or pass --overwrite to replace it")


def fresh_name(path: str) -> str:
    """`path` with -1, -2, ... before its extension: the first that is no file yet, nor its detections file."""
    stem, suffix = os.path.splitext(path)
    n = 1
    while any(os.path.lexists(p) for p in (f"{stem}-{n}{suffix}", str(sidecar_path(Path(f"{stem}-{n}{suffix}"))))):
        n += 1
    return f"{stem}-{n}{suffix}"


def _check_folder(target: Target) -> None:
    """The output's folder exists and is writable (for a folder of images: its parent, and it is a folder)."""
    path = Path(target.path)
    if target.kind in ("clips", "snapshots"):
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"events.{target.kind} '{path}' ({target.what}): not a writable folder; "
                              "create it first")
        return
    if target.kind == "images":
        if path.exists() and not path.is_dir():
            raise OutputError(f"output '{path}': exists and is not a folder; the annotated images need a folder")
        if path.is_dir():
            parent = path
        else:
            parent = path.parent if str(path.parent) else Path(".")
    else:
        if path.is_dir():
            raise OutputError(f"output '{path}': is a folder; give a file name")
        parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"output '{path}': folder '{parent}' does not exist; create it first")
    if not parent.is_dir():
        raise OutputError(f"output '{path}': '{parent}' is not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output '{path}': folder '{parent}' is not writable; choose another path")
