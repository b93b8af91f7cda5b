"""A run: frames from the sources through inference, the stages after it and the outputs, in order.

A frame's way through a run:

    source -> motion gate -> inference -> stages (reuse, track, events, draw, clips) -> outputs

`streamdet.assembly` puts the run together from the settings (plan, open, wire; `streamdet.assembly.wiring`
lists the stages in the order they run); the scheduler (streamdet.scheduler) moves frames from the
sources through inference with its own threads and hands them back in order; everything after
inference runs here, on the caller's thread, because windows must live on one thread and signal
handlers run on the main thread. A new capability is a stage or an output in the wiring, or an engine
wrapper in the assembly; neither this loop nor the scheduler changes.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator

from . import reports
from .assembly.assemble import assemble
from .assembly.changes import Reload, SettingsFile
from .assembly.reload import Reloads
from .assembly.running import Running
from .assembly.wiring import close_outputs
from .config.sections import Config
from .detections import FrameResult
from .engines.base import Completed
from .errors import StreamdetError
from .model.detector import Detector
from .outputs import WindowOutput
from .outputs.clips import ClipsOutput
from .scheduler import Scheduler
from .sources import Source
from .measures.figures import RunStatus, RunSummary

log = logging.getLogger("streamdet")

_IDLE_S = 0.5  # how long the output loop waits for a frame before flushing outputs and checking status


class Pipeline:
    """Runs detection over one or more sources.

    >>> with Pipeline(config) as pipeline:
    ...     for result in pipeline.results():
    ...         print(result.frame.index, result.detections.labels)

    Everything cheap is checked here, before the model is loaded: the
    settings, that every source exists, that every output can be written and
    clashes with no input and no other output; then the sources are opened
    and the model loaded (streamdet.assembly). Close it (`with`, or `close()`)
    even if it never runs.
    """

    def __init__(self, config: Config, detector: Detector | None = None, *,
                 sources: list[Source] | None = None, progress: bool = False,
                 settings: SettingsFile | None = None):
        """`sources` replaces `config.sources` with ready-made Source objects (custom inputs); `settings`: the
        file the settings came from and how to read them again, for `reload_settings` (SIGHUP, POST /api/reload,
        the camera API)."""
        self._settings = settings
        self._run = run = assemble(config, detector, sources, settings=settings,
                                   reload=self.reload_settings if settings else None)
        self.lanes = run.wired.lanes
        self.meter = run.meter
        self.detector = run.opened.backend.detector
        self.web_url = run.opened.web_url
        self._progress = progress
        self._scheduler: Scheduler | None = None
        self._last: dict[int, FrameResult] = {}   # per source: its newest frame, for the events of its end
        # The run's parts as they stand (a reload adds and removes cameras), and the reloads that change them.
        self._parts = Running(run.plan, run.wired, run.opened.infos, run.opened.scenes, run.meter, run.opened.link_url,
                              run.motion)
        self._reloads = Reloads(self._parts, config, run.plan.labels, detector, run.opened.backend.nireq)
        self._own = self._parts.own               # per source: closed when it ends
        self._ended: set[int] = set()             # sources whose tracks were ended
        self._closed = False
        self._stopped_by = "end of stream"
        # The output loop's last round (time.monotonic()): it goes round at least every _IDLE_S, so an old one
        # means a stage or an output hangs; systemd's watchdog (streamdet.cli.systemd) is fed only while it is new.
        self.heartbeat = time.monotonic()
        self.ending = False  # the output loop is over: the outputs are being finalised
        self._loop_thread: int | None = None  # the thread running results(), which applies reloads

    @property
    def config(self) -> Config:
        """The settings the run goes on now (a reload changes them)."""
        return self._reloads.config

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
            for source in self._run.plan.sources:
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
        self._loop_thread = threading.get_ident()
        self._scheduler = scheduler = Scheduler(self.lanes, self._run.make_engine, self._run.opened.backend.nireq,
                                                self._run.motion.wants_inference)
        self._reloads.wake = scheduler.wake
        self.meter.start()
        scheduler.start()
        bar = reports.progress_bar(self.lanes) if self._progress and not self._run.plan.window else None
        live = any(lane.info.live for lane in self.lanes)  # status lines are for cameras; files have the bar
        every = self.config.logging.status_interval if live and not self.config.logging.quiet else 0
        next_status = time.monotonic() + every if every else float("inf")
        try:
            while True:
                self._reloads.step(scheduler, self._ended, self._end_source)
                self.heartbeat = time.monotonic()
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
                    for output in self._parts.outputs:  # idle: a camera is away or slow; let buffered lines out
                        output.flush()
                    continue
                result = self._finish(completed)
                scheduler.release(completed)
                if bar is not None:
                    bar.update(1)
                if on_result is not None:
                    on_result(result)
                yield result
                if self._run.plan.window and any(isinstance(o, WindowOutput) and o.closed
                                                 for o in self._parts.outputs):
                    self.stop("window closed")
        except BaseException:
            # An error, or the caller leaving the loop early (GeneratorExit):
            # nobody will take results any more, so waiting threads must not wait.
            self.abort(self._stopped_by if self._stopped_by != "end of stream" else "stopped early")
            raise
        finally:
            self.ending = True
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
        counters.size = job.frame.size
        # The plate's figures as they stand at this frame: whoever draws or files it later shows these.
        result = FrameResult(source=lane.source.name, frame=job.frame, detections=completed.detections,
                             latency_ms=latency_ms, source_id=lane.id, inferred=completed.inferred,
                             predicted=completed.predicted,
                             fps=counters.rate.rate(), still=lane.info.still)
        for stage in self._parts.stages:
            result = self.meter.timed(stage.name, stage, result)
        self.meter.timed("write", self._write, result)
        counters.age.add((time.monotonic() - job.frame.captured) * 1000)
        if self._parts.events is not None:
            self._last[lane.id] = result
        # The unlocked look at `finished` keeps the lock off the per-frame path until a source has ended.
        if lane.inbox.finished and lane.id not in self._ended and self._scheduler.source_done(lane):
            self._end_source(lane.id)
        return result

    def _end_source(self, source_id: int) -> None:
        """A source ended (or the run stops): its tracks end, and its own outputs are complete now."""
        self._ended.add(source_id)
        parts = self._parts
        if parts.events is not None and source_id in self._last:
            ended = parts.events.finish(source_id, self._last.pop(source_id))
            if parts.clips is not None:
                ended = parts.clips.finish(ended)  # the clips end with the source
            if ended.events or ended.clip_steps:
                for output in parts.outputs_of[source_id]:
                    if output.takes_events:
                        output.write(ended)
        own = self._own[source_id]
        while own:
            own.pop().close()

    def _write(self, result: FrameResult) -> FrameResult:
        for output in self._parts.outputs_of[result.source_id]:
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
        self._reloads.cancel()
        if self._scheduler is not None:
            self._scheduler.stop()
        errors = self._clips_cut_short()
        errors += close_outputs(self._parts.outputs)
        self._run.opened.backend.close()  # an engine waiting for a server that is away lets the feeder go
        if self._scheduler is not None:
            stuck = self._scheduler.close()
            if stuck:
                log.warning("threads still blocked after stopping: %s", ", ".join(stuck))
        self._run.close_inputs()
        for source in self._parts.added:
            source.close()
        self.meter.stop()
        if errors and not self._failed_already():
            raise errors[0]

    def _clips_cut_short(self) -> list[BaseException]:
        """The run failed or was left early: no end events go out, but a clip still open gets the packets the clip
        stage holds for it (up to its post-capture), so it ends where the video ends; the errors, in order."""
        clips, errors = self._parts.clips, []
        for source_id in [i for i in self._last if i not in self._ended]:
            last = self._last.pop(source_id)
            if clips is None:
                continue
            steps = dataclasses.replace(last, events=(), clip_steps=clips.finish(last).clip_steps)
            for output in self._parts.outputs_of[source_id]:
                if isinstance(output, ClipsOutput):
                    try:
                        output.write(steps)
                    except Exception as exc:
                        errors.append(exc)
        return errors

    def _failed_already(self) -> bool:
        """A thread's error is being raised: it is the cause, the outputs' trouble is its consequence."""
        return self._scheduler is not None and self._scheduler.failure.error is not None

    def close(self) -> None:
        self.abort(self._stopped_by)
        self._close_all()

    def reload(self, config: Config) -> Reload:
        """Apply new settings while the run goes (from any thread but the one running `results()`): cameras
        added start, removed ones stop, changed ones restart alone; what cannot change is named and kept
        (streamdet.assembly.reload). Waits for the outcome; an invalid `config` changes nothing."""
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("Pipeline.reload waits for the thread running results(): call it from another thread")
        return self._reloads.ask(config)

    def reload_settings(self) -> Reload:
        """Read the settings again (the file and flags the run started with) and apply them; logs the one line."""
        if self._settings is None:
            done = Reload(error="this run was started without a settings file: there is nothing to read again")
        else:
            try:
                done = self.reload(self._settings.read())
            except StreamdetError as exc:
                done = Reload(error=str(exc))
        (log.warning if done.error else log.info)("%s", done.line())
        return done

    def status(self) -> RunStatus:
        """Every source's state and rates now; safe to call from any thread while the run goes on."""
        return self._run.status()

    def summary(self) -> RunSummary:
        parts, mqtt = self._parts, self._run.plan.mqtt
        events = parts.events
        # The clips each camera with clips made, as its clips output counted them.
        clips = {o.source_name: {"clips": o.made} for o in parts.outputs if isinstance(o, ClipsOutput)}
        summary = reports.summary(
            self.lanes, self.meter, gated=[p.detect.motion or bool(p.detect.fps) for p in parts.plans],
            output_cpu_s=sum(o.cpu_s for o in parts.outputs),
            motion_cpu_s=self._run.motion.cpu_s if self._run.plan.gated else None,
            stopped_by=self._stopped_by,
            mqtt={"sent": mqtt.sent, "dropped": mqtt.dropped} if mqtt is not None else {},
            counts={lane.source.name: {**dataclasses.asdict(events.counts[lane.id]), **clips.get(lane.source.name, {})}
                    for lane in self.lanes if parts.tracking[lane.id]} if events is not None else {},
        )
        return dataclasses.replace(summary, inference=self._run.opened.backend.info)
