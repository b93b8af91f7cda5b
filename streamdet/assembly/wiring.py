"""A run's lanes, outputs and stages, wired from its plan and what was opened for it.

In this order: the lanes (streamdet.scheduler sizes their inboxes), the outputs from the plan's targets,
MQTT and the window; who draws (`who_draws`, decided once from the settings and the outputs); the stages
after inference, whose order is written once (`stages_after_inference`); the web view last.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..clips import ClipStage
from ..engines.backend import Backend
from ..events import EventStage, TrackStage
from ..scene import Scene
from ..motion import ReuseDetections
from ..outputs import Output, Target, WindowOutput, open_output
from ..outputs.clips import ClipsOutput
from ..outputs.copy import CopyRecording
from ..outputs.segments import Retention
from ..outputs.snapshots import SnapshotOutput
from .plan import RunPlan
from ..drawing import Annotator
from ..measures.meters import RunMeter
from ..scheduler import Lane, lanes_for
from ..sources import SourceInfo
from ..sources.demux import COPY_VIDEO
from ..sources.pair import CameraPair
from ..stages import Annotate, Stage
from ..measures.figures import InferenceInfo, RunStatus
from ..tracking import Tracker
from .. import reports

if TYPE_CHECKING:
    from ..outputs.hass import Camera
    from ..outputs.mqtt import MqttPublisher
    from .changes import Reload

log = logging.getLogger("streamdet")


class Drawing(enum.Enum):
    """Who draws the boxes, zones and plate onto a run's frames."""

    STAGE = "stage"        # the draw stage, on every frame: outputs that show pictures (and clips) get them drawn
    WEB_VIEW = "web view"  # the web view alone, on its own thread, only the frames somebody looks at
    NOBODY = "nobody"


def who_draws(draw: str, clips: bool, shows_pictures: bool, web_view: bool) -> Drawing:
    """`draw`: `overlay.draw` (yes, no, auto); `clips`: a source makes event clips (a clip shows what the
    recording would); `shows_pictures`: an output other than the web view shows the frames; `web_view`: it is on."""
    if draw == "yes" or (draw == "auto" and (clips or shows_pictures)):
        return Drawing.STAGE
    if draw != "no" and web_view:
        return Drawing.WEB_VIEW
    return Drawing.NOBODY


@dataclass(frozen=True)
class Wired:
    """A run's parts after inference, as `wire` made them."""

    lanes: list[Lane]                            # grows when a reload adds a camera (assembly/running.py)
    outputs: tuple[Output, ...]                  # every output, for flushing and closing, in the order they close
    outputs_of: tuple[tuple[Output, ...], ...]   # per source: where its frames go
    own_outputs: tuple[tuple[Output, ...], ...]  # per source: written by it alone, closed when it ends
    stages: tuple[Stage, ...]
    events: EventStage | None
    clips: ClipStage | None


class _Joined:
    """Outputs as they are made, each joined to the sources that write to it."""

    def __init__(self, count: int):
        self.all: list[Output] = []
        self.of: list[list[Output]] = [[] for _ in range(count)]
        self.own: list[list[Output]] = [[] for _ in range(count)]

    def join(self, output: Output, sources: Iterable[int], own: bool = False) -> None:
        self.all.append(output)
        for i in sources:
            self.of[i].append(output)
            if own:
                self.own[i].append(output)


def wire(plan: RunPlan, *, infos: Sequence[SourceInfo], scenes: Sequence[Scene], backend: Backend,
         listener: socket.socket | None, link_url: str | None, meter: RunMeter,
         tls: ssl.SSLContext | None = None, reload: Callable[[], Reload] | None = None,
         config_file: Path | None = None) -> Wired:
    """The lanes, outputs and stages; every output made is closed again if a later step fails.
    `listener`: the web view's bound socket (it owns it once made), served over HTTPS with `tls`;
    `link_url`: the base of events' links to it; `reload`: reads the settings again and applies them (the web
    view's POST /api/reload and camera API), if the run can; `config_file`: the file the camera API writes."""
    lanes = list(lanes_for(plan.sources, infos, [p.source.policy for p in plan.plans], plan.filters, backend.nireq,
                      meter.timers["decode"], [p.detect.fps for p in plan.plans]))
    for _ in lanes:
        meter.add_source()
    joined = _Joined(len(plan.sources))
    clips = None
    try:
        _open_outputs(plan, infos, joined)
        drawing = who_draws(plan.config.overlay.draw, plan.clips, any(o.shows_pictures for o in joined.all),
                            listener is not None)
        track = _track(plan, scenes, infos)
        events = track[1] if track else None
        clips = _clip_stage(plan, infos, link_url)
        stages = stages_after_inference(plan, track, drawing, clips)
        if listener is not None:
            status = functools.partial(run_status, lanes, meter, plan.mqtt, backend.info)
            joined.join(_web_view(plan, infos, listener, drawing, joined.all, status, tls, reload, config_file),
                        range(len(plan.sources)))
    except BaseException:
        close_outputs(joined.all)
        raise
    return Wired(lanes=lanes, outputs=tuple(joined.all), outputs_of=tuple(map(tuple, joined.of)),
                 own_outputs=tuple(map(tuple, joined.own)), stages=stages, events=events, clips=clips)


