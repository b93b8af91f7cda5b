"""`streamdet bench`: the pipeline measured against raw OpenVINO, side by side.

Bare times mean little on a shared machine, so every figure that matters is a
ratio against the raw inference loop measured in the same run, and the
variants are interleaved round by round so drifting load hits all of them.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..config.sections import DEFAULT_PRECISION, RecordingConfig
from ..config.web import WebConfig
from ..model.detector import load
from ..outputs.video import Encoder
from .common import cpu_ms_per_frame, decode_clip, machine_of, pipeline_run, raw_fps, single_request_latency_ms
from .inputs import Memory, Repeated


@dataclass
class BenchResult:
    machine: str
    model: str
    clip: str
    frames: int
    rounds: int
    fps: dict[str, float]              # median over rounds
    ratio_to_raw: dict[str, float]     # pipeline variants / raw THROUGHPUT, median of per-round ratios
    web_ratio: dict[str, float]        # web view variants / pipeline headless, median of per-round ratios
    single_request_latency_ms: float
    live_source_fps: float
    live_age_p50_ms: float
    live_age_p95_ms: float
    live_age_p50_x_latency: float
    live_age_p95_x_latency: float
    cpu_ms_per_frame: dict[str, dict[str, float]]
    cpu_utilisation: dict[str, float]
    cost_ms: dict[str, float]          # CPU ms per frame, all cores, each measured alone: inference, decode, encoders
    ceiling: dict[str, float]          # best ratio to raw possible here if the pipeline cost nothing else
    rss_growth: float                  # between the 2nd and the last 100 frames of a headless run
    per_round: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def format(self) -> str:
        lines = [
            f"streamdet bench: {self.model} on {self.clip}, {self.frames} frames x {self.rounds} rounds, {self.machine}",
            f"  {'variant':<30}{'FPS':>9}{'x raw':>8}",
        ]
        for name, fps in self.fps.items():
            ratio = self.ratio_to_raw.get(name)
            lines.append(f"  {name:<30}{fps:>9.1f}{(f'{ratio:.2f}' if ratio is not None else ''):>8}")
        lines.append("  web view (10 pictures a second to each viewer) vs pipeline headless: " + ", ".join(
            f"{name.removeprefix('pipeline + web, ')} {ratio:.2f} x" for name, ratio in self.web_ratio.items()))
        lines.append(
            f"  live (newest frame, a {self.live_source_fps:.0f} fps camera): frame age p50 {self.live_age_p50_ms:.1f} ms = {self.live_age_p50_x_latency:.2f} x, "
            f"p95 {self.live_age_p95_ms:.1f} ms = {self.live_age_p95_x_latency:.2f} x "
            f"the single-request latency {self.single_request_latency_ms:.1f} ms"
        )
        lines.append("  CPU ms per frame (and CPU use of all cores):")
        for name, stages in self.cpu_ms_per_frame.items():
            parts = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
            lines.append(f"    {name:<28} {parts} ({self.cpu_utilisation[name]:.0%})")
        cost = self.cost_ms
        lines.append(
            f"  CPU ms per frame, each measured alone: inference {cost['inference']:.2f} (raw THROUGHPUT), "
            f"decode {cost['decode']:.2f}, "
            + ", ".join(f"{k} {v:.2f}" for k, v in cost.items() if k.startswith("encode"))
            + f"; one web view JPEG {cost['web jpeg']:.2f}; motion check {cost['motion check']:.2f}"
        )
        lines.append(
            "  ceiling here with no other pipeline cost: "
            + ", ".join(f"{name} {value:.2f} x raw" for name, value in self.ceiling.items())
        )
        lines.append(f"  RSS growth between frame 200 and the end of the headless run: {self.rss_growth:+.1%}")
        return "\n".join(lines)


def _decode_cost_ms(clip: Path, frames: int) -> float:
    def work():
        source = Repeated(clip, frames)
        source.open()
        while source.read() is not None:
            pass
        source.close()
    return cpu_ms_per_frame(work, frames)[1]


def _encode_cost_ms(images: list[np.ndarray], path: str, settings: RecordingConfig) -> float:
    """CPU per frame of the recording's encoder alone, all its threads, as the pipeline runs it."""
    def work() -> None:
        encoder = Encoder(Path(path), images[0].shape[1::-1], 25.0, settings)
        for i, image in enumerate(images):
            encoder.add(image, i * 40)
        encoder.close()

    return cpu_ms_per_frame(work, len(images))[1]


def _jpeg_cost_ms(images: list[np.ndarray], web: WebConfig) -> float:
    """CPU per picture the web view sends: scaled to web.max_width and encoded once for all viewers."""
    def work() -> None:
        for image in images:
            height, width = image.shape[:2]
            if width > web.max_width:
                image = cv2.resize(image, (web.max_width, round(height * web.max_width / width)),
                                   interpolation=cv2.INTER_AREA)
            cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, web.quality])

    return cpu_ms_per_frame(work, len(images))[1]


def _motion_cost_ms(images: list[np.ndarray]) -> float:
    """CPU per frame of the motion gate's check (streamdet.motion), on frames of the clip in order."""
    from ..motion import MotionDetector

    height, width = images[0].shape[:2]
    detector = MotionDetector(width, height, 25)
    return cpu_ms_per_frame(lambda: [detector(image, k * 0.04) for k, image in enumerate(images)], len(images))[1]


