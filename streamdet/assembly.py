"""A run put together from the settings: sources, the model or server, the lanes, the stages after
inference and every output, each checked before anything slow starts. `streamdet.pipeline` runs it.

Order of work: the settings and output paths are checked, sources named, the web listener bound and
the sources opened (a busy port or a file that is no video is found in a second), zones checked
against the frame size, the MQTT broker reached, and only then the model loaded (or the server
checked). Then the lanes, the outputs (all from one planning step: files, MQTT, the window, the web
view) and the stages after inference, in the order they run (`_after_inference`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from .config.sections import Config, SourcePlan
from .detections import FrameResult
from .engines.backend import Backend, open_backend
from .engines.base import Engine
from .clips import ClipStage
from .errors import ConfigError, StreamdetError
from .events import EventStage, Scene, TrackStage
from .model.detector import Detector
from .model.labels import load_labels
from .model.readout import DetectFilter
from .motion import MotionGate, ReuseDetections
from .outputs import Output, WindowOutput, open_output, plan_targets, want_window
from .outputs.clips import ClipsOutput
from .outputs.copy import CopyRecording
from .outputs.segments import Retention
from .outputs.snapshots import SnapshotOutput
from .render import Annotator, OverlayStatus
from .reports import RunMeter
from .scheduler import Inbox, Lane, frames_ahead
from .sources import NetworkSource, Source, SourceInfo, open_all, open_source
from .sources.demux import COPY_VIDEO
from .sources.pair import CameraPair
from .stages import Annotate, Stage
from .stats import RunStatus
from .tracking import Tracker
from . import reports

log = logging.getLogger("streamdet")


# Given names never hold it (config.events.NAME_PATTERN), so a generated name made unique with it equals none of them.
GENERATED_MARK = "~"


def unique_names(given: list[str | None], generated: list[str]) -> list[str]:
    """Each source's name: the one it was given (unique, see Config.plans), else the one from its file or URL.

    A generated name that another source's name equals becomes NAME~1, NAME~2, ... in source order, so two
    sources never share a name (and with it an output file); no given name can become one of these later.
    """
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


class Assembly:
    """Everything a run is made of, built in order by the constructor (which closes what it opened if a
    step fails); `Pipeline` drives it and closes it."""

    def __init__(self, config: Config, detector: Detector | None = None, sources: list[Source] | None = None):
        self.config = config
        self.plans = self._plan(config, sources)
        self.sources = sources or [self._source(p) for p in self.plans]
        self._name_sources()
        self._tap_copied()
        self._targets = plan_targets(self.plans, self.sources, config.output.summary_json, config.output.overwrite)
        self.window = want_window(config.display.show)
        self._listener = None
        self.mqtt = None
        if config.mqtt.discovery and not config.mqtt.url:
            raise ConfigError("mqtt.discovery needs a broker: give --mqtt URL or mqtt.url")
        if config.mqtt.url:
            from .outputs.mqtt import MqttPublisher  # paho loads only when MQTT is on
            self.mqtt = MqttPublisher(config.mqtt)  # the URL is checked here, before anything opens
            if config.mqtt.discovery:
                from .outputs.hass import check_devices

                check_devices([s.name for s in self.sources])
        self.web_url: str | None = None  # where the web view serves, once it does
        # The labels, loaded once: the class filters are checked against them before anything opens.
        self.labels = detector.labels if detector is not None else load_labels(config.model.labels)
        self.tracking = [self._wants_tracking(p, config) for p in self.plans]
        self.filters = self._filters(self.labels)
        self.meter = RunMeter()
        self.lanes: list[Lane] = []
        self.backend: Backend | None = None
        self.outputs: list[Output] = []               # every output, for flushing and closing
        self.outputs_of: list[list[Output]] = []      # per source: where its frames go
        self.own_outputs: list[list[Output]] = []     # per source: written by it alone, closed when it ends
        self.stages: list[Stage] = []
        self.events: EventStage | None = None
        self.clips: ClipStage | None = None
        self.gate: MotionGate | None = None
        try:
            if config.web.listen:
                from .web import bind_listener  # aiohttp loads only when the web view is on

                self._listener = bind_listener(config.web)  # a busy port is found before any source opens
            infos = open_all(self.sources)
            # Zones and lines against the frame size: a point outside the picture is found before the model loads.
            self._scenes = [self._scene(p, info, src) for p, info, src in zip(self.plans, infos, self.sources)]
            if self.mqtt is not None:
                self.mqtt.start()  # an unreachable broker is found before the model loads
            # The local model (loaded and compiled here) or a server (checked here; nothing local is loaded).
            self.backend = open_backend(config.model, config.inference, self.labels, detector)
            self.detector = self.backend.detector
            log.info("inference: %s", self.backend.info.line())
            for plan, source, info in zip(self.plans, self.sources, infos):
                newest = plan.source.policy == "newest" or (plan.source.policy == "auto" and info.live)
                inbox = Inbox(capacity=frames_ahead(self.backend.nireq), newest_wins=newest)
                self.lanes.append(Lane(id=plan.index, source=source, info=info, inbox=inbox,
                                       filter=self.filters[plan.index], decode=self.meter.timers["decode"]))
                self.meter.add_source()
            self._open_outputs(infos)
        except BaseException:
            self.close_outputs()
            if self.backend is not None:
                self.backend.close()
            self.close_inputs()
            raise

    @staticmethod
    def _plan(config: Config, sources: list[Source] | None) -> list[SourcePlan]:
        if sources:
            return [SourcePlan(index=i, url=s.display_name or s.name, name=None, source=config.source,
                               detect=config.detect, track=config.track, events=config.events,
                               output=config.output, recording=config.recording)
                    for i, s in enumerate(sources)]
        plans = config.plans()
        if not plans:
            raise StreamdetError("no source given; pass --source FILE|URL|CAMERA or list sources: in the config")
        return plans

    @staticmethod
    def _source(plan: SourcePlan) -> Source:
        """The plan's source, not opened: with detect_url, the camera's two streams as one."""
        if plan.detect_url:
            return CameraPair(open_source(plan.url, plan.source), open_source(plan.detect_url, plan.source))
        return open_source(plan.url, plan.source)

    def _tap_copied(self) -> None:
        """A camera recorded by copy hands its packets to the recording from its first connection on."""
        for plan, source in zip(self.plans, self.sources):
            if plan.recording.mode == "copy" and plan.output.video:
                if not isinstance(source, (NetworkSource, CameraPair)):
                    raise ConfigError(f"{plan.context}: recording.mode copy records a network camera's own stream "
                                      "(rtsp:// or http(s)://); this source is decoded here: use recording.mode "
                                      "annotated")
                source.keep_packets()

    def _name_sources(self) -> None:
        names = unique_names([p.name for p in self.plans], [s.name for s in self.sources])
        for source, name in zip(self.sources, names):
            source.name = name

    def _filters(self, labels: tuple[str, ...]) -> list[DetectFilter]:
        """Each source's class filter; a class one source's entry names wrongly is reported with that entry."""
        DetectFilter.of(0.0, labels, self.config.detect.classes)  # the run-wide list (or --classes) on its own first
        keep = []
        for plan, tracking in zip(self.plans, self.tracking):
            # A tracker keeps an object's id through frames where its score dips: it needs boxes down to track.low.
            threshold = min(plan.detect.threshold, plan.track.low) if tracking else plan.detect.threshold
            try:
                keep.append(DetectFilter.of(threshold, labels, plan.detect.classes))
            except StreamdetError as exc:
                raise ConfigError(f"{plan.context}: detect.classes: {exc}") from None
        return keep

    @staticmethod
    def _scene(plan: SourcePlan, info: SourceInfo, source: Source) -> Scene:
        try:
            return Scene.of(plan.events, info.width, info.height, source.name)
        except ConfigError as exc:
            raise ConfigError(f"{plan.where}: {exc}" if plan.where else str(exc)) from None

    @staticmethod
    def _wants_tracking(plan: SourcePlan, config: Config) -> bool:
        """Tracking is on when asked for, and for whatever needs tracks: events, zones, lines, snapshots, MQTT."""
        ev = plan.events
        return bool(plan.track.enabled or plan.output.events or ev.zones or ev.lines or ev.snapshots or ev.clips
                    or config.mqtt.url)

    def _open_outputs(self, infos: list[SourceInfo]) -> None:
        """Every output from one plan: the files, MQTT, the window and the web view; then the stages after
        inference, which draw only when an output shows pictures."""
        self.outputs_of = [[] for _ in self.sources]
        self.own_outputs = [[] for _ in self.sources]
        for plan, source in zip(self.plans, self.sources):
            # First: the snapshot an event names is written (its clip begun) before any output publishes it.
            ev, keep = plan.events, Retention(plan.events.keep_days * 24, plan.events.keep_gb)
            if ev.snapshots:
                self._join(SnapshotOutput(ev.snapshots, source.name, keep), [plan.index], own=True)
            if ev.clips:
                self._join(ClipsOutput(ev.clips.replace("{name}", source.name), source.name, keep), [plan.index],
                           own=True)
        for target in self._targets:
            if not target.sources or target.kind == "sidecar":
                continue  # the run summary (written by the caller at the end); a copy recording's detections
            first = target.sources[0]
            if target.kind == "video" and self.plans[first].recording.mode == "copy":
                output = self._copy_recording(target, first, infos[first])
            else:
                output = open_output(target, infos[first], self.sources[first].name, self.plans[first].recording)
            self._join(output, target.sources, own=len(target.sources) == 1)
        if self.mqtt is not None:
            from .outputs.mqtt import MqttOutput

            served = [i for i, on in enumerate(self.tracking) if on]
            if self.config.mqtt.discovery:  # joined first: closed first, its "offline" before the publisher's
                self._join(self._hass(served), served)
            self._join(MqttOutput(self.mqtt), served)
        if self.window:
            self._join(WindowOutput(), range(len(self.sources)))
        self.stages = self._after_inference()
        if self._listener is not None:
            self._join(self._web_view(), range(len(self.sources)))

    def _copy_recording(self, target, index: int, info: SourceInfo) -> Output:
        """The camera's own stream recorded as it comes; a codec MP4 cannot hold is recorded annotated."""
        source, settings = self.sources[index], self.plans[index].recording
        if info.codec is not None and info.codec not in COPY_VIDEO:
            log.warning("%s: the camera sends %s, which MP4 cannot hold as it is; recording it annotated instead "
                        "of by copy", source.name, info.codec)
            return open_output(target, info, source.name, settings)
        return CopyRecording(target.path, source.keep_packets(), source.name, settings, self.status_for)

    def _hass(self, served: list[int]) -> Output:
        """Home Assistant discovery for the sources that publish events: each a device with its counts."""
        from .outputs.hass import Camera, HassOutput, default_classes

        cameras = {}
        for i in served:
            plan, ids = self.plans[i], self.filters[i].class_ids.tolist()
            classes = tuple(self.labels[k] for k in ids) if ids else default_classes(self.labels)
            cameras[i] = Camera(self.sources[i].name, classes, tuple(z.name for z in plan.events.zones),
                                tuple(line.name for line in plan.events.lines))
        return HassOutput.announce(self.mqtt, self.config.mqtt, cameras, {i: self.sources[i].health for i in served})

    def _join(self, output: Output, sources, own: bool = False) -> None:
        self.outputs.append(output)
        for i in sources:
            self.outputs_of[i].append(output)
            if own:
                self.own_outputs[i].append(output)

    def _after_inference(self) -> list[Stage]:
        """The stages between inference and the outputs, in the order they run."""
        stages: list[Stage] = []
        if any(p.detect.motion for p in self.plans):
            stages.append(ReuseDetections())  # first: a skipped frame gets its detections before anything reads them
        if any(self.tracking):
            track = TrackStage(
                [Tracker(p.track, p.detect.threshold, p.events.end_after) if on else None
                 for p, on in zip(self.plans, self.tracking)],
                [bool(p.events.snapshots) for p in self.plans])
            self.events = EventStage(track, [p.events for p in self.plans], self._scenes,
                                     [s.name for s in self.sources])
            stages += [track, self.events]
        draw = self.config.overlay.draw
        clips = any(p.events.clips for p in self.plans)  # a clip shows what the recording would
        if draw == "yes" or (draw == "auto" and (clips or any(o.shows_pictures for o in self.outputs))):
            stages.append(self._annotate())
        if clips:
            # After the drawing: a clip is the annotated video.
            self.clips = ClipStage([p.events for p in self.plans], [p.recording for p in self.plans],
                                   [s.name for s in self.sources], [lane.info.fps for lane in self.lanes],
                                   lambda: self.web_url, self._recordings_taking_packets())
            stages.append(self.clips)
        return stages

    def _recordings_taking_packets(self) -> list[bool]:
        """Per source: its recording is H.264 in MP4 (what the clip stage encodes), so it muxes the clip stage's
        packets instead of encoding each frame again."""
        taking = [False] * len(self.sources)
        for target in self._targets:
            if target.kind == "video" and len(target.sources) == 1:
                i = target.sources[0]
                taking[i] = (self.plans[i].recording.mode == "annotated" and self.plans[i].recording.codec == "h264"
                             and bool(self.plans[i].events.clips)
                             and Path(target.path).suffix.lower() in (".mp4", ".mov"))
        return taking

    def _annotate(self) -> Annotate:
        return Annotate(Annotator(self.config.overlay), self.status_for)

    def _web_view(self) -> Output:
        """The web view. When no stage draws, it draws the frames somebody looks at with the render stage's
        own drawing (zones, lines, counts, boxes, plate), on its own thread."""
        from .outputs.video import VideoOutput
        from .web import WebView

        draw = overlay_for = None
        if self.config.overlay.draw != "no" and not any(isinstance(s, Annotate) for s in self.stages):
            annotate = self._annotate()
            draw, overlay_for = annotate.paint, annotate.overlay
        # The review page lists each camera's segments from its recording's own record of what it wrote.
        recordings = {o.source_name: o.segments.ours for o in self.outputs
                      if isinstance(o, (VideoOutput, CopyRecording)) and o.segments is not None}
        view = WebView(self._listener, self.config.web, [s.name for s in self.sources], self.status, draw,
                       overlay_for, recordings)
        self._listener = None  # the web view owns it now
        self.web_url = view.server.url
        return view

    def make_engine(self, on_done) -> Engine:
        """Inference as the scheduler sees it: the model, behind the motion gate where a source asks for one."""
        engine = self.backend.engine(on_done)
        if any(p.detect.motion for p in self.plans):
            self.gate = engine = MotionGate(engine, on_done, [p.detect for p in self.plans])
        return engine

    def status_for(self, result: FrameResult) -> OverlayStatus | None:
        """The FPS/latency plate's text for a frame; none on single images, where a rate means nothing."""
        if self.lanes[result.source_id].info.still:
            return None
        return OverlayStatus(fps=self.meter.sources[result.source_id].rate.rate(), latency_ms=result.latency_ms)

    def status(self) -> RunStatus:
        """Every source's state and rates now; safe to call from any thread while the run goes on."""
        status = reports.status(self.lanes, self.meter)
        if self.mqtt is not None:
            status = dataclasses.replace(status, mqtt={"sent": self.mqtt.sent, "dropped": self.mqtt.dropped,
                                                       "connected": int(self.mqtt.connected),
                                                       "queued": self.mqtt.queued})
        return status if self.backend is None else dataclasses.replace(status, inference=self.backend.info)

    def close_outputs(self) -> list[BaseException]:
        """Finalise every output, each even if another fails; the errors, in order."""
        errors = []
        for output in self.outputs:
            try:
                output.close()
            except Exception as exc:
                errors.append(exc)
        return errors

    def close_inputs(self) -> None:
        for source in self.sources:
            source.close()
        if self._listener is not None:
            self._listener.close()  # the run failed before the web view started
        if self.mqtt is not None:
            self.mqtt.close()  # closed with its output already, unless the run failed before that was made
