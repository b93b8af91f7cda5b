"""`streamdet bench --server`: inference on a KServe v2 server against local inference, side by side.

Like the local bench, variants are interleaved round by round and reported
as medians, with ratios of remote to local from the same round. On a server
on this machine both compete for the same cores: the figures then say what
the protocol and the round trip cost, not what a separate server would add.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .common import decode_clip, machine_of, pipeline_run, raw_fps, single_request_latency_ms
from .inputs import Repeated
from ..config.sections import DEFAULT_PRECISION, Config, InferenceConfig
from ..engines.backend import open_backend
from ..engines.base import Completed, Job
from ..model.labels import load_labels
from ..model.readout import DetectFilter
from ..model.detector import load
from ..sources import Frame
from ..urls import mask_url

_EVERY_CLASS = DetectFilter(0.5, np.array([], np.int32))  # what a run with the default settings keeps


@dataclass
class RemoteBenchResult:
    machine: str                           # this machine, and how local inference runs on it
    server: str
    model: str
    clip: str
    frames: int
    rounds: int
    nireq: int
    fps: dict[str, float]                  # median over rounds
    remote_to_local: dict[str, float]      # remote / local of the same kind, median of per-round ratios
    latency_ms: dict[str, float]           # single request (median) and the pipeline's mean frame latency
    per_round: list[dict[str, float]]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def format(self) -> str:
        lines = [f"streamdet bench: {self.model} here against {self.server} (nireq {self.nireq}), on {self.clip}, "
                 f"{self.frames} frames x {self.rounds} rounds, {self.machine}",
                 f"  {'variant':<26}{'FPS':>9}{'remote/local':>14}"]
        for name, fps in self.fps.items():
            kind = name.split(" ", 1)[1]
            ratio = self.remote_to_local.get(kind) if name.startswith("remote") else None
            lines.append(f"  {name:<26}{fps:>9.1f}{(f'{ratio:.2f}' if ratio is not None else ''):>14}")
        lines.append("  latency ms: " + ", ".join(f"{k} {v:.1f}" for k, v in self.latency_ms.items()))
        return "\n".join(lines)


def _remote_raw(backend, image: np.ndarray, frames: int) -> float:
    """The engine alone in a tight loop on one frame, like raw_fps: what the server gives through the protocol."""
    done = threading.Semaphore(0)
    errors: list[BaseException] = []

    def on_done(completed: Completed) -> None:
        if completed.error is not None:
            errors.append(completed.error)
        done.release()

    engine = backend.engine(on_done)
    frame = Frame(image=image, index=0, pts_ms=None, captured=time.monotonic())

    def run(count: int) -> None:
        for seq in range(count):
            engine.wait_idle()
            engine.submit(Job(seq=seq, source_id=0, frame=frame, filter=_EVERY_CLASS))
        engine.drain()

    run(backend.nireq * 2)  # warm-up
    t0 = time.perf_counter()
    run(frames)
    elapsed = time.perf_counter() - t0
    for _ in range(frames + backend.nireq * 2):
        done.acquire()
    engine.close()
    if errors:
        raise errors[0]
    return frames / elapsed


def _remote_single_ms(inference: InferenceConfig, image: np.ndarray, runs: int = 50) -> float:
    """One request at a time: the round trip a frame waits for when nothing overlaps it."""
    backend = open_backend(Config().model, dataclasses.replace(inference, nireq=1), load_labels(None))
    answered = threading.Event()
    engine = backend.engine(lambda completed: answered.set())
    frame = Frame(image=image, index=0, pts_ms=None, captured=time.monotonic())
    times = []
    try:
        for seq in range(runs + 5):
            answered.clear()
            t0 = time.perf_counter()
            engine.submit(Job(seq=seq, source_id=0, frame=frame, filter=_EVERY_CLASS))
            answered.wait()
            if seq >= 5:
                times.append((time.perf_counter() - t0) * 1000)
    finally:
        backend.close()
    return statistics.median(times)


def run_remote_bench(model: str, clip: Path, inference: InferenceConfig, *, frames: int = 1000, rounds: int = 3,
                     device: str = "CPU", cache_dir: str | None = None,
                     precision: str = DEFAULT_PRECISION) -> RemoteBenchResult:
    clip = Path(clip)
    image = decode_clip(clip, 1)[0]
    # The server is checked before the local model is loaded: a wrong address is found at once.
    backend = open_backend(Config().model, inference, load_labels(None))
    local = load(model, device, hint="THROUGHPUT", cache_dir=cache_dir, threshold=0.5, precision=precision)
    latency = load(model, device, hint="LATENCY", cache_dir=cache_dir, threshold=0.5, precision=precision)
    per_round: list[dict[str, float]] = []
    try:
        for _ in range(rounds):
            figures: dict[str, float] = {}
            figures["local raw"] = raw_fps(local, image, frames)
            figures["remote raw"] = _remote_raw(backend, image, frames)
            here = pipeline_run(local, Repeated(clip, frames), frames)
            there = pipeline_run(None, Repeated(clip, frames), frames, inference=inference)
            figures["local pipeline"], figures["remote pipeline"] = here.fps, there.fps
            figures["local pipeline latency"] = here.sources[0].latency.mean_ms
            figures["remote pipeline latency"] = there.sources[0].latency.mean_ms
            figures["local single request"] = single_request_latency_ms(latency, image)
            figures["remote single request"] = _remote_single_ms(inference, image)
            per_round.append(figures)
    finally:
        backend.close()
    kinds = ("raw", "pipeline")
    return RemoteBenchResult(
        machine=machine_of(local),
        server=mask_url(inference.server),
        model=str(model),
        clip=clip.name,
        frames=frames,
        rounds=rounds,
        nireq=backend.nireq,
        fps={f"{where} {kind}": statistics.median(r[f"{where} {kind}"] for r in per_round)
             for kind in kinds for where in ("local", "remote")},
        remote_to_local={kind: statistics.median(r[f"remote {kind}"] / r[f"local {kind}"] for r in per_round)
                         for kind in kinds},
        latency_ms={name: statistics.median(r[name] for r in per_round)
                    for name in ("local single request", "remote single request", "local pipeline latency",
                                 "remote pipeline latency")},
        per_round=per_round,
    )