def run_bench(model: str, clip: Path, *, frames: int = 1000, rounds: int = 3, device: str = "CPU",
              cache_dir: str | None = None, precision: str = DEFAULT_PRECISION) -> BenchResult:
    clip = Path(clip)
    # 100 frames of 720p are 280 MB: enough variety for the camera, little memory.
    camera_frames = decode_clip(clip, 100)
    image = camera_frames[0]
    throughput = load(model, device, hint="THROUGHPUT", cache_dir=cache_dir, threshold=0.5, precision=precision)
    latency = load(model, device, hint="LATENCY", cache_dir=cache_dir, threshold=0.5, precision=precision)
    per_round: list[dict[str, float]] = []
    cpu: dict[str, dict[str, float]] = {}
    util: dict[str, float] = {}
    ages: list[tuple[float, float]] = []
    latencies: list[float] = []
    rss: list[int] = []
    costs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="streamdet-bench-") as tmp:
        for _ in range(rounds):
            figures: dict[str, float] = {}
            cost: dict[str, float] = {}
            figures["raw THROUGHPUT"], cost["inference"] = cpu_ms_per_frame(
                lambda: raw_fps(throughput, image, frames), frames)
            figures["raw LATENCY"] = raw_fps(latency, image, frames)
            cost["decode"] = _decode_cost_ms(clip, frames)
            for codec in ("h264", "mp4v"):
                cost[f"encode {codec}"] = _encode_cost_ms(camera_frames, os.path.join(tmp, f"encode-{codec}.mp4"),
                                                          RecordingConfig(codec=codec))
            cost["web jpeg"] = _jpeg_cost_ms(camera_frames, WebConfig())
            cost["motion check"] = _motion_cost_ms(camera_frames)
            costs.append(cost)
            # The web view's variants next to the headless run they are compared with, so drifting load
            # between runs (tenths on a shared machine) does not pass for their cost.
            variants = {
                "pipeline headless": ({}, lambda: Repeated(clip, frames)),
                "pipeline + web, no viewer": ({"viewers": 0}, lambda: Repeated(clip, frames)),
                "pipeline + web, 1 viewer": ({"viewers": 1}, lambda: Repeated(clip, frames)),
                "pipeline + web, 10 viewers": ({"viewers": 10}, lambda: Repeated(clip, frames)),
                "pipeline + mp4": ({"video": os.path.join(tmp, "bench.mp4")}, lambda: Repeated(clip, frames)),
                "pipeline + jsonl": ({"json_path": os.path.join(tmp, "bench.jsonl")}, lambda: Repeated(clip, frames)),
                "pipeline headless, no decode": ({}, lambda: Memory(camera_frames, frames)),
            }
            for name, (kwargs, source) in variants.items():
                summary = pipeline_run(throughput, source(), frames, rss=rss if name == "pipeline headless" else None, **kwargs)
                figures[name] = summary.fps
                cpu[name] = summary.cpu_ms_per_frame
                util[name] = summary.cpu_utilisation
            latencies.append(single_request_latency_ms(latency, image))
            camera_fps = 2 * figures["raw LATENCY"]
            live = pipeline_run(latency, Memory(camera_frames, frames, camera_fps), frames, policy="newest")
            age = live.sources[0].frame_age
            ages.append((age.p50_ms, age.p95_ms))
            figures["live newest-frame"] = live.fps
            cpu["live newest-frame"] = live.cpu_ms_per_frame
            util["live newest-frame"] = live.cpu_utilisation
            per_round.append(figures)
    names = list(per_round[0])
    fps = {n: statistics.median(r[n] for r in per_round) for n in names}
    ratios = {
        n: statistics.median(r[n] / r["raw THROUGHPUT"] for r in per_round)
        for n in names
        if n.startswith("pipeline")
    }
    web_ratio = {
        n: statistics.median(r[n] / r["pipeline headless"] for r in per_round)
        for n in names
        if n.startswith("pipeline + web")
    }
    lat = statistics.median(latencies)
    p50 = statistics.median(a[0] for a in ages)
    p95 = statistics.median(a[1] for a in ages)
    growth = (rss[-1] - rss[-2]) / rss[-2] if len(rss) >= 2 else 0.0
    cost_ms = {k: statistics.median(c[k] for c in costs) for k in costs[0]}
    inference, decode, encode = cost_ms["inference"], cost_ms["decode"], cost_ms[f"encode {RecordingConfig().codec}"]
    return BenchResult(
        machine=machine_of(throughput),
        model=str(model),
        clip=clip.name,
        frames=frames,
        rounds=rounds,
        fps=fps,
        ratio_to_raw=ratios,
        web_ratio=web_ratio,
        single_request_latency_ms=lat,
        live_source_fps=camera_fps,
        live_age_p50_ms=p50,
        live_age_p95_ms=p95,
        live_age_p50_x_latency=p50 / lat,
        live_age_p95_x_latency=p95 / lat,
        cpu_ms_per_frame=cpu,
        cpu_utilisation=util,
        cost_ms=cost_ms,
        ceiling={
            "headless": inference / (inference + decode),
            "+ mp4": inference / (inference + decode + encode),
        },
        rss_growth=growth,
        per_round=per_round,
    )
