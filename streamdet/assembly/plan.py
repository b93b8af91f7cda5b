"""A run's plan: everything about it that can be checked before anything opens.

In this order: each source's settings, the sources made (not opened) and named, the cameras recorded by
copy, every output path and folder (streamdet.outputs.plan; the snapshots' and clips' too), the window, the
model's file, MQTT's URL and Home Assistant's device names, the labels with each source's class filter.
Each check is cheap: a mistake is one line in a moment, before a port is bound, a camera dialled, a broker
reached or the model loaded (streamdet.assembly.assemble does those next).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.sections import Config, SourcePlan
from ..errors import ConfigError, OutputError, StreamdetError
from ..model.detector import Detector
from ..model.ir import check_model_spec
from ..model.labels import load_labels
from ..model.readout import DetectFilter
from ..outputs import plan_targets, want_window
from ..outputs.plan import Target, fresh_name
from ..outputs.sidecar import sidecar_path
from ..sources import NetworkSource, Source, open_source
from ..sources.pair import CameraPair
from ..urls import NOT_NAMES, usable_name

if TYPE_CHECKING:
    from ..outputs.mqtt import MqttPublisher

log = logging.getLogger("streamdet")

# Given names never hold it (config.names.NAME_PATTERN), so a generated name made unique with it equals none of them.
GENERATED_MARK = "~"


@dataclass(frozen=True)
class RunPlan:
    """A run checked and not yet opened: nothing here holds a socket, a thread or a file."""

    config: Config
    plans: tuple[SourcePlan, ...]
    sources: tuple[Source, ...]        # made and named, not opened
    targets: tuple[Target, ...]        # every output file or folder, checked against the inputs and each other
    window: bool                       # whether a window shows the frames
    mqtt: MqttPublisher | None         # made (its URL checked), not connected
    labels: tuple[str, ...]
    tracking: tuple[bool, ...]         # per source: whether it tracks
    filters: tuple[DetectFilter, ...]  # per source: its threshold and classes

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    @property
    def gated(self) -> bool:
        """Whether any source has the motion gate in front of the network."""
        return any(p.detect.motion for p in self.plans)

    @property
    def clips(self) -> bool:
        return any(p.events.clips for p in self.plans)


def plan_run(config: Config, detector: Detector | None = None, sources: list[Source] | None = None) -> RunPlan:
    """The run's plan from the settings (`sources`: ready-made sources in place of `config.sources`)."""
    plans = _source_plans(config, sources)
    sources = list(sources or [_source(p) for p in plans])
    for source, name in zip(sources, unique_names([p.name for p in plans], [s.name for s in sources])):
        source.name = name
    _tap_copied(plans, sources)
    _offer_live(sources, config)
    targets = plan_targets(plans, sources, config.output.summary_json, config.output.overwrite)
    window = want_window(config.display.show)
    _convert_seen_only(plans, sources, config, window)
    if detector is None and not config.inference.server:
        check_model_spec(config.model.name)  # a missing model file is found before any camera is dialled
    mqtt = _mqtt(config, sources, plans)
    # The labels, loaded once: the class filters are checked against them before anything opens.
    labels = detector.labels if detector is not None else load_labels(config.model.labels)
    tracking = [wants_tracking(p, config) for p in plans]
    return RunPlan(config=config, plans=tuple(plans), sources=tuple(sources), targets=tuple(targets), window=window,
                   mqtt=mqtt, labels=labels, tracking=tuple(tracking),
                   filters=_filters(config, plans, tracking, labels))


def unique_names(given: list[str | None], generated: list[str]) -> list[str]:
    """Each source's name: the one it was given (unique, see Config.plans), else the one from its file or URL.

    A generated name that another source's name equals becomes NAME~1, NAME~2, ... in source order, so two
    sources never share a name (and with it an output file); no given name can become one of these later.
    A generated name a path would take for a folder ('..' from a file called '...mp4') becomes 'source' first.
    """
    for s in {s for g, s in zip(given, generated) if not g and s in NOT_NAMES}:
        log.warning("a source's file or URL would name it %r, which a path takes for a folder: it is named "
                    "'source' instead (give it a name with sources[].name)", s)
    generated = [usable_name(s, "source") for s in generated]
    names = [g or s for g, s in zip(given, generated)]
    own = [s for g, s in zip(given, generated) if not g]
    clashing = {s for s in own if own.count(s) > 1 or s in given}
    taken = set(names) - clashing
    for i, (g, s) in enumerate(zip(given, generated)):
        if g or s not in clashing:
            continue
        k = 1
        while f"{s}{GENERATED_MARK}{k}" in taken:
            k += 1
        names[i] = f"{s}{GENERATED_MARK}{k}"
        taken.add(names[i])
    return names


