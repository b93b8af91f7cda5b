"""A run's figures as records: stage time summaries, each source's and the run's summary, where inference
runs, and the status the web view, /metrics and the status lines show. Plain frozen data, made by
`streamdet.reports` from what `streamdet.measures.meters` measured."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

@dataclass(frozen=True)
class StageSummary:
    mean_ms: float
    p50_ms: float
    p95_ms: float
    count: int



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
    frames_inferred: int | None = None  # with the motion gate or detect.fps: frames the network looked at


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
                   "gated)" if src.frames_inferred is not None else "")
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
    frames_inferred: int = 0            # of those processed, how many the network ran on (fewer when gated)
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
