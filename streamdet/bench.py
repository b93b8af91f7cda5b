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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from .config import Config
from .errors import SourceError
from .model import Detector, load
from .pipeline import Pipeline
from .sources import Frame, Source, SourceInfo, VideoFileSource


class _Repeated(Source):
    """A clip played over and over until `total` frames have been read."""

    def __init__(self, path: Path, total: int, decode_threads: int = 0):
        self._inner = VideoFileSource(path, loop=True, decode_threads=decode_threads)
        self.name = self._inner.name
        self.total = total
        self._read = 0

    def open(self) -> SourceInfo:
        info = self._inner.open()
        return SourceInfo(info.width, info.height, info.fps, self.total, live=False)

    def read(self) -> Frame | None:
        if self._read >= self.total:
            return None
        self._read += 1
        return self._inner.read()

    def close(self) -> None:
        self._inner.close()


@dataclass
class BenchResult:
    machine: str
    model: str
    clip: str
    frames: int
    rounds: int
    fps: dict[str, float]              # median over rounds
    ratio_to_raw: dict[str, float]     # pipeline variants / raw THROUGHPUT, median of per-round ratios
    single_request_latency_ms: float
    live_age_p50_ms: float
    live_age_p95_ms: float
    live_age_p50_x_latency: float
    live_age_p95_x_latency: float
    cpu_ms_per_frame: dict[str, dict[str, float]]
    cpu_utilisation: dict[str, float]
    rss_growth: float                  # between the 2nd and the last 100 frames of a headless run
    per_round: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def format(self) -> str:
        lines = [
            f"streamdet bench: {self.model} on {self.clip}, {self.frames} frames x {self.rounds} rounds, {self.machine}",
            f"  {'variant':<22}{'FPS':>9}{'x raw':>8}",
        ]
        for name, fps in self.fps.items():
            ratio = self.ratio_to_raw.get(name)
            lines.append(f"  {name:<22}{fps:>9.1f}{(f'{ratio:.2f}' if ratio is not None else ''):>8}")
        lines.append(
            f"  live (newest frame): frame age p50 {self.live_age_p50_ms:.1f} ms = {self.live_age_p50_x_latency:.2f} x, "
            f"p95 {self.live_age_p95_ms:.1f} ms = {self.live_age_p95_x_latency:.2f} x "
            f"the single-request latency {self.single_request_latency_ms:.1f} ms"
        )
        lines.append("  CPU ms per frame (and CPU use of all cores):")
        for name, stages in self.cpu_ms_per_frame.items():
            parts = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
            lines.append(f"    {name:<20} {parts} ({self.cpu_utilisation[name]:.0%})")
        lines.append(f"  RSS growth between frame 200 and the end of the headless run: {self.rss_growth:+.1%}")
        return "\n".join(lines)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _first_frame(clip: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(clip))
    ok, image = cap.read()
    cap.release()
    if not ok:
        raise SourceError(f"bench clip '{clip}': no frame could be decoded")
    return image


def raw_fps(detector: Detector, image: np.ndarray, frames: int, nireq: int | None = None) -> float:
    """What benchmark_app measures: a tight async loop on one pre-made input."""
    queue = ov.AsyncInferQueue(detector.compiled, nireq or detector.optimal_nireq)
    tensor = detector.infer_input(image)
    for _ in range(queue.__len__() * 2):  # warm-up
        queue.start_async(tensor)
    queue.wait_all()
    t0 = time.perf_counter()
    for _ in range(frames):
        queue.start_async(tensor)
    queue.wait_all()
    return frames / (time.perf_counter() - t0)


def single_request_latency_ms(detector: Detector, image: np.ndarray, runs: int = 50) -> float:
    request = detector.compiled.create_infer_request()
    tensor = detector.infer_input(image)
    for _ in range(5):
        request.infer(tensor)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        request.infer(tensor)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _pipeline_run(detector: Detector, clip: Path, frames: int, *, video: str | None = None,
                  json_path: str | None = None, policy: str = "all", rss: list[int] | None = None):
    config = Config()
    config.display.show = "no"
    config.logging.quiet = True
    config.logging.status_interval = 0
    config.source.policy = policy
    config.output.video = video
    config.output.json = json_path
    callback = None
    if rss is not None:
        def callback(result, rss=rss):
            if result.frame.index in (199, frames - 1):
                rss.append(_rss_bytes())
    with Pipeline(config, detector=detector, sources=[_Repeated(clip, frames)]) as pipeline:
        return pipeline.run(on_result=callback)


def run_bench(model: str, clip: Path, *, frames: int = 1000, rounds: int = 3, device: str = "CPU",
              cache_dir: str | None = None) -> BenchResult:
    clip = Path(clip)
    image = _first_frame(clip)
    throughput = load(model, device, hint="THROUGHPUT", cache_dir=cache_dir, threshold=0.5)
    latency = load(model, device, hint="LATENCY", cache_dir=cache_dir, threshold=0.5)
    per_round: list[dict[str, float]] = []
    cpu: dict[str, dict[str, float]] = {}
    util: dict[str, float] = {}
    ages: list[tuple[float, float]] = []
    latencies: list[float] = []
    rss: list[int] = []
    with tempfile.TemporaryDirectory(prefix="streamdet-bench-") as tmp:
        for _ in range(rounds):
            figures: dict[str, float] = {}
            figures["raw THROUGHPUT"] = raw_fps(throughput, image, frames)
            figures["raw LATENCY"] = raw_fps(latency, image, frames)
            variants = {
                "pipeline headless": {},
                "pipeline + mp4": {"video": os.path.join(tmp, "bench.mp4")},
                "pipeline + jsonl": {"json_path": os.path.join(tmp, "bench.jsonl")},
            }
            for name, kwargs in variants.items():
                summary = _pipeline_run(throughput, clip, frames, rss=rss if name == "pipeline headless" else None, **kwargs)
                figures[name] = summary.fps
                cpu[name] = summary.cpu_ms_per_frame
                util[name] = summary.cpu_utilisation
            latencies.append(single_request_latency_ms(latency, image))
            live = _pipeline_run(latency, clip, frames, policy="newest")
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
    lat = statistics.median(latencies)
    p50 = statistics.median(a[0] for a in ages)
    p95 = statistics.median(a[1] for a in ages)
    growth = (rss[-1] - rss[-2]) / rss[-2] if len(rss) >= 2 else 0.0
    core = ov.Core()
    return BenchResult(
        machine=f"{core.get_property('CPU', 'FULL_DEVICE_NAME')}, {os.cpu_count()} cores",
        model=str(model),
        clip=clip.name,
        frames=frames,
        rounds=rounds,
        fps=fps,
        ratio_to_raw=ratios,
        single_request_latency_ms=lat,
        live_age_p50_ms=p50,
        live_age_p95_ms=p95,
        live_age_p50_x_latency=p50 / lat,
        live_age_p95_x_latency=p95 / lat,
        cpu_ms_per_frame=cpu,
        cpu_utilisation=util,
        rss_growth=growth,
        per_round=per_round,
    )
