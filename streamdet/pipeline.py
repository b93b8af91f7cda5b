"""The threaded capture -> infer -> render pipeline.

Threads and their owners (all owned by `Pipeline`, all joined before
`results()` returns):

- one capture thread per source: decodes and puts frames in that source's inbox;
- one feeder thread: takes frames from the inboxes and starts inference when a
  request is free;
- OpenVINO's callback threads: decode outputs into the reorder buffer;
- the caller's thread runs the render/output loop (`results()`), because GUI
  windows must live on one thread and signal handlers run on the main thread.

Backpressure: the feeder holds a slot from `_slots` for every frame between
submit and the end of rendering, so a slow output stage slows inference down,
which fills the file inboxes and pauses decoding; live inboxes hold one frame
and replace it, counting the replaced one as dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .detections import FrameResult
from .errors import SinkError, StreamdetError
from .inference import Completed, InferenceEngine, Job
from .model import Detector, load
from .render import Annotator, OverlayStatus, OverlayStyle
from .sinks import DisplaySink, ImageDirSink, JsonlSink, Sink, VideoSink, check_output_path, display_available
from .sources import Frame, ImageFilesSource, Source, SourceInfo, open_source
from .stats import RateMeter, RunSummary, SourceSummary, StageTimer, process_cpu_s

log = logging.getLogger("streamdet")


_POLL_S = 0.5  # how often a blocked thread re-checks for abort; not a busy loop


def _default_nireq(detector: Detector) -> int:
    """The device's optimal number of requests, plus one when throughput is the goal.

    With exactly the optimal number the device idles while Python turns a
    finished request round (decode its outputs, take and resize the next
    frame): on 2 cores one more request took the pipeline from 0.80 to 0.90 of
    raw throughput on pre-decoded frames. Under LATENCY a second request would
    only make each frame wait for the other, so it is not added there.
    """
    extra = 1 if str(detector.compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT" else 0
    return detector.optimal_nireq + extra


class _Inbox:
    """Frames of one source waiting for inference; guarded by the pipeline's condition."""

    def __init__(self, capacity: int, newest_wins: bool):
        self.frames: list[Frame] = []
        self.capacity = capacity
        self.newest_wins = newest_wins
        self.finished = False
        self.dropped = 0


@dataclass
class _Runner:
    """One source with its inbox, capture thread and counters."""

    id: int
    source: Source
    info: SourceInfo
    inbox: _Inbox
    sinks: list[Sink] = field(default_factory=list)
    own_sinks: list[Sink] = field(default_factory=list)  # written by this source only: closed when it ends
    thread: threading.Thread | None = None
    frames_read: int = 0
    frames_taken: int = 0  # taken from the inbox for inference; guarded by the pipeline's condition
    decode_cpu_s: float = 0.0
    frames_processed: int = 0
    first_done: float | None = None
    last_done: float | None = None
    latency: StageTimer = field(default_factory=StageTimer)
    age: StageTimer = field(default_factory=StageTimer)
    rate: RateMeter = field(default_factory=RateMeter)
    error: BaseException | None = None

    @property
    def name(self) -> str:
        return self.source.name


