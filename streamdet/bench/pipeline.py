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
from typing import Any

import cv2
import numpy as np
import openvino as ov

from ..config.sections import DEFAULT_PRECISION, Config, InferenceConfig, RecordingConfig, WebConfig
from ..errors import SourceError
from ..model.detector import Detector, load
from ..outputs.video import Encoder
from ..pipeline import Pipeline
from ..sources import Source
from .inputs import Memory, Repeated, Viewers
from ..stats import process_cpu_s


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


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _decode(clip: Path, limit: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < limit:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    if not frames:
        raise SourceError(f"bench clip '{clip}': no frame could be decoded")
    return frames


def _cpu_ms_per_frame(work, frames: int) -> tuple[Any, float]:
    """What `work()` returns, and its process CPU time per frame, all threads (FFmpeg's and OpenVINO's too)."""
    c0 = process_cpu_s()
    result = work()
    return result, (process_cpu_s() - c0) * 1000 / frames


def _decode_cost_ms(clip: Path, frames: int) -> float:
    def work():
        source = Repeated(clip, frames)
        source.open()
        while source.read() is not None:
            pass
        source.close()
    return _cpu_ms_per_frame(work, frames)[1]


def _encode_cost_ms(images: list[np.ndarray], path: str, settings: RecordingConfig) -> float:
    """CPU per frame of the recording's encoder alone, all its threads, as the pipeline runs it."""
    height, width = images[0].shape[:2]

    def work() -> None:
        encoder = Encoder(Path(path), (width - width % 2, height - height % 2), 25.0, settings)
        for i, image in enumerate(images):
            encoder.add(image[: height - height % 2, : width - width % 2], i * 40)
        encoder.close()

    return _cpu_ms_per_frame(work, len(images))[1]


def _jpeg_cost_ms(images: list[np.ndarray], web: WebConfig) -> float:
    """CPU per picture the web view sends: scaled to web.max_width and encoded once for all viewers."""
    def work() -> None:
        for image in images:
            height, width = image.shape[:2]
            if width > web.max_width:
                image = cv2.resize(image, (web.max_width, round(height * web.max_width / width)),
                                   interpolation=cv2.INTER_AREA)
            cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, web.quality])

    return _cpu_ms_per_frame(work, len(images))[1]


def _motion_cost_ms(images: list[np.ndarray]) -> float:
    """CPU per frame of the motion gate's check (streamdet.motion), on frames of the clip in order."""
    from ..motion import MotionDetector

    height, width = images[0].shape[:2]
    detector = MotionDetector(width, height, 25)
    return _cpu_ms_per_frame(lambda: [detector(image, k * 0.04) for k, image in enumerate(images)], len(images))[1]


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


def headless_config(policy: str) -> Config:
    """A run as every bench variant measures it: no window, no status lines, no progress bar."""
    config = Config()
    config.display.show = "no"
    config.logging.quiet = True
    config.logging.status_interval = 0
    config.source.policy = policy
    return config


def _pipeline_run(detector: Detector | None, source: Source, frames: int, *, video: str | None = None,
                  json_path: str | None = None, policy: str = "all", rss: list[int] | None = None,
                  viewers: int | None = None, inference: InferenceConfig | None = None):
    """One run; with `viewers`, the web view is on (port chosen by the system) and that many watch it;
    with `inference` (and no detector), its settings choose where frames are inferred (a server)."""
    config = headless_config(policy)
    if inference is not None:
        config.inference = inference
    config.output.video = video
    config.output.json = json_path
    config.output.overwrite = True  # every round writes the same scratch files
    if viewers is not None:
        config.web.listen = "127.0.0.1:0"

    def sample_rss(result) -> None:
        if rss is not None and result.frame.index in (199, frames - 1):
            rss.append(_rss_bytes())

    with Pipeline(config, detector=detector, sources=[source]) as pipeline:
        watching = Viewers(pipeline.web_url, f"/stream/{source.name}.mjpg", viewers) if viewers else None
        try:
            return pipeline.run(on_result=sample_rss)
        finally:
            if watching is not None:
                watching.close()


def machine_of(detector: Detector) -> str:
    """The machine and how the model runs on it, for every bench's heading: figures mean little without both."""
    return (f"{ov.Core().get_property('CPU', 'FULL_DEVICE_NAME')}, {os.cpu_count()} cores, inference on "
            f"{', '.join(detector.devices)} in {detector.precision}")


def run_bench(model: str, clip: Path, *, frames: int = 1000, rounds: int = 3, device: str = "CPU",
              cache_dir: str | None = None, precision: str = DEFAULT_PRECISION) -> BenchResult:
    clip = Path(clip)
    # 100 frames of 720p are 280 MB: enough variety for the camera, little memory.
    camera_frames = _decode(clip, 100)
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
            figures["raw THROUGHPUT"], cost["inference"] = _cpu_ms_per_frame(
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
                summary = _pipeline_run(throughput, source(), frames, rss=rss if name == "pipeline headless" else None, **kwargs)
                figures[name] = summary.fps
                cpu[name] = summary.cpu_ms_per_frame
                util[name] = summary.cpu_utilisation
            latencies.append(single_request_latency_ms(latency, image))
            camera_fps = 2 * figures["raw LATENCY"]
            live = _pipeline_run(latency, Memory(camera_frames, frames, camera_fps), frames, policy="newest")
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


def run_cameras(model: str, clip: Path, cameras: int | None, *, seconds: float = 20.0, motion: bool = False,
                still_share: float | None = None, device: str = "CPU", cache_dir: str | None = None,
                precision: str = DEFAULT_PRECISION):
    """`bench --cameras`: the capacity run (streamdet.capacity), with the model loaded once for every trial."""
    from .capacity import mostly_still, run_capacity

    detector = load(model, device, hint="THROUGHPUT", cache_dir=cache_dir, threshold=0.5, precision=precision)
    machine = machine_of(detector)
    with tempfile.TemporaryDirectory(prefix="streamdet-capacity-") as tmp:
        footage = mostly_still(clip, Path(tmp) / f"{clip.stem}-still.mp4", still_share) if still_share else clip
        result = run_capacity(detector, str(model), footage, cameras, seconds, motion, machine)
    return result