# The stages between inference and the outputs, in the order they run: the reuse of the last detections first
# (a frame the motion gate skipped gets them before anything reads them), tracking and events, the drawing, and
# the clips after it (a clip is the annotated video). A stage a reload adds to a run goes in its place here too.
STAGE_ORDER = (ReuseDetections, TrackStage, EventStage, Annotate, ClipStage)


def in_order(stages: Iterable[Stage]) -> list[Stage]:
    """`stages` in STAGE_ORDER."""
    return sorted(stages, key=lambda s: next(k for k, kind in enumerate(STAGE_ORDER) if isinstance(s, kind)))


def stages_after_inference(plan: RunPlan, track: tuple[TrackStage, EventStage] | None, drawing: Drawing,
                           clips: ClipStage | None) -> tuple[Stage, ...]:
    """The stages between inference and the outputs that this run needs, in the order they run (STAGE_ORDER)."""
    stages: list[Stage] = list(track or ())
    if plan.gated:
        stages.append(ReuseDetections())
    if drawing is Drawing.STAGE:
        stages.append(Annotate(Annotator(plan.config.overlay)))
    if clips is not None:
        stages.append(clips)
    return tuple(in_order(stages))


def _track(plan: RunPlan, scenes: Sequence[Scene], infos: Sequence[SourceInfo]) -> tuple[TrackStage, EventStage] | None:
    """The tracking and events stages, where a source tracks."""
    return track_stages(plan, scenes, infos) if any(plan.tracking) else None


def track_stages(plan: RunPlan, scenes: Sequence[Scene], infos: Sequence[SourceInfo]) -> tuple[TrackStage, EventStage]:
    """The tracking and events stages for every source of the plan (a tracker where it tracks, its camera's frame
    interval its unit of time)."""
    trackers = [Tracker(p.track, p.detect.threshold, p.events.end_after, 1 / (info.fps or 25.0)) if on else None
                for p, on, info in zip(plan.plans, plan.tracking, infos)]
    track = TrackStage(trackers, [bool(p.events.snapshots) for p in plan.plans])
    return track, EventStage(track, [p.events for p in plan.plans], list(scenes), plan.names)


def _clip_stage(plan: RunPlan, infos: Sequence[SourceInfo], link_url: str | None) -> ClipStage | None:
    """Event clips, where a source makes them. A source whose recording is H.264 in MP4 (what the clips
    encode) muxes the clip stage's packets instead of encoding each frame again."""
    return clip_stage(plan, infos, link_url) if plan.clips else None


def clip_stage(plan: RunPlan, infos: Sequence[SourceInfo], link_url: str | None) -> ClipStage:
    """The clip stage for every source of the plan (a camera where it makes clips)."""
    taking = [False] * len(plan.sources)
    for target in plan.targets:
        if target.kind == "video" and len(target.sources) == 1:
            i = target.sources[0]
            recording = plan.plans[i].recording
            taking[i] = (recording.mode == "annotated" and recording.codec == "h264"
                         and bool(plan.plans[i].events.clips) and Path(target.path).suffix.lower() in (".mp4", ".mov"))
    return ClipStage([p.events for p in plan.plans], [p.recording for p in plan.plans], plan.names,
                     [info.fps for info in infos], link_url, taking)


def _open_outputs(plan: RunPlan, infos: Sequence[SourceInfo], joined: _Joined) -> None:
    """The files, MQTT and the window: every output but the web view."""
    for plan_of, source in zip(plan.plans, plan.sources):
        # First: the snapshot an event names is written (its clip begun) before any output publishes it.
        ev, keep = plan_of.events, Retention(plan_of.events.keep_days * 24, plan_of.events.keep_gb)
        if ev.snapshots:
            joined.join(SnapshotOutput(ev.snapshots.replace("{name}", source.name), source.name, keep),
                        [plan_of.index], own=True)
        if ev.clips:
            joined.join(ClipsOutput(ev.clips.replace("{name}", source.name), source.name, keep), [plan_of.index],
                        own=True)
    for target in plan.targets:
        if not target.sources or target.kind == "sidecar":
            continue  # the run summary (written by the caller at the end); a copy recording's detections
        first = target.sources[0]
        if target.kind == "video" and plan.plans[first].recording.mode == "copy":
            output = _copy_recording(plan, target, first, infos[first])
        else:
            output = open_output(target, infos[first], plan.sources[first].name, plan.plans[first].recording)
        joined.join(output, target.sources, own=len(target.sources) == 1)
    if plan.mqtt is not None:
        from ..outputs.mqtt import MqttOutput

        served = [i for i, on in enumerate(plan.tracking) if on]
        if plan.config.mqtt.discovery:  # joined first: closed first, its "offline" before the publisher's
            joined.join(_hass(plan, served), served)
        joined.join(MqttOutput(plan.mqtt), served)
    if plan.window:
        joined.join(WindowOutput(), range(len(plan.sources)))


