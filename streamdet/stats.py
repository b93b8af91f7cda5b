"""Timing figures: per-stage durations and the run summary."""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

# Percentiles come from the most recent samples so a camera left running for
# days keeps a fixed memory footprint.
_WINDOW = 20_000


def process_cpu_s() -> float:
    """CPU seconds this process has used so far, on all its threads."""
    times = os.times()
    return times.user + times.system


class StageTimer:
    """Durations of one stage in ms; safe to add to from several threads."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=_WINDOW)
        self._total = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._samples.append(ms)
            self._total += ms
            self._count += 1

    def summary(self) -> StageSummary:
        with self._lock:
            samples = np.fromiter(self._samples, dtype=np.float64, count=len(self._samples))
            total, count = self._total, self._count
        if count == 0:
            return StageSummary(mean_ms=0.0, p50_ms=0.0, p95_ms=0.0, count=0)
        p50, p95 = np.percentile(samples, [50, 95])
        return StageSummary(mean_ms=total / count, p50_ms=float(p50), p95_ms=float(p95), count=count)


class RateMeter:
    """Events per second over a sliding window, for the on-screen FPS, a camera's input rate and the web view
    (read from other threads)."""

    def __init__(self, window_s: float = 1.0) -> None:
        self._times: deque[float] = deque()
        self._window = window_s
        self._lock = threading.Lock()

    def tick(self, now: float) -> None:
        with self._lock:
            self._times.append(now)
            while self._times and now - self._times[0] > self._window:
                self._times.popleft()

    def clear(self) -> None:
        """Start afresh (a camera back after an outage must not be measured across the gap)."""
        with self._lock:
            self._times.clear()

    def rate(self, now: float | None = None) -> float | None:
        """Events per second, or None until two events give a rate.

        With `now`, a source that stopped delivering falls to 0 once its last
        event is older than the window, instead of keeping its last rate.
        """
        with self._lock:
            if now is not None and self._times and now - self._times[-1] > self._window:
                return 0.0
            if len(self._times) < 2:
                return None
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else None


@dataclass(frozen=True)
class StageSummary:
    mean_ms: float
    p50_ms: float
    p95_ms: float
    count: int


@dataclass
class SourceCounters:
    """What the output loop counts for one source (on its own thread, so no lock)."""

    frames_processed: int = 0
    frames_inferred: int = 0  # of those, how many went through the network (all, unless the motion gate is on)
    last_done: float | None = None
    latency: StageTimer = field(default_factory=StageTimer)
    age: StageTimer = field(default_factory=StageTimer)
    rate: RateMeter = field(default_factory=RateMeter)

    def done(self, now: float, latency_ms: float) -> None:
        self.frames_processed += 1
        self.last_done = now
        self.latency.add(latency_ms)
        self.rate.tick(now)


@dataclass(frozen=True)
class SourceSummary:
    name: str
    frames_read: int
    frames_processed: int
    frames_dropped: int
    fps: float
    reconnects: int
    latency: StageSummary
    frame_age: StageSummary
    frames_skipped: int = 0  # pictures in a folder that could not be decoded
    frames_inferred: int | None = None  # with the motion gate on: frames the network looked at


@dataclass(frozen=True)
class InferenceInfo:
    """Where and how frames are inferred, as the compiled model (or the server) says, not as asked."""

    model: str                 # the IR's file name, or the server's model name
    devices: list[str]         # execution devices; ["server grpc://host:port"] on a server
    precision: str             # f32, bf16, f16 as compiled; "set by the server" on a server
    weights: str               # FP16, FP32, INT8
    requests: int              # infer requests kept in flight

    def line(self) -> str:
        return (f"{self.model} ({self.weights} weights) on {', '.join(self.devices) or 'unknown'}, "
                f"precision {self.precision}, {self.requests} requests")


@dataclass(frozen=True)
class RunSummary:
    frames: int
    wall_s: float
    fps: float
    stages: dict[str, StageSummary]
    sources: list[SourceSummary] = field(default_factory=list)
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    cpu_utilisation: float = 0.0  # process CPU time / (wall time x cores)
    stopped_by: str = "end of stream"
    counts: dict[str, dict] = field(default_factory=dict)  # per tracked source: tracks per class, zones, lines
    mqtt: dict[str, int] = field(default_factory=dict)     # events the broker acknowledged, and those dropped
    inference: InferenceInfo | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def format(self) -> str:
        lines = [
            f"streamdet: {self.frames} frames in {self.wall_s:.2f} s = {self.fps:.1f} FPS ({self.stopped_by})",
            *([f"  inference: {self.inference.line()}"] if self.inference is not None else []),
            "  stage        mean ms   p95 ms",
        ]
        for name, stage in self.stages.items():
            if stage.count:
                lines.append(f"  {name:<11}{stage.mean_ms:>8.2f} {stage.p95_ms:>8.2f}")
        if self.cpu_ms_per_frame:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in self.cpu_ms_per_frame.items())
            lines.append(f"  CPU ms/frame: {parts}; CPU use {self.cpu_utilisation:.0%} of all cores")
        for src in self.sources:
            lines.append(
                f"  source {src.name}: {src.frames_processed} processed, {src.frames_dropped} dropped, "
                f"{src.fps:.1f} FPS, latency p50 {src.latency.p50_ms:.1f} ms p95 {src.latency.p95_ms:.1f} ms"
                + (f", {src.reconnects} reconnects" if src.reconnects else "")
                + (f", {src.frames_skipped} unreadable images skipped" if src.frames_skipped else "")
                + (f", inferred {src.frames_inferred} ({src.frames_inferred / max(1, src.frames_processed):.0%}, "
                   "motion gate)" if src.frames_inferred is not None else "")
            )
        for name, c in self.counts.items():
            parts = [", ".join(f"{n} {label}" for label, n in sorted(c["tracks"].items())) or "no tracks"]
            parts += [f"zone {z}: {v['enter']} entered, {v['exit']} left" for z, v in c["zones"].items()]
            parts += [f"line {n}: {v['in']} in, {v['out']} out" for n, v in c["lines"].items()]
            if c.get("clips") is not None:
                parts.append(f"{c['clips']} clip{'s' if c['clips'] != 1 else ''}")
            lines.append(f"  events of {name}: " + "; ".join(parts))
        if self.mqtt:
            lines.append(f"  mqtt: {self.mqtt['sent']} events acknowledged by the broker, {self.mqtt['dropped']} dropped "
                         "while it was away (outbox full)")
        return "\n".join(lines)


def status_line(name: str, counters: SourceCounters, dropped: int, health) -> str:
    """The periodic line for one live source: its rates while connected; offline, how long, and what next while not."""
    processed = counters.rate.rate()
    if health is not None and not health.connected:
        line = f"{name}: OFFLINE"
        if health.offline_s is not None:
            line += f" for {health.offline_s:.0f} s"
        if health.attempt:
            line += f", {health.attempt} failed attempt(s)"
        if health.next_try_s is not None:
            line += f", next try in {health.next_try_s:.1f} s"
        if health.last_error:
            line += f" ({health.last_error})"
        return line + f"; reconnects {health.reconnects}, dropped {dropped}"
    input_fps = getattr(health, "input_fps", None)
    return (f"{name}: input {f'{input_fps:.1f}' if input_fps is not None else '-'} fps, "
            f"processed {f'{processed:.1f}' if processed is not None else '-'} fps, dropped {dropped}, "
            f"reconnects {getattr(health, 'reconnects', 0)}, latency {counters.latency.summary().mean_ms:.0f} ms"
            + (f", inferred {counters.frames_inferred / counters.frames_processed:.0%}"
               if counters.frames_inferred < counters.frames_processed else ""))


@dataclass(frozen=True)
class SourceStatus:
    """One source as the web view and its JSON show it, now."""

    name: str
    url: str                     # a path, or the URL with credentials masked
    live: bool
    state: str                   # starting, online, offline or ended
    width: int
    height: int
    input_fps: float | None      # what a camera delivers
    processed_fps: float | None  # what comes out of inference
    frames_processed: int
    dropped: int
    latency_ms: float | None     # mean over recent frames, decode to end of inference
    reconnects: int
    offline_s: float | None = None
    last_error: str | None = None
    frames_read: int = 0
    frames_inferred: int = 0            # of those processed, how many the network ran on (fewer with the motion gate)
    frame_age: StageSummary | None = None  # decode to written, over recent frames
    decoder: str | None = None          # network cameras: where frames are decoded (software, cuda, ...)


@dataclass(frozen=True)
class RunStatus:
    uptime_s: float
    frames: int
    sources: list[SourceStatus]
    inference: InferenceInfo | None = None
    inference_time: StageSummary | None = None  # one request's time, over recent frames
    mqtt: dict[str, int] = field(default_factory=dict)  # with MQTT on: sent, dropped, connected (1/0)

    @property
    def offline(self) -> list[str]:
        return [s.name for s in self.sources if s.state == "offline"]
