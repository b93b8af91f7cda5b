"""What a run measures while it goes: stage times, rates, per-source counters, CPU time.

Written by the threads that do the work (the output loop, readers, the web encoder) and read from any
thread; `streamdet.reports` turns them into the records of `streamdet.measures.figures` and into status lines.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .figures import StageSummary

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


@dataclass
class SourceCounters:
    """What the output loop counts for one source (on its own thread, so no lock)."""

    frames_processed: int = 0
    frames_inferred: int = 0  # of those, how many went through the network (all, unless the motion gate is on)
    last_done: float | None = None
    size: tuple[int, int] | None = None  # the newest frame's (width, height): a camera may come back at another size
    latency: StageTimer = field(default_factory=StageTimer)
    age: StageTimer = field(default_factory=StageTimer)
    rate: RateMeter = field(default_factory=RateMeter)

    def done(self, now: float, latency_ms: float) -> None:
        self.frames_processed += 1
        self.last_done = now
        self.latency.add(latency_ms)
        self.rate.tick(now)



class RunMeter:
    """The figures of one run: per-source counters, stage timings, the CPU each stage took, wall and CPU time."""

    def __init__(self) -> None:
        self.sources: list[SourceCounters] = []
        self.timers = {name: StageTimer() for name in ("decode", "inference", "draw", "write")}
        self.cpu_s: dict[str, float] = {}
        self.started_at = 0.0
        self.wall = 0.0
        self.process_cpu = 0.0
        self._cpu0 = 0.0

    def add_source(self) -> SourceCounters:
        counters = SourceCounters()
        self.sources.append(counters)
        return counters

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._cpu0 = process_cpu_s()

    def stop(self) -> None:
        """The run is over: wall and CPU time are fixed here, so the summary does not count the teardown after it."""
        self.wall = time.monotonic() - self.started_at if self.started_at else 0.0
        self.process_cpu = process_cpu_s() - self._cpu0

    def timed(self, name: str, work: Callable, result):
        t0, c0 = time.perf_counter(), time.thread_time()
        result = work(result)
        self.timers.setdefault(name, StageTimer()).add((time.perf_counter() - t0) * 1000)
        self.cpu_s[name] = self.cpu_s.get(name, 0.0) + time.thread_time() - c0
        return result

    def cpu_so_far(self) -> float:
        """The process's CPU seconds since the run started, fixed once it stopped."""
        return self.process_cpu or (process_cpu_s() - self._cpu0)

    def uptime(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0