class Pipeline:
    """Runs detection over one or more sources.

    >>> with Pipeline(config) as pipeline:
    ...     for result in pipeline.results():
    ...         print(result.frame.index, result.detections.labels)
    """

    def __init__(
        self,
        config: Config,
        detector: Detector | None = None,
        *,
        sources: list[Source] | None = None,
        progress: bool = False,
    ):
        """`sources` replaces `config.sources` with ready-made Source objects (custom inputs)."""
        if not config.sources and not sources:
            raise StreamdetError("no source given; pass --source FILE|URL|CAMERA or list sources: in the config")
        self.config = config
        self._given_sources = sources
        self._progress = progress
        self._check_outputs()
        self.detector = detector or load(
            config.model.name,
            config.inference.device,
            hint=config.inference.hint,
            streams=config.inference.streams or None,
            threads=config.inference.threads or None,
            nireq=config.inference.nireq or None,
            threshold=config.detect.threshold,
            classes=config.detect.classes,
            labels=config.model.labels,
            cache_dir=config.model.cache_dir,
            fp32=config.model.fp32,
            base_url=config.model.base_url,
        )
        self.nireq = config.inference.nireq or _default_nireq(self.detector)
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._aborted = threading.Event()
        # Two results per request may wait for the output stage: enough to
        # absorb jitter in rendering without letting frames pile up.
        self._slots = threading.Semaphore(self.nireq * 3)
        self._ready: dict[int, Completed] = {}
        self._submitted = 0
        self._feeding_done = False
        self._feeder: threading.Thread | None = None
        self._engine: InferenceEngine | None = None
        self.stages = {name: StageTimer() for name in ("decode", "inference", "render", "write")}
        self._sources: list[Source] = []  # known before they open, so stop() reaches one still opening
        self.runners: list[_Runner] = []
        self._sinks: list[Sink] = []
        self._display: DisplaySink | None = None
        self._annotator = Annotator(
            OverlayStyle(
                labels=config.overlay.labels,
                scores=config.overlay.scores,
                fps=config.overlay.fps,
                line_width=config.overlay.line_width,
                font_scale=config.overlay.font_scale,
            )
        )
        # CPU seconds of the stages that run on the render thread (decode is per runner).
        self._cpu_s = {"render": 0.0, "write": 0.0}
        self._process_cpu0 = 0.0
        self._opened = False
        self._closed = False
        self._started_at = 0.0
        self._stopped_by = "end of stream"

    # ----------------------------------------------------------------- setup

    def _check_outputs(self) -> None:
        out = self.config.output
        several = len(self._given_sources or self.config.sources) > 1
        for key, path in (("output", out.video), ("json", out.json), ("summary_json", out.summary_json)):
            if path is None or path == "-":
                continue
            if key == "output" and several and "{name}" not in path:
                raise SinkError(
                    f"--output '{path}': several sources need '{{name}}' in the path, e.g. out_{{name}}.mp4"
                )
            check_output_path(path.replace("{name}", "x"))

    def _want_display(self) -> bool:
        show = self.config.display.show
        if show == "no":
            return False
        if display_available():
            return True
        if show == "yes":
            raise SinkError("--show: no display (DISPLAY is not set); run under a desktop session or use --no-show")
        log.info("no display (DISPLAY is not set): the window is off; results go to the outputs only")
        return False

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        cfg = self.config.source
        try:
            specs = self._given_sources or self.config.sources
            for spec in specs:
                self._sources.append(spec if isinstance(spec, Source) else open_source(
                    spec,
                    loop=cfg.loop,
                    decode_threads=cfg.decode_threads,
                    rtsp_transport=cfg.rtsp_transport,
                    open_timeout=cfg.open_timeout,
                    read_timeout=cfg.read_timeout,
                    reconnect_initial=cfg.reconnect_initial,
                    reconnect_max=cfg.reconnect_max,
                    reconnect_attempts=cfg.reconnect_attempts,
                    width=cfg.width,
                    height=cfg.height,
                    fps=cfg.fps,
                ))
            for i, (source, info) in enumerate(zip(self._sources, self._open_sources())):
                newest = cfg.policy == "newest" or (cfg.policy == "auto" and info.live)
                inbox = _Inbox(capacity=1 if newest else max(2, self.nireq * 2), newest_wins=newest)
                self.runners.append(_Runner(id=i, source=source, info=info, inbox=inbox))
            self._make_sinks()
        except BaseException:
            self._close_all()
            raise

    def _open_sources(self) -> list[SourceInfo]:
        """Open every source at once: a camera that is down must not hold up the others for its open timeout."""
        sources = self._sources
        if len(sources) == 1:
            return [sources[0].open()]
        infos: list[SourceInfo | None] = [None] * len(sources)
        errors: list[BaseException | None] = [None] * len(sources)

        def open_one(k: int) -> None:
            try:
                infos[k] = sources[k].open()
            except BaseException as exc:  # re-raised below, on the caller's thread
                errors[k] = exc

        threads = [threading.Thread(target=open_one, args=(k,), name=f"open-{s.name}", daemon=True)
                   for k, s in enumerate(sources)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for error in errors:
            if error is not None:
                raise error
        return infos  # type: ignore[return-value]

    def _make_sinks(self) -> None:
        out = self.config.output
        names = [r.name for r in self.runners]
        if len(set(names)) != len(names):
            # Two cameras with the same name would write to one file.
            for runner in self.runners:
                runner.source.name = f"{runner.name}-{runner.id}"
        shared_json: JsonlSink | None = None
        if out.json and "{name}" not in out.json:
            shared_json = JsonlSink(out.json)
            self._sinks.append(shared_json)
        for runner in self.runners:
            if out.video:
                path = out.video.replace("{name}", runner.name)
                if isinstance(runner.source, ImageFilesSource) and not Path(path).suffix.lower() in (".mp4", ".avi", ".mkv", ".mov"):
                    files = runner.source.files
                    sink: Sink = ImageDirSink(path, name_for=lambda r, files=files: files[r.frame.index % len(files)].name)
                else:
                    sink = VideoSink(path, runner.info.fps, runner.name)
                runner.sinks.append(sink)
                runner.own_sinks.append(sink)
                self._sinks.append(sink)
            if shared_json is not None:
                runner.sinks.append(shared_json)
            elif out.json:
                sink = JsonlSink(out.json.replace("{name}", runner.name))
                runner.sinks.append(sink)
                runner.own_sinks.append(sink)
                self._sinks.append(sink)
        if self._want_display():
            self._display = DisplaySink()
            self._sinks.append(self._display)
            for runner in self.runners:
                runner.sinks.append(self._display)

    # --------------------------------------------------------------- threads

    def _capture(self, runner: _Runner) -> None:
        inbox, cond, timer = runner.inbox, self._cond, self.stages["decode"]
        try:
            while not self._stopping.is_set():
                t0, c0 = time.perf_counter(), time.thread_time()
                frame = runner.source.read()
                if frame is None:
                    break
                timer.add((time.perf_counter() - t0) * 1000)
                runner.decode_cpu_s += time.thread_time() - c0
                runner.frames_read += 1
                with cond:
                    if inbox.newest_wins:
                        if inbox.frames:
                            inbox.dropped += len(inbox.frames)
                            inbox.frames.clear()
                    else:
                        while len(inbox.frames) >= inbox.capacity and not self._stopping.is_set():
                            cond.wait()
                    inbox.frames.append(frame)
                    cond.notify_all()
        except BaseException as exc:
            runner.error = exc
            self._stopping.set()
        finally:
            with cond:
                inbox.finished = True
                cond.notify_all()

    def _next_frame(self, start: int) -> tuple[_Runner, Frame] | None:
        """Round-robin over inboxes; waits while all are empty. None when all are done."""
        with self._cond:
            while True:
                if self._aborted.is_set():
                    return None
                count = len(self.runners)
                for k in range(count):
                    runner = self.runners[(start + k) % count]
                    if runner.inbox.frames:
                        frame = runner.inbox.frames.pop(0)
                        runner.frames_taken += 1
                        self._cond.notify_all()
                        return runner, frame
                if all(r.inbox.finished for r in self.runners):
                    return None
                self._cond.wait()

    def _feed(self) -> None:
        engine = self._engine
        assert engine is not None
        turn = 0
        try:
            while not self._aborted.is_set():
                while not self._slots.acquire(timeout=_POLL_S):
                    if self._aborted.is_set():
                        return
                # Wait for a free request before taking a frame: a live frame
                # taken now is the newest one, not one that aged in our hands.
                engine.wait_idle()
                picked = self._next_frame(turn)
                if picked is None:
                    self._slots.release()
                    break
                runner, frame = picked
                turn = runner.id + 1
                engine.submit(Job(seq=self._submitted, source_id=runner.id, frame=frame))
                self._submitted += 1
            engine.drain()
        finally:
            with self._cond:
                self._feeding_done = True
                self._cond.notify_all()

    def _on_done(self, completed: Completed) -> None:
        with self._cond:
            self._ready[completed.job.seq] = completed
            self._cond.notify_all()

    # ---------------------------------------------------------------- public

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop(self, reason: str = "stopped") -> None:
        """Stop reading; frames already read are still processed and written."""
        self._stopped_by = reason
        self._stopping.set()
        for source in self._sources:
            source.stop()
        with self._cond:
            self._cond.notify_all()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def abort(self, reason: str = "aborted") -> None:
        """Stop now: in-flight frames are not written, but every output is finalised."""
        self.stop(reason)
        self._aborted.set()
        with self._cond:
            self._cond.notify_all()

    def results(self, on_result: Callable[[FrameResult], None] | None = None) -> Iterator[FrameResult]:
        """Run the pipeline, yielding every processed frame in order (per source)."""
        self._open()
        self._engine = InferenceEngine(self.detector, self.nireq, self._on_done)
        self._started_at = time.monotonic()
        self._process_cpu0 = process_cpu_s()
        for runner in self.runners:
            runner.thread = threading.Thread(target=self._capture, args=(runner,), name=f"capture-{runner.name}", daemon=True)
            runner.thread.start()
        self._feeder = threading.Thread(target=self._feed, name="feeder", daemon=True)
        self._feeder.start()
        bar = self._make_progress()
        draw = any(not isinstance(s, JsonlSink) for s in self._sinks)
        next_seq = 0
        # Status lines are for cameras; files have the progress bar.
        live = any(r.info.live for r in self.runners)
        status_every = self.config.logging.status_interval if live and not self.config.logging.quiet else 0
        next_status = time.monotonic() + status_every if status_every else None
        try:
            while True:
                with self._cond:
                    while next_seq not in self._ready:
                        if self._aborted.is_set() or (self._feeding_done and next_seq >= self._submitted):
                            break
                        self._cond.wait(timeout=_POLL_S)
                        if next_status and time.monotonic() >= next_status:
                            break
                    completed = self._ready.pop(next_seq, None)
                if next_status and time.monotonic() >= next_status:
                    self._log_status()
                    next_status = time.monotonic() + status_every
                if self._aborted.is_set():
                    break
                if completed is None:
                    if self._feeding_done and next_seq >= self._submitted:
                        break
                    # Idle: a camera is away or slow; let buffered JSON lines out meanwhile.
                    for sink in self._sinks:
                        sink.flush()
                    continue
                next_seq += 1
                result = self._finish(completed, draw)
                self._slots.release()
                if bar is not None:
                    bar.update(1)
                if on_result is not None:
                    on_result(result)
                yield result
                if self._display is not None and self._display.closed:
                    self.stop("window closed")
        except BaseException:
            # An error, or the caller leaving the loop early (GeneratorExit):
            # nobody will take results any more, so waiting threads must not wait.
            self.abort(self._stopped_by if self._stopping.is_set() else "stopped early")
            raise
        finally:
            if bar is not None:
                bar.close()
            self._close_all()
        errors = [r.error for r in self.runners if r.error is not None]
        if self._engine.error is not None:
            errors.append(self._engine.error)
        if errors:
            raise errors[0]

    def _finish(self, completed: Completed, draw: bool) -> FrameResult:
        job = completed.job
        runner = self.runners[job.source_id]
        now = time.monotonic()
        frame = job.frame
        latency_ms = (completed.done - frame.captured) * 1000
        self.stages["inference"].add(completed.infer_ms)
        runner.latency.add(latency_ms)
        runner.frames_processed += 1
        runner.rate.tick(now)
        if runner.first_done is None:
            runner.first_done = now
        runner.last_done = now
        result = FrameResult(source=runner.name, frame=frame, detections=completed.detections, latency_ms=latency_ms)
        if draw:
            t0, c0 = time.perf_counter(), time.thread_time()
            status = OverlayStatus(fps=runner.rate.rate(), latency_ms=latency_ms)
            self._annotator.draw(frame.image, completed.detections, status)
            self.stages["render"].add((time.perf_counter() - t0) * 1000)
            self._cpu_s["render"] += time.thread_time() - c0
        t0, c0 = time.perf_counter(), time.thread_time()
        for sink in runner.sinks:
            sink.write(result)
        self.stages["write"].add((time.perf_counter() - t0) * 1000)
        self._cpu_s["write"] += time.thread_time() - c0
        runner.age.add((time.monotonic() - frame.captured) * 1000)
        # The unlocked look at `finished` keeps the lock off the per-frame path until a source has ended.
        if runner.own_sinks and runner.inbox.finished and self._source_done(runner):
            # One source ended while others go on: its outputs are complete now,
            # not only when the whole run stops.
            for sink in runner.own_sinks:
                sink.close()
            runner.own_sinks.clear()
        return result

    def _source_done(self, runner: _Runner) -> bool:
        with self._cond:
            return (runner.inbox.finished and not runner.inbox.frames
                    and runner.frames_processed == runner.frames_taken and runner.error is None)

    def run(self, on_result: Callable[[FrameResult], None] | None = None) -> RunSummary:
        for _ in self.results(on_result):
            pass
        return self.summary()

    # -------------------------------------------------------------- teardown

    def _close_all(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop(self._stopped_by)
        with self._cond:
            self._cond.notify_all()
        errors = []
        for sink in self._sinks:
            try:
                sink.close()
            except Exception as exc:  # finalise every output even if one fails
                errors.append(exc)
        # After an abort a thread may still be inside one inference or one
        # blocking read; it notices within a poll interval, so bound the wait.
        timeout = 5.0 if self._aborted.is_set() else None
        for thread in [r.thread for r in self.runners] + [self._feeder]:
            if thread is not None:
                thread.join(timeout)
        for source in self._sources:
            source.close()
        self._wall = time.monotonic() - self._started_at if self._started_at else 0.0
        self._process_cpu = process_cpu_s() - self._process_cpu0
        if errors:
            raise errors[0]

    def close(self) -> None:
        if self._opened:
            self.abort(self._stopped_by)
            self._close_all()

    # --------------------------------------------------------------- reports

    def _make_progress(self):
        if not self._progress or self._display is not None:
            return None
        if any(r.info.live for r in self.runners):
            return None
        counts = [r.info.frame_count for r in self.runners]
        total = sum(counts) if all(c is not None for c in counts) else None
        from tqdm import tqdm

        return tqdm(total=total, unit="frame", dynamic_ncols=True, leave=False)

    def _log_status(self) -> None:
        for r in self.runners:
            stats = getattr(r.source, "stats", None)
            input_fps = getattr(stats, "input_fps", None)
            reconnects = getattr(stats, "reconnects", 0)
            log.info(
                "%s: input %s fps, processed %.1f fps, dropped %d, reconnects %d, latency %.0f ms",
                r.name,
                f"{input_fps:.1f}" if input_fps is not None else "-",
                r.rate.rate(),
                r.inbox.dropped,
                reconnects,
                r.latency.summary().mean_ms,
            )

    def summary(self) -> RunSummary:
        wall = getattr(self, "_wall", 0.0) or (time.monotonic() - self._started_at)
        frames = sum(r.frames_processed for r in self.runners)
        sources = []
        for r in self.runners:
            span = (r.last_done - self._started_at) if r.last_done else 0.0
            stats = getattr(r.source, "stats", None)
            sources.append(
                SourceSummary(
                    name=r.name,
                    frames_read=r.frames_read,
                    frames_processed=r.frames_processed,
                    frames_dropped=r.inbox.dropped,
                    fps=r.frames_processed / span if span > 0 else 0.0,
                    reconnects=getattr(stats, "reconnects", 0),
                    latency=r.latency.summary(),
                    frame_age=r.age.summary(),
                )
            )
        per_frame = 1000 / frames if frames else 0.0
        process_cpu = getattr(self, "_process_cpu", 0.0) or (process_cpu_s() - self._process_cpu0)
        decode_cpu = sum(r.decode_cpu_s for r in self.runners)
        cpu_ms = {
            "decode": decode_cpu * per_frame,
            "render": self._cpu_s["render"] * per_frame,
            "write": (self._cpu_s["write"] + sum(sink.cpu_s for sink in self._sinks)) * per_frame,
        }
        # Everything else is OpenVINO's threads plus the feeder and callbacks.
        cpu_ms["inference+other"] = max(0.0, process_cpu * per_frame - sum(cpu_ms.values()))
        return RunSummary(
            frames=frames,
            cpu_ms_per_frame=cpu_ms,
            cpu_utilisation=process_cpu / wall / (os.cpu_count() or 1) if wall > 0 else 0.0,
            wall_s=wall,
            fps=frames / wall if wall > 0 else 0.0,
            stages={name: timer.summary() for name, timer in self.stages.items()},
            sources=sources,
            stopped_by=self._stopped_by,
        )