def wants_tracking(plan: SourcePlan, config: Config) -> bool:
    """Tracking is on when asked for, and for whatever needs tracks: events, zones, lines, snapshots, MQTT, and
    the frames between those detect.fps infers (they carry the tracks' predictions)."""
    ev = plan.events
    return bool(plan.track.enabled or plan.output.events or ev.zones or ev.lines or ev.snapshots or ev.clips
                or config.mqtt.url or plan.detect.fps)


def _source_plans(config: Config, sources: list[Source] | None) -> list[SourcePlan]:
    if sources:
        config.check()  # the rules between sections, which config.plans() runs for sources from the settings
        return [SourcePlan(index=i, url=s.display_name or s.name, name=None, source=config.source,
                           detect=config.detect, track=config.track, events=config.events,
                           output=config.output, recording=config.recording)
                for i, s in enumerate(sources)]
    plans = config.plans()
    if not plans:
        raise StreamdetError("no source given; pass --source FILE|URL|CAMERA or list sources: in the config")
    return plans


def _source(plan: SourcePlan) -> Source:
    """The plan's source, not opened: with detect_url, the camera's two streams as one."""
    if plan.detect_url:
        return CameraPair(open_source(plan.url, plan.source), open_source(plan.detect_url, plan.source))
    return open_source(plan.url, plan.source)


def _tap_copied(plans: list[SourcePlan], sources: list[Source]) -> None:
    """A camera recorded by copy hands its packets to the recording from its first connection on."""
    for plan, source in zip(plans, sources):
        if plan.recording.mode == "copy" and plan.output.video:
            if not isinstance(source, (NetworkSource, CameraPair)):
                raise ConfigError(f"{plan.context}: recording.mode copy records a network camera's own stream "
                                  "(rtsp:// or http(s)://); this source is decoded here: use recording.mode "
                                  "annotated")
            source.keep_packets()


def _offer_live(sources: list[Source], config: Config) -> None:
    """The web view's live stream is the camera's own packets, wherever it can be (offered before it opens)."""
    if config.web.listen:
        for source in sources:
            if isinstance(source, (NetworkSource, CameraPair)):
                source.show_packets()


def _convert_seen_only(plans: list[SourcePlan], sources: list[Source], config: Config, window: bool) -> None:
    """Under detect.fps, a network camera whose frames between need no pixels (nothing draws or shows them:
    a copy recording, JSON lines, events) converts only the frames the network will see; the rest are
    decoded (H.264 needs them for the next ones) and handed on blank."""
    shown = window or bool(config.web.listen) or config.overlay.draw == "yes"
    for plan, source in zip(plans, sources):
        drawn = plan.events.clips or (plan.output.video and plan.recording.mode != "copy")
        camera = source.detect if isinstance(source, CameraPair) else source
        if plan.detect.fps and not shown and not drawn and isinstance(camera, NetworkSource):
            camera.convert_fps = plan.detect.fps


def _mqtt(config: Config, sources: list[Source], plans: list[SourcePlan]) -> MqttPublisher | None:
    """The MQTT publisher, its URL checked (and the sources' device and entity names, for Home Assistant); not
    connected."""
    if not config.mqtt.url:
        return None
    from ..outputs.mqtt import MqttPublisher  # paho loads only when MQTT is on

    mqtt = MqttPublisher(config.mqtt)
    if config.mqtt.discovery:
        from ..outputs.hass import Camera, check_devices, check_entities

        check_devices([s.name for s in sources])
        for source, plan in zip(sources, plans):
            check_entities(Camera(source.name, (), tuple(z.name for z in plan.events.zones),
                                  tuple(line.name for line in plan.events.lines)))
    return mqtt


def _filters(config: Config, plans: list[SourcePlan], tracking: list[bool],
             labels: tuple[str, ...]) -> tuple[DetectFilter, ...]:
    """Each source's class filter; a class one source's entry names wrongly is reported with that entry."""
    DetectFilter.of(0.0, labels, config.detect.classes)  # the run-wide list (or --classes) on its own first
    keep = []
    for plan, on in zip(plans, tracking):
        # A tracker keeps an object's id through frames where its score dips: it needs boxes down to track.low.
        threshold = min(plan.detect.threshold, plan.track.low) if on else plan.detect.threshold
        try:
            keep.append(DetectFilter.of(threshold, labels, plan.detect.classes))
        except StreamdetError as exc:
            raise ConfigError(f"{plan.context}: detect.classes: {exc}") from None
    return tuple(keep)


