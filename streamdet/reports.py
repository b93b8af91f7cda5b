"""What a run measures as it goes, and how it reports it: status, summary, status lines, progress bar.

`RunMeter` is written by the pipeline's output loop (per-source counters,
stage times, CPU per stage); the functions below read it together with the
scheduler's lanes, from any thread for `status`, at the end for `summary`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from .scheduler import Lane
from .stats import (RunStatus, RunSummary, SourceCounters, SourceStatus, SourceSummary, StageTimer, process_cpu_s,
                    status_line)

log = logging.getLogger("streamdet")


class RunMeter:
    """The figures of one run: per-source counters, stage timings, the CPU each stage took, wall and CPU time."""

    def __init__(self) -> None:
        self.sources: list[SourceCounters] = []
        self.timers = {name: StageTimer() for name in ("decode", "inference", "render", "write")}
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

    def uptime(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0


def progress_bar(lanes: list[Lane]):
    """A tqdm bar over the frames of file sources (none for cameras: they have status lines)."""
    if any(lane.info.live for lane in lanes):
        return None
    counts = [lane.info.frame_count for lane in lanes]
    total = sum(counts) if all(c is not None for c in counts) else None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", dynamic_ncols=True, leave=False)


def log_status(lanes: list[Lane], meter: RunMeter) -> None:
    for lane, counters in zip(lanes, meter.sources):
        if lane.info.live:
            log.info("%s", status_line(lane.source.name, counters, lane.inbox.dropped, lane.source.health()))


def status(lanes: list[Lane], meter: RunMeter) -> RunStatus:
    """Every source's state and rates now; safe to call from any thread while the run goes on."""
    sources = []
    for lane, c in zip(lanes, meter.sources):
        health = lane.source.health()
        if health is not None and not health.connected:
            state = "offline"
        elif lane.inbox.finished:
            state = "ended"
        else:
            state = "online" if c.frames_processed else "starting"
        latency = c.latency.summary()
        sources.append(SourceStatus(
            name=lane.source.name, url=lane.source.display_name or lane.source.name, live=lane.info.live,
            state=state, width=lane.info.width, height=lane.info.height,
            input_fps=health.input_fps if health is not None else None, processed_fps=c.rate.rate(time.monotonic()),
            frames_processed=c.frames_processed, dropped=lane.inbox.dropped,
            latency_ms=latency.mean_ms if latency.count else None,
            reconnects=health.reconnects if health is not None else 0,
            offline_s=health.offline_s if health is not None else None,
            last_error=health.last_error if health is not None else None,
            decoder=lane.info.decoder,
            frames_read=lane.frames_read, frames_inferred=c.frames_inferred, frame_age=c.age.summary(),
        ))
    return RunStatus(uptime_s=meter.uptime(), frames=sum(c.frames_processed for c in meter.sources), sources=sources,
                     inference_time=meter.timers["inference"].summary())


def summary(lanes: list[Lane], meter: RunMeter, *, gated: list[bool], output_cpu_s: float, motion_cpu_s: float | None,
            stopped_by: str, mqtt: dict[str, int], counts: dict[str, dict]) -> RunSummary:
    """The run's figures. `gated`: per source, whether the motion gate is on (its inferred share is reported)."""
    wall = meter.wall or meter.uptime()
    frames = sum(c.frames_processed for c in meter.sources)
    sources = []
    for lane, c in zip(lanes, meter.sources):
        span = (c.last_done - meter.started_at) if c.last_done else 0.0
        health = lane.source.health()
        sources.append(SourceSummary(
            name=lane.source.name, frames_read=lane.frames_read, frames_processed=c.frames_processed,
            frames_dropped=lane.inbox.dropped, fps=c.frames_processed / span if span > 0 else 0.0,
            reconnects=health.reconnects if health else 0, latency=c.latency.summary(),
            frame_age=c.age.summary(), frames_skipped=getattr(lane.source, "skipped", 0),
            frames_inferred=c.frames_inferred if gated[lane.id] else None,
        ))
    per_frame = 1000 / frames if frames else 0.0
    process_cpu = meter.process_cpu or (process_cpu_s() - meter._cpu0)
    cpu_ms = {"decode": sum(lane.decode_cpu_s for lane in lanes) * per_frame}
    cpu_ms.update({name: s * per_frame for name, s in meter.cpu_s.items()})
    if motion_cpu_s is not None:
        cpu_ms["motion"] = motion_cpu_s * per_frame
    cpu_ms["write"] = cpu_ms.get("write", 0.0) + output_cpu_s * per_frame
    # Everything else is OpenVINO's threads plus the feeder and callbacks.
    cpu_ms["inference+other"] = max(0.0, process_cpu * per_frame - sum(cpu_ms.values()))
    return RunSummary(
        frames=frames,
        cpu_ms_per_frame=cpu_ms,
        cpu_utilisation=process_cpu / wall / (os.cpu_count() or 1) if wall > 0 else 0.0,
        wall_s=wall,
        fps=frames / wall if wall > 0 else 0.0,
        stages={name: timer.summary() for name, timer in meter.timers.items()},
        sources=sources,
        stopped_by=stopped_by,
        mqtt=mqtt,
        counts=counts,
    )
