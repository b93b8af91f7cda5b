"""What the benches share: the clip's frames, the raw inference loop, one request's latency, the headless
run every variant is measured in, CPU per frame, and the heading that names the machine."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov

from ..config.sections import Config, InferenceConfig
from ..errors import SourceError
from ..model.detector import Detector, raw_run
from ..pipeline import Pipeline
from ..sources import Source
from ..measures.meters import process_cpu_s
from .inputs import Viewers


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def decode_clip(clip: Path, limit: int | None = None) -> list[np.ndarray]:
    """The clip's frames as OpenCV decodes them (the first `limit` only, when given)."""
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while limit is None or len(frames) < limit:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    if not frames:
        raise SourceError(f"clip '{clip}': no frame could be decoded")
    return frames


def cpu_ms_per_frame(work, frames: int) -> tuple[Any, float]:
    """What `work()` returns, and its process CPU time per frame, all threads (FFmpeg's and OpenVINO's too)."""
    c0 = process_cpu_s()
    result = work()
    return result, (process_cpu_s() - c0) * 1000 / frames


def raw_fps(detector: Detector, image: np.ndarray, frames: int, nireq: int | None = None) -> float:
    """What benchmark_app measures: a tight async loop on one pre-made input."""
    done, took = raw_run(detector, detector.infer_input(image), frames=frames, nireq=nireq)
    return done / took


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


def pipeline_run(detector: Detector | None, source: Source, frames: int, *, video: str | None = None,
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
            rss.append(rss_bytes())

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
