"""Prometheus metrics of a run for the web view's /metrics: built from the run's status at scrape time.

prometheus_client writes the text format; the collector only turns what the run already measures
(streamdet.measures.figures.RunStatus, the events the web view sees, its own viewers) into metric families, so a
scrape costs nothing between scrapes and nothing is counted twice. Its registry is private: other
code using prometheus_client in the same process neither sees nor adds to it.

Sources are labelled by name, never by URL: a name carries no credentials, and the one URL-like
value shown (an inference server's address) goes through streamdet.urls.mask_url.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric,
                                    SummaryMetricFamily)
from prometheus_client.registry import Collector, CollectorRegistry

from ..measures.figures import RunStatus, StageSummary
from ..urls import mask_url

__all__ = ["CONTENT_TYPE_LATEST", "EventTally", "LogTally", "MetricsPage", "RunCollector", "Scrape", "WebFigures",
           "recording_sizes"]

STATES = ("starting", "online", "offline", "ended")


class EventTally:
    """Events per (source, kind, label), as the web view receives them; thread-safe (added to on the output
    thread, read by a scrape). Clips per source are the clips outputs' own figures (`clips`: source name ->
    clips written so far), as the summary's: tracks that overlap share one clip, so end events are no count."""

    def __init__(self, clips: dict[str, Callable[[], int]] | None = None) -> None:
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str, str], int] = {}
        self._clips = clips if clips is not None else {}  # grows when a reload adds a camera with clips

    def add(self, events: Iterable) -> None:
        with self._lock:
            for event in events:
                key = (event.source, event.kind, event.label)
                self._events[key] = self._events.get(key, 0) + 1

    def counts(self) -> tuple[dict[tuple[str, str, str], int], dict[str, int]]:
        with self._lock:
            events = dict(self._events)
        return events, {source: made() for source, made in list(self._clips.items())}


class LogTally(logging.Handler):
    """Lines the run logs at warning and error, by level: the trouble it reported and went on from (a camera
    lost, a recording that could not be written with on_error: continue, a server away, ...)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._counts = {"warning": 0, "error": 0}

    def emit(self, record: logging.LogRecord) -> None:
        # handle() holds the handler's lock around this, as counts() does.
        self._counts["warning" if record.levelno < logging.ERROR else "error"] += 1

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self._counts)


def recording_sizes(listing: Callable[[], list]) -> tuple[int, int]:
    """A segmented recording's files of this run still on disk: how many, and their bytes."""
    count = size = 0
    for path, _start in listing():
        try:
            size += os.stat(path).st_size
        except OSError:
            continue  # expired between the listing and now
        count += 1
    return count, size


@dataclass(frozen=True)
class WebFigures:
    """The web view's own figures at a scrape."""

    viewers: list[int]       # per source, in the run's order: MJPEG streams open now
    connections: int         # open connections of every kind
    refused: int             # requests and connections turned away (busy)
    dropped_stalled: int     # viewers dropped for taking no frame within web.client_timeout


@dataclass(frozen=True)
class Scrape:
    """Everything one scrape reports."""

    status: RunStatus
    web: WebFigures
    events: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (source, kind, label) -> events
    clips: dict[str, int] = field(default_factory=dict)                    # source -> clips written
    logged: dict[str, int] = field(default_factory=dict)                   # warning/error -> lines logged
    recordings: dict[str, tuple[int, int]] = field(default_factory=dict)   # source -> (segments, bytes) on disk


class RunCollector(Collector):
    """The run's metrics, read afresh from `scrape()` at every collect."""

    def __init__(self, scrape: Callable[[], Scrape]):
        self._scrape = scrape

    def collect(self) -> Iterator[Metric]:
        s = self._scrape()
        yield from _sources(s.status)
        yield from _events(s)
        yield from _run(s.status)
        yield from _web(s)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _summary(name: str, doc: str, labels: list[str]) -> SummaryMetricFamily:
    return SummaryMetricFamily(name, doc, labels=labels)


def _add_summary(family: SummaryMetricFamily, names: list[str], values: list[str], ms: StageSummary) -> None:
    """A StageSummary (ms) as seconds: count and sum since the start, p50 and p95 of the recent frames."""
    family.add_metric(values, ms.count, ms.mean_ms * ms.count / 1000)
    if ms.count:
        for q, value in (("0.5", ms.p50_ms), ("0.95", ms.p95_ms)):
            family.add_sample(family.name, dict(zip(names, values), quantile=q), value / 1000)


