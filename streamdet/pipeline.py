"""A run: sources, the model, the stages after inference and the outputs, put together from the config.

A frame's way through a run, in order:

    source -> motion gate -> inference -> stages (`_after_inference`: reuse, track, events, render) -> outputs

The scheduler (streamdet.scheduler) moves frames from the sources through
inference with its own threads and hands them back in order; everything after
inference runs here, on the caller's thread, because windows must live on
one thread and signal handlers run on the main thread. What runs in front
of the network wraps the engine (`_make_engine`). A new capability is a
stage in `_after_inference`, an engine wrapper or an `Output`; the scheduler
does not change.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator

from .config.sections import Config, SourcePlan
from .model.readout import DetectFilter
from .detections import FrameResult
from .engines.backend import Backend, open_backend
from .errors import ConfigError, StreamdetError
from .engines.local import Completed
from .model.labels import load_labels
from .motion import MotionGate, ReuseDetections
from .model.detector import Detector
from .outputs import Output, WindowOutput, open_output, plan_targets, want_window
from .render import Annotator, OverlayStatus
from .scheduler import Inbox, Lane, Scheduler
from .sources import Source, SourceInfo, open_all, open_source
from .events import EventStage, Scene, TrackStage
from .stages import Annotate, Stage
from .tracking import Tracker
from . import reports
from .stats import InferenceInfo, RunStatus, RunSummary

log = logging.getLogger("streamdet")

_IDLE_S = 0.5  # how long the output loop waits for a frame before flushing outputs and checking status


# Given names never hold it (config_events.NAME_PATTERN), so a generated name made unique with it equals none of them.
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


class Pipeline:
    """Runs detection over one or more sources.

    >>> with Pipeline(config) as pipeline:
    ...     for result in pipeline.results():
    ...         print(result.frame.index, result.detections.labels)

    Everything cheap is checked here, before the model is loaded: the
    settings, that every source exists, that every output can be written and
    clashes with no input and no other output; then the sources are opened
    and the model loaded. Close it (`with`, or `close()`) even if it never runs.
    """

    def __init__(self, config: Config, detector: Detector | None = None, *,
                 sources: list[Source] | None = None, progress: bool = False):
        """`sources` replaces `config.sources` with ready-made Source objects (custom inputs)."""
        self.config = config
        self._plans = self._plan(config, sources)
        self._sources = sources or [open_source(p.url, p.source) for p in self._plans]
        self._name_sources()
        self._targets = plan_targets(self._plans, self._sources, config.output.summary_json, config.output.overwrite)
        self._window = want_window(config.display.show)
        self._listener = None
        self._mqtt = None
        if config.mqtt.url:
            from .outputs.mqtt import MqttPublisher  # paho loads only when MQTT is on
            self._mqtt = MqttPublisher(config.mqtt)  # the URL is checked here, before anything opens
        self.web_url: str | None = None  # where the web view serves, once it does
        labels = detector.labels if detector is not None else load_labels(config.model.labels)
        self._tracking = [self._wants_tracking(p, config) for p in self._plans]
        self._keep = self._filters(labels)
        self._progress = progress
        self._scheduler: Scheduler | None = None
        self._backend: Backend | None = None
        self.lanes: list[Lane] = []
        self.meter = reports.RunMeter()
        self._outputs: list[Output] = []               # every output, for flushing and closing
        self._outputs_of: list[list[Output]] = []      # per source: where its frames go
        self._own_outputs: list[list[Output]] = []     # per source: written by it alone, closed when it ends
        self._stages: list[Stage] = []
        self._gate: MotionGate | None = None
        self._events: EventStage | None = None
        self._last: dict[int, FrameResult] = {}   # per source: its newest frame, for the events of its end
        self._ended: set[int] = set()             # sources whose tracks were ended
        self._closed = False
        self._stopped_by = "end of stream"
        # Sources open before the model loads: a file that is no video, or a
        # pipe with no writer, is found in a second, not after a download.
        try:
            if config.web.listen:
                from .web import bind_listener  # aiohttp loads only when the web view is on

                self._listener = bind_listener(config.web)  # a busy port is found before any source opens
            infos = open_all(self._sources)
            # Zones and lines against the frame size: a point outside the picture is found before the model loads.
            self._scenes = [self._scene(p, info, src) for p, info, src in zip(self._plans, infos, self._sources)]
            if self._mqtt is not None:
                self._mqtt.start()  # an unreachable broker is found before the model loads
            # The local model (loaded and compiled here) or a server (checked here; nothing local is loaded).
            self._backend = open_backend(config.model, config.inference, config.detect, detector)
            self.detector = self._backend.detector
            self.nireq = self._backend.nireq
            log.info("inference: %s", self._backend.info.line())
            for plan, source, info in zip(self._plans, self._sources, infos):
                newest = plan.source.policy == "newest" or (plan.source.policy == "auto" and info.live)
                inbox = Inbox(capacity=min(max(2, self.nireq * 2), 16), newest_wins=newest)
                self.lanes.append(Lane(id=plan.index, source=source, info=info, inbox=inbox,
                                       keep=self._keep[plan.index], decode=self.meter.timers["decode"]))
                self.meter.add_source()
            self._make_outputs(infos)
            self._stages = self._after_inference()
            self._serve()
        except BaseException:
            self._close_all()
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

    def _name_sources(self) -> None:
        names = unique_names([p.name for p in self._plans], [s.name for s in self._sources])
        for source, name in zip(self._sources, names):
            source.name = name

    def _filters(self, labels: tuple[str, ...]) -> list[DetectFilter]:
        """Each source's class filter; a class one source's entry names wrongly is reported with that entry."""
        DetectFilter.of(0.0, labels, self.config.detect.classes)  # the run-wide list (or --classes) on its own first
        keep = []
        for plan, tracking in zip(self._plans, self._tracking):
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
        return bool(plan.track.enabled or plan.output.events or ev.zones or ev.lines or ev.snapshots
                    or config.mqtt.url)

    def _make_outputs(self, infos: list[SourceInfo]) -> None:
        self._outputs_of = [[] for _ in self._sources]
        self._own_outputs = [[] for _ in self._sources]
        for target in self._targets:
            if not target.sources:
                continue  # the run summary: written by the caller at the end
            first = target.sources[0]
            output = open_output(target, infos[first], self._sources[first].name, self._plans[first].recording)
            self._outputs.append(output)
            for i in target.sources:
                self._outputs_of[i].append(output)
            if len(target.sources) == 1:
                self._own_outputs[first].append(output)
        if self._mqtt is not None:
            from .outputs.mqtt import MqttOutput

            mqtt = MqttOutput(self._mqtt)
            self._outputs.append(mqtt)
            for i, outs in enumerate(self._outputs_of):
                if self._tracking[i]:
                    outs.append(mqtt)
        if self._window:
            window = WindowOutput()
            self._outputs.append(window)
            for outs in self._outputs_of:
                outs.append(window)

    def _make_engine(self, on_done: Callable[[Completed], None]):
        """Inference as the scheduler sees it: the model, behind the motion gate where a source asks for one."""
        engine = self._backend.engine(on_done)
        if any(p.detect.motion for p in self._plans):
            self._gate = engine = MotionGate(engine, on_done, [p.detect for p in self._plans])
        return engine

    def _after_inference(self) -> list[Stage]:
        """The stages between inference and the outputs, in the order they run."""
        stages: list[Stage] = []
        if any(p.detect.motion for p in self._plans):
            stages.append(ReuseDetections())  # first: a skipped frame gets its detections before anything reads them
        if any(self._tracking):
            track = TrackStage(
                [Tracker(p.track, p.detect.threshold, p.events.end_after) if on else None
                 for p, on in zip(self._plans, self._tracking)],
                [bool(p.events.snapshots) for p in self._plans])
            self._events = EventStage(track, [p.events for p in self._plans], self._scenes,
                                      [s.name for s in self._sources])
            stages += [track, self._events]
        draw = self.config.overlay.draw
        if draw == "no" or (draw == "auto" and not any(o.shows_pictures for o in self._outputs)):
            return stages
        return stages + [Annotate(Annotator(self.config.overlay), self._status_for, self._events)]

    def _serve(self) -> None:
        """The web view, last. When no stage drew already, it draws the frames somebody looks at with the
        render stage's own drawing (zones, lines, counts, boxes, plate), on its own thread."""
        if self._listener is None:
            return
        from .web import WebView

        draw = overlay_for = None
        if self.config.overlay.draw != "no" and not any(isinstance(s, Annotate) for s in self._stages):
            annotate = Annotate(Annotator(self.config.overlay), self._status_for, self._events)
            draw, overlay_for = annotate.paint, annotate.overlay

        view = WebView(self._listener, self.config.web, [s.name for s in self._sources], self.status, draw,
                       overlay_for)
        self._listener = None  # the web view owns it now
        self.web_url = view.server.url
        self._outputs.append(view)
        for outs in self._outputs_of:
            outs.append(view)

    def _status_for(self, result: FrameResult) -> OverlayStatus | None:
        """The FPS/latency plate's text for a frame; none on single images, where a rate means nothing."""
        if self.lanes[result.source_id].info.still:
            return None
        return OverlayStatus(fps=self.meter.sources[result.source_id].rate.rate(), latency_ms=result.latency_ms)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop(self, reason: str = "stopped") -> None:
        """Stop reading; frames already read are still processed and written."""
        self._stopped_by = reason
        if self._scheduler is not None:
            self._scheduler.stop()
        else:
            for source in self._sources:
                source.stop()

    @property
    def aborted(self) -> bool:
        return self._scheduler is not None and self._scheduler.aborted

    def abort(self, reason: str = "aborted") -> None:
        """Stop now: in-flight frames are not written, but every output is finalised."""
        self.stop(reason)
        if self._scheduler is not None:
            self._scheduler.abort()

    def results(self, on_result: Callable[[FrameResult], None] | None = None) -> Iterator[FrameResult]:
        """Run the pipeline, yielding every processed frame in order (per source)."""
        self._scheduler = scheduler = Scheduler(self.lanes, self._make_engine, self.nireq)
        self.meter.start()
        scheduler.start()
        bar = reports.progress_bar(self.lanes) if self._progress and not self._window else None
        live = any(lane.info.live for lane in self.lanes)  # status lines are for cameras; files have the bar
        every = self.config.logging.status_interval if live and not self.config.logging.quiet else 0
        next_status = time.monotonic() + every if every else float("inf")
        try:
            while True:
                completed = scheduler.take(min(_IDLE_S, max(0.0, next_status - time.monotonic())))
                if time.monotonic() >= next_status:
                    reports.log_status(self.lanes, self.meter)
                    next_status = time.monotonic() + every
                if completed is None:
                    if scheduler.finished:
                        for lane in self.lanes:  # stopped (a signal, the window): tracks still open end now
                            if lane.id not in self._ended:
                                self._end_source(lane.id)
                        break
                    for output in self._outputs:  # idle: a camera is away or slow; let buffered lines out
                        output.flush()
                    continue
                result = self._finish(completed)
                scheduler.release()
                if bar is not None:
                    bar.update(1)
                if on_result is not None:
                    on_result(result)
                yield result
                if self._window and any(isinstance(o, WindowOutput) and o.closed for o in self._outputs):
                    self.stop("window closed")
        except BaseException:
            # An error, or the caller leaving the loop early (GeneratorExit):
            # nobody will take results any more, so waiting threads must not wait.
            self.abort(self._stopped_by if self._stopped_by != "end of stream" else "stopped early")
            raise
        finally:
            if bar is not None:
                bar.close()
            self._close_all()

    def _finish(self, completed: Completed) -> FrameResult:
        job = completed.job
        lane, counters = self.lanes[job.source_id], self.meter.sources[job.source_id]
        now = time.monotonic()
        latency_ms = (completed.done - job.frame.captured) * 1000
        if completed.inferred:
            self.meter.timers["inference"].add(completed.infer_ms)
            counters.frames_inferred += 1
        counters.done(now, latency_ms)
        result = FrameResult(source=lane.source.name, frame=job.frame, detections=completed.detections,
                             latency_ms=latency_ms, source_id=lane.id, inferred=completed.inferred)
        for stage in self._stages:
            result = self.meter.timed(stage.name, stage, result)
        self.meter.timed("write", self._write, result)
        counters.age.add((time.monotonic() - job.frame.captured) * 1000)
        if self._events is not None:
            self._last[lane.id] = result
        # The unlocked look at `finished` keeps the lock off the per-frame path until a source has ended.
        if lane.inbox.finished and lane.id not in self._ended and self._scheduler.source_done(lane):
            self._end_source(lane.id)
        return result

    def _end_source(self, source_id: int) -> None:
        """A source ended (or the run stops): its tracks end, and its own outputs are complete now."""
        self._ended.add(source_id)
        if self._events is not None and source_id in self._last:
            last = self._last.pop(source_id)
            events = self._events.finish(source_id, last)
            if events:
                ended = dataclasses.replace(last, events=tuple(events))
                for output in self._outputs_of[source_id]:
                    if output.takes_events:
                        output.write(ended)
        own = self._own_outputs[source_id]
        while own:
            own.pop().close()

    def _write(self, result: FrameResult) -> FrameResult:
        for output in self._outputs_of[result.source_id]:
            output.write(result)
        return result

    def run(self, on_result: Callable[[FrameResult], None] | None = None) -> RunSummary:
        for _ in self.results(on_result):
            pass
        return self.summary()

    def _close_all(self) -> None:
        """Finalise every output and end every thread; the first output that could not be finalised is raised."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        if self._scheduler is not None:
            self._scheduler.stop()
        for output in self._outputs:
            try:
                output.close()
            except Exception as exc:  # finalise every output even if one fails
                errors.append(exc)
        if self._backend is not None:
            self._backend.close()  # an engine waiting for a server that is away lets the feeder go
        if self._scheduler is not None:
            stuck = self._scheduler.close()
            if stuck:
                log.warning("threads still blocked after stopping: %s", ", ".join(stuck))
        for source in self._sources:
            source.close()
        if self._listener is not None:
            self._listener.close()  # the run failed before the web view started
        if self._mqtt is not None:
            self._mqtt.close()  # closed with its output already, unless the run failed before that was made
        self.meter.stop()
        if errors and not self._failed_already():
            raise errors[0]

    def _failed_already(self) -> bool:
        """A thread's error is being raised: it is the cause, the outputs' trouble is its consequence."""
        return self._scheduler is not None and self._scheduler.failure.error is not None

    def close(self) -> None:
        self.abort(self._stopped_by)
        self._close_all()

    def status(self) -> RunStatus:
        """Every source's state and rates now; safe to call from any thread while the run goes on."""
        return dataclasses.replace(reports.status(self.lanes, self.meter), inference=self._inference())

    def summary(self) -> RunSummary:
        return dataclasses.replace(self._summary(), inference=self._inference())

    def _inference(self) -> InferenceInfo | None:
        return self._backend.info if self._backend is not None else None

    def _summary(self) -> RunSummary:
        return reports.summary(
            self.lanes, self.meter, gated=[p.detect.motion for p in self._plans],
            output_cpu_s=sum(o.cpu_s for o in self._outputs),
            motion_cpu_s=self._gate.check_cpu_s if self._gate is not None else None,
            stopped_by=self._stopped_by,
            mqtt={"sent": self._mqtt.sent, "dropped": self._mqtt.dropped} if self._mqtt is not None else {},
            counts={lane.source.name: dataclasses.asdict(self._events.counts[lane.id])
                    for lane in self.lanes if self._tracking[lane.id]} if self._events is not None else {},
        )