def plan_added(config: Config, plan: SourcePlan, taken: set[str], shared: set[str], labels: tuple[str, ...],
               detector: Detector | None, ours: frozenset[str] = frozenset(),
               others: dict[str, str] | None = None) -> tuple[RunPlan, tuple[str, ...]]:
    """A camera added to a run that goes (a reload): a plan of its own (its source at index 0), checked as a
    run's is, and the shared outputs it joins (the paths of its `output.json` / `output.events` that the run
    writes already, from `shared`). `taken`: the names of the cameras that go on. `ours`: the files (resolved
    paths) the run wrote for this camera before (a changed camera, or one removed and added again): its own
    detections and events files go on in them, its recording without `{start}` starts a new file beside
    (`fresh_name`). `others`: the files the run wrote for other cameras (resolved path -> camera), which no
    new output may be, `--overwrite` or not. Nothing opens."""
    plan = dataclasses.replace(plan, index=0)
    tracking = wants_tracking(plan, config)  # before the shared paths are taken out: events files need tracks
    source = _source(plan)
    source.name = unique_names([plan.name], [source.name])[0]
    if source.name in taken:
        raise ConfigError(f"{plan.context}: a camera named '{source.name}' runs already; give this one a name "
                          "(sources[].name)")
    joins = tuple(p.replace("{name}", source.name) for p in (plan.output.json, plan.output.events) if p)
    joins = tuple(p for p in joins if p in shared)
    own = dataclasses.replace(plan.output, **{key: None for key in ("json", "events")
                                              if getattr(plan.output, key)
                                              and getattr(plan.output, key).replace("{name}", source.name) in shared})
    plan = dataclasses.replace(plan, output=own)
    _tap_copied([plan], [source])
    _offer_live([source], config)
    # Whether the run has a window is not asked again (that would look for a display): where it may, it shows.
    _convert_seen_only([plan], [source], config, window=config.display.show != "no")
    made = _new_recording(plan, source.name, ours)
    _check_not_others(made, source.name, others or {})
    targets = plan_targets([made], [source], None, config.output.overwrite, ours)
    if detector is None and not config.inference.server:
        check_model_spec(config.model.name)
    if config.mqtt.url and config.mqtt.discovery:
        from ..outputs.hass import Camera, check_devices, check_entities

        check_devices(sorted(taken | {source.name}))
        check_entities(Camera(source.name, (), tuple(z.name for z in plan.events.zones),
                              tuple(line.name for line in plan.events.lines)))
    filters = _filters(config, [plan], [tracking], labels)
    return RunPlan(config=config, plans=(plan,), sources=(source,), targets=tuple(targets), window=False, mqtt=None,
                   labels=labels, tracking=(tracking,), filters=filters), joins


def _new_recording(plan: SourcePlan, name: str, ours: frozenset[str]) -> SourcePlan:
    """The plan its outputs are made from: a recording of one file that the run wrote for this camera before goes on
    in a new file beside it (-1, -2, ...), as a copy recording does when its camera comes back changed; the plan the
    run compares with later settings keeps the path as given."""
    video = plan.output.video
    if not video or "{start}" in video or os.path.realpath(video.replace("{name}", name)) not in ours:
        return plan
    renamed = fresh_name(video.replace("{name}", name))
    log.info("%s: its recording goes on in %s (%s is this run's, from before the change)", name, renamed,
             video.replace("{name}", name))
    return dataclasses.replace(plan, output=dataclasses.replace(plan.output, video=renamed))


def _check_not_others(plan: SourcePlan, name: str, others: dict[str, str]) -> None:
    """No file of a camera added may be one the run writes, or wrote, for another camera (`--overwrite` or not)."""
    out = plan.output
    paths = [p.replace("{name}", name) for p in (out.video, out.json, out.events) if p and "{start}" not in p]
    if out.video and "{start}" not in out.video and plan.recording.mode == "copy":
        paths.append(str(sidecar_path(Path(paths[0]))))
    for path in paths:
        camera = others.get(os.path.realpath(path))
        if camera is not None:
            raise OutputError(f"output '{path}' is written by this run for the camera '{camera}'; give each camera "
                              "its own path (with {name} in it)")