def _sources(status: RunStatus) -> Iterator[Metric]:
    src = ["source"]
    read = _counter("streamdet_frames_read", "Frames read from the source", src)
    processed = _counter("streamdet_frames_processed", "Frames through inference and the outputs", src)
    inferred = _counter("streamdet_frames_inferred", "Processed frames the network ran on (fewer with the motion gate)", src)
    dropped = _counter("streamdet_frames_dropped", "Frames dropped before inference (newest-frame policy)", src)
    fps = GaugeMetricFamily("streamdet_processed_fps", "Frames per second out of inference, last second", labels=src)
    input_fps = GaugeMetricFamily("streamdet_input_fps", "Frames per second the camera delivers", labels=src)
    age = _summary("streamdet_frame_age_seconds", "From decode to written: p50/p95 of recent frames", src)
    state = GaugeMetricFamily("streamdet_source_state", "1 for the state the source is in", labels=["source", "state"])
    up = GaugeMetricFamily("streamdet_camera_up", "1 while a live source delivers, 0 while it is offline", labels=src)
    offline = GaugeMetricFamily("streamdet_camera_offline_seconds", "How long a live source has had no frames (0 online)",
                                labels=src)
    reconnects = _counter("streamdet_camera_reconnects", "Times a live source came back after losing its stream", src)
    for s in status.sources:
        name = [s.name]
        read.add_metric(name, s.frames_read)
        processed.add_metric(name, s.frames_processed)
        inferred.add_metric(name, s.frames_inferred)
        dropped.add_metric(name, s.dropped)
        if s.processed_fps is not None:
            fps.add_metric(name, s.processed_fps)
        if s.frame_age is not None:
            _add_summary(age, src, name, s.frame_age)
        for each in STATES:
            state.add_metric([s.name, each], 1.0 if s.state == each else 0.0)
        if s.live:  # files do not connect, reconnect or go offline
            if s.input_fps is not None:
                input_fps.add_metric(name, s.input_fps)
            up.add_metric(name, 0.0 if s.state == "offline" else 1.0)
            offline.add_metric(name, s.offline_s if s.state == "offline" and s.offline_s is not None else 0.0)
            reconnects.add_metric(name, s.reconnects)
    yield from (read, processed, inferred, dropped, fps, input_fps, age, state, up, offline, reconnects)


def _events(s: Scrape) -> Iterator[Metric]:
    events = _counter("streamdet_events", "Track events (start, end, zone_enter, zone_exit, line_cross) by class",
                      ["source", "kind", "label"])
    for (source, kind, label), n in sorted(s.events.items()):
        events.add_metric([source, kind, label], n)
    clips = _counter("streamdet_clips", "Event clips written", ["source"])
    for source, n in sorted(s.clips.items()):
        clips.add_metric([source], n)
    yield events
    yield clips
    segments = GaugeMetricFamily("streamdet_recording_segments", "Segment files of this run's recording on disk now",
                                 labels=["source"])
    size = GaugeMetricFamily("streamdet_recording_bytes", "Bytes of this run's recording segments on disk now",
                             labels=["source"])
    for source, (count, n) in sorted(s.recordings.items()):
        segments.add_metric([source], count)
        size.add_metric([source], n)
    yield segments
    yield size
    logged = _counter("streamdet_log_messages", "Lines logged at warning or error (trouble the run went on from)",
                      ["level"])
    for level, n in sorted(s.logged.items()):
        logged.add_metric([level], n)
    yield logged


def _run(status: RunStatus) -> Iterator[Metric]:
    yield GaugeMetricFamily("streamdet_uptime_seconds", "Seconds since the run started", value=status.uptime_s)
    if status.inference is not None:
        info = status.inference
        yield InfoMetricFamily("streamdet_inference", "Where and how frames are inferred, as compiled",
                               value={"model": info.model, "device": ",".join(_shown(d) for d in info.devices),
                                      "precision": info.precision, "weights": info.weights,
                                      "requests": str(info.requests)})
    if status.inference_time is not None:
        time = _summary("streamdet_inference_seconds", "One inference request: p50/p95 of recent frames", [])
        _add_summary(time, [], [], status.inference_time)
        yield time
    if status.mqtt:
        yield CounterMetricFamily("streamdet_mqtt_events_sent", "Events the MQTT broker acknowledged",
                                  value=status.mqtt["sent"])
        yield CounterMetricFamily("streamdet_mqtt_events_dropped", "Events dropped while the broker was away "
                                  "(outbox full)", value=status.mqtt["dropped"])
        yield GaugeMetricFamily("streamdet_mqtt_connected", "1 while connected to the MQTT broker",
                                value=status.mqtt["connected"])
        if "queued" in status.mqtt:
            yield GaugeMetricFamily("streamdet_mqtt_queued_messages", "Messages waiting for the MQTT broker "
                                    "(the outbox, bounded by mqtt.outbox)", value=status.mqtt["queued"])


def _web(s: Scrape) -> Iterator[Metric]:
    viewers = GaugeMetricFamily("streamdet_web_viewers", "MJPEG streams open now", labels=["source"])
    for source, n in zip(s.status.sources, s.web.viewers):
        viewers.add_metric([source.name], n)
    yield viewers
    yield GaugeMetricFamily("streamdet_web_connections", "Open connections to the web view",
                            value=s.web.connections)
    yield CounterMetricFamily("streamdet_web_refused", "Requests and connections refused as busy",
                              value=s.web.refused)
    yield CounterMetricFamily("streamdet_web_viewers_dropped", "Viewers dropped for taking no frame in time "
                              "(web.client_timeout)", value=s.web.dropped_stalled)


def _shown(device: str) -> str:
    """A device, or a server's 'server grpc://host:port', with any credentials in an address masked."""
    return " ".join(mask_url(part) if "://" in part else part for part in device.split(" "))


class MetricsPage:
    """The text of /metrics: one private registry holding the run's collector."""

    def __init__(self, scrape: Callable[[], Scrape]):
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(RunCollector(scrape))

    def text(self) -> bytes:
        """Reads the run's status under its locks: called off the event loop."""
        return generate_latest(self._registry)