def _copy_recording(plan: RunPlan, target: Target, index: int, info: SourceInfo) -> Output:
    """The camera's own stream recorded as it comes; a codec MP4 cannot hold is recorded annotated."""
    source, settings = plan.sources[index], plan.plans[index].recording
    if info.codec is not None and info.codec not in COPY_VIDEO:
        log.warning("%s: the camera sends %s, which MP4 cannot hold as it is; recording it annotated instead "
                    "of by copy", source.name, info.codec)
        camera = source.detect if isinstance(source, CameraPair) else source
        camera.convert_fps = 0.0  # every frame is drawn and encoded now (assembly.plan left those between blank)
        return open_output(target, info, source.name, settings)
    return CopyRecording(target.path, source.keep_packets(), source.name, settings)


def _hass(plan: RunPlan, served: list[int]) -> Output:
    """Home Assistant discovery for the sources that publish events: each a device with its counts."""
    from ..outputs.hass import HassOutput

    cameras = {i: hass_camera(plan, i) for i in served}
    return HassOutput.announce(plan.mqtt, plan.config.mqtt, cameras, {i: plan.sources[i].health for i in served})


def hass_camera(plan: RunPlan, index: int) -> Camera:
    """The plan's source at `index` as Home Assistant shows it: a device with its classes, zones and lines."""
    from ..outputs.hass import Camera, default_classes

    events, ids = plan.plans[index].events, plan.filters[index].class_ids.tolist()
    classes = tuple(plan.labels[k] for k in ids) if ids else default_classes(plan.labels)
    return Camera(plan.sources[index].name, classes, tuple(z.name for z in events.zones),
                  tuple(line.name for line in events.lines))


def _web_view(plan: RunPlan, infos: Sequence[SourceInfo], listener: socket.socket, drawing: Drawing,
              outputs: list[Output], status: Callable[[], RunStatus], tls: ssl.SSLContext | None,
              reload: Callable[[], Reload] | None, config_file: Path | None) -> Output:
    """The web view; it draws the frames somebody looks at with the draw stage's own drawing when no
    stage draws them. Its live streams are the cameras' own H.264 packets where the run reads them through
    PyAV (plan_run offered them), else the frames encoded while watched."""
    from ..web import WebView

    draw = Annotate(Annotator(plan.config.overlay)).paint if drawing is Drawing.WEB_VIEW else None
    recordings, clips, writers = served_files(outputs)
    return WebView(listener, plan.config.web, plan.names, status, draw, recordings, clips,
                   lambda path: any(o.holds(path) for o in writers), tls, config_file, reload,
                   live_taps(plan.sources, infos), [info.fps for info in infos], drawing is Drawing.STAGE)


def live_taps(sources: Sequence, infos: Sequence[SourceInfo]) -> dict:
    """Per source (by its place among `sources`), the camera's own H.264 packets for its live stream, where the run
    reads it through PyAV; the others' frames are encoded while watched."""
    return {i: source.show_packets() for i, source in enumerate(sources)
            if hasattr(source, "show_packets") and infos[i].codec in (None, "h264")}


def served_files(outputs: Iterable[Output]) -> tuple[dict, dict, list]:
    """What the web view serves of these outputs: per source name, its recording's segments now and its clips'
    count; the outputs whose snapshots and clips it serves (while each is still the very file written; the list
    grows with a camera added by a reload)."""
    from ..outputs.video import VideoOutput

    # The review page lists each camera's segments from its recording's own record of what it wrote.
    recordings = {o.source_name: o.segments.ours for o in outputs
                  if isinstance(o, (VideoOutput, CopyRecording)) and o.segments is not None}
    # /metrics counts clips as the summary does, from the clips outputs' own figures.
    clips = {o.source_name: functools.partial(getattr, o, "made") for o in outputs if isinstance(o, ClipsOutput)}
    writers = [o for o in outputs if isinstance(o, (ClipsOutput, SnapshotOutput))]
    return recordings, clips, writers


def run_status(lanes: Sequence[Lane], meter: RunMeter, mqtt: MqttPublisher | None,
               inference: InferenceInfo) -> RunStatus:
    """Every source's state and rates now, with MQTT's figures; safe to call from any thread while the run goes on."""
    status = reports.status(lanes, meter)
    if mqtt is not None:
        status = dataclasses.replace(status, mqtt={"sent": mqtt.sent, "dropped": mqtt.dropped,
                                                   "connected": int(mqtt.connected), "queued": mqtt.queued})
    return dataclasses.replace(status, inference=inference)


def close_outputs(outputs: Iterable[Output]) -> list[BaseException]:
    """Finalise every output, each even if another fails; the errors, in order."""
    errors = []
    for output in outputs:
        try:
            output.close()
        except Exception as exc:
            errors.append(exc)
    return errors
