"""How a run reports what it measured: the status now, the summary at the end, the periodic status
lines and the progress bar.

Each reads the run's `RunMeter` (streamdet.measures.meters) together with the scheduler's lanes, from any thread
for `status`, at the end for `summary`, and gives the records of streamdet.measures.figures or a line of text.
"""

from __future__ import annotations

import logging
import os
import time

from .scheduler import Lane
from .measures.figures import RunStatus, RunSummary, SourceStatus, SourceSummary
from .measures.meters import RunMeter, SourceCounters

log = logging.getLogger("streamdet")


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
        if lane.info.live and not lane.removed:
            log.info("%s", status_line(lane.source.name, counters, lane.inbox.dropped, lane.source.health()))


def status(lanes: list[Lane], meter: RunMeter) -> RunStatus:
    """Every source's state and rates now; safe to call from any thread while the run goes on."""
    sources = []
    for lane, c in zip(list(lanes), meter.sources):
        if lane.removed:
            continue  # taken out by a reload: no longer a source of the run (the summary still counts it)
        health = lane.source.health()
        if health is not None and not health.connected:
            state = "offline"
        elif lane.inbox.finished:
            state = "ended"
        else:
            state = "online" if c.frames_processed else "starting"
        latency = c.latency.summary()
        width, height = c.size or (lane.info.width, lane.info.height)
        sources.append(SourceStatus(
            name=lane.source.name, url=lane.source.display_name or lane.source.name, live=lane.info.live,
            state=state, width=width, height=height,
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
    process_cpu = meter.cpu_so_far()
    cpu_ms = {"decode": sum(lane.reading.cpu_s for lane in lanes) * per_frame}
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
