"""`streamdet bench --cameras N|max`: how many cameras this machine keeps up with.

Each simulated camera plays a real clip at its real frame rate, decoding it
as it goes (a real camera's stream must be decoded too), in a loop, each
camera starting at another point of the clip. The pipeline takes them with
the newest-frame policy, as it takes cameras. Per camera: processed fps, the
share of the camera's frames that were never processed (drop rate: replaced
in the inbox, or never decoded in time because the CPU was busy), frame age
(decoded -> written) p50/p95, and the share of frames the network looked at;
for the whole run, CPU use of all cores. `max` adds cameras one at a time
until the drop rate of any camera reaches 5%.

With `url` the cameras are real: each opens its own connection to that stream (a camera on the network,
or the test RTSP server), read as a run reads cameras. `record` adds each camera's recording: `annotated`
(the drawn frames encoded as H.264) or `copy` (the camera's own packets, which needs `url`), so the CPU
they cost shows against `none`. `detect_fps` sets every camera's `detect.fps`; `sub_url` makes each camera a
pair: detected on its own connection to that sub-stream (`detect_url`), recorded from `url` (which needs
`record` copy); streamdet.bench.ladder runs the search for each setting in turn.

`mostly_still` makes the footage of a fixed camera that mostly watches
nothing happen: each stretch of the clip is preceded by one of its pictures
held still (with sensor-like noise), for most of the time.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .common import decode_clip, headless_config, machine_of
from ..config.sections import DEFAULT_PRECISION, RecordingConfig, SourceConfig
from ..detections import FrameResult
from ..errors import StreamdetError
from ..model.detector import Detector, load
from ..outputs.video import Encoder
from ..pipeline import Pipeline
from ..sources import Frame, NetworkSource, Source, SourceInfo, VideoFileSource
from ..sources.pair import CameraPair
from ..measures.meters import process_cpu_s
from ..urls import mask_url

MAX_DROP = 0.05      # a camera that loses more than this is not kept up with
_WARM_UP_S = 3.0     # start-up (first requests, decoder pipelines filling) is left out of the figures


class PlayedCamera(Source):
    """A camera made of a clip: frames at the clip's rate from `start` on, decoded as they are due, looped."""

    def __init__(self, path: Path, name: str, start: int = 0):
        self._clip = VideoFileSource(path, SourceConfig(loop=True, decode_threads=1))
        self.name = name
        self.display_name = f"{name} ({path.name})"
        self._start = start
        self.period = 0.04
        self._t0 = 0.0
        self._index = 0
        self._stopped = threading.Event()

    def open(self) -> SourceInfo:
        info = self._clip.open()
        self.period = 1.0 / (info.fps or 25.0)
        for _ in range(self._start):  # another point of the clip for each camera
            self._clip.read()
        return SourceInfo(info.width, info.height, 1.0 / self.period, None, live=True)

    def read(self) -> Frame | None:
        if self._index == 0:
            self._t0 = time.monotonic()
        due = self._t0 + self._index * self.period
        if self._stopped.wait(max(0.0, due - time.monotonic())):
            return None
        frame = self._clip.read()
        if frame is None:
            return None
        self._index += 1
        # A camera's clock, not the file's: a looped clip's timestamps must keep going forward.
        return Frame(image=frame.image, index=self._index - 1, pts_ms=None, captured=time.monotonic())

    def stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        self._clip.close()


@dataclass
class CameraFigures:
    name: str
    fps: float                 # frames processed per second
    drop_rate: float           # share of the camera's frames (at its frame rate) never processed
    age_p50_ms: float          # decoded -> written
    age_p95_ms: float
    inferred: float            # share of processed frames that went through the network


@dataclass
class Trial:
    cameras: int
    seconds: float
    cpu_utilisation: float     # process CPU time / (wall time x cores)
    per_camera: list[CameraFigures] = field(default_factory=list)

    @property
    def worst_drop(self) -> float:
        return max(c.drop_rate for c in self.per_camera)

    @property
    def kept_up(self) -> bool:
        return self.worst_drop < MAX_DROP


@dataclass
class CapacityResult:
    machine: str
    model: str
    clip: str                  # the clip played, or the camera URL (masked)
    size: str
    camera_fps: float
    motion: bool
    record: str = "none"
    detect_fps: float = 0.0        # detect.fps of every camera (0: every frame)
    sub_stream: str | None = None  # the sub-stream each camera is detected on (masked), if any
    trials: list[Trial] = field(default_factory=list)
    searched: bool = False     # `max`: the trials went up one camera at a time

    @property
    def most_cameras(self) -> int:
        """The most cameras kept up with (drops under 5% on each)."""
        return max((t.cameras for t in self.trials if t.kept_up), default=0)

    def to_json(self) -> str:
        data = asdict(self)
        data["most_cameras"] = self.most_cameras
        for trial, raw in zip(self.trials, data["trials"]):
            raw["worst_drop"] = trial.worst_drop
            raw["kept_up"] = trial.kept_up
        return json.dumps(data, indent=2)

    def format(self) -> str:
        gate = "motion gate on" if self.motion else "motion gate off"
        rate = f"detect.fps {self.detect_fps:g}" if self.detect_fps else "every frame inferred"
        sub = f", detected on the sub-stream {self.sub_stream}" if self.sub_stream else ""
        lines = [f"streamdet bench --cameras: {self.model}, cameras of {self.size} at {self.camera_fps:.0f} fps "
                 f"{'from' if '://' in self.clip else 'playing'} {self.clip}{sub}, newest frame, {rate}, {gate}, "
                 f"recording {self.record}, {self.machine}",
                 f"  {'cameras':>7} {'fps/camera':>11} {'drops':>7} {'age p50':>8} {'age p95':>8} {'inferred':>9} {'CPU':>5}"]
        for t in self.trials:
            fps = statistics.mean(c.fps for c in t.per_camera)
            lines.append(
                f"  {t.cameras:>7} {fps:>11.1f} {t.worst_drop:>7.1%} "
                f"{max(c.age_p50_ms for c in t.per_camera):>6.0f}ms {max(c.age_p95_ms for c in t.per_camera):>6.0f}ms "
                f"{statistics.mean(c.inferred for c in t.per_camera):>9.0%} {t.cpu_utilisation:>5.0%}"
                + ("" if t.kept_up else "  <- drops over 5%"))
        if self.searched:
            lines.append(f"  most cameras kept up with (drops under {MAX_DROP:.0%} on every camera): {self.most_cameras}")
        lines.append("  (fps and drops: the mean and the worst camera; ages: the worst camera)")
        return "\n".join(lines)


def _cameras(clip: Path | None, url: str | None, cameras: int, sub_url: str | None = None) -> list[Source]:
    if url:
        sources: list[Source] = []
        for k in range(cameras):
            main = NetworkSource(url, SourceConfig())
            sources.append(CameraPair(main, NetworkSource(sub_url, SourceConfig())) if sub_url else main)
            sources[-1].name = f"cam{k + 1}"
        return sources
    cap = cv2.VideoCapture(str(clip))
    frame_count = max(1, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    cap.release()
    return [PlayedCamera(clip, f"cam{k + 1}", start=k * frame_count // cameras) for k in range(cameras)]


def run_trial(detector: Detector, clip: Path | None, cameras: int, seconds: float, motion: bool,
              url: str | None = None, record: str = "none", folder: str | None = None, detect_fps: float = 0.0,
              sub_url: str | None = None) -> Trial:
    """`cameras` cameras for `seconds` after a warm-up; the figures of the time after it."""
    sources = _cameras(clip, url, cameras, sub_url)
    config = headless_config("newest")
    config.detect.motion = motion
    config.detect.fps = detect_fps
    if record != "none":
        config.output.video = os.path.join(folder, f"{{name}}-{cameras}.mp4")
        config.output.overwrite = True
        config.recording.mode = record
    done = [0] * cameras
    inferred = [0] * cameras
    ages: list[list[float]] = [[] for _ in range(cameras)]
    window: dict[str, float] = {}

    def measure(result: FrameResult) -> None:
        now = time.monotonic()
        if "start" not in window:
            if now - window.setdefault("first", now) < _WARM_UP_S:
                return
            window["start"], window["cpu"] = now, process_cpu_s()
        if now - window["start"] >= seconds:
            if "end" not in window:
                window["end"], window["cpu_end"] = now, process_cpu_s()
                pipeline.stop("bench done")
            return
        i = result.source_id
        done[i] += 1
        inferred[i] += result.inferred
        ages[i].append((now - result.frame.captured) * 1000)

    with Pipeline(config, detector=detector, sources=sources) as pipeline:
        pipeline.run(on_result=measure)
    if "end" not in window:
        raise RuntimeError("the cameras stopped before the measurement ended")
    wall = window["end"] - window["start"]
    figures = []
    for k, source in enumerate(sources):
        expected = wall * (pipeline.lanes[k].info.fps or 25.0)
        p50, p95 = (np.percentile(ages[k], [50, 95]).tolist() if ages[k] else (0.0, 0.0))
        figures.append(CameraFigures(source.name, done[k] / wall, max(0.0, 1 - done[k] / expected), p50, p95,
                                     inferred[k] / done[k] if done[k] else 0.0))
    cpu = (window["cpu_end"] - window["cpu"]) / wall / (os.cpu_count() or 1)
    return Trial(cameras, wall, cpu, figures)


def run_capacity(detector: Detector, model: str, clip: Path | None, cameras: int | None, seconds: float,
                 motion: bool, machine: str, most: int = 32, url: str | None = None, record: str = "none",
                 folder: str | None = None, detect_fps: float = 0.0, sub_url: str | None = None) -> CapacityResult:
    """One trial of `cameras`, or with None, one camera more each trial until one is not kept up with."""
    if url:
        probe = NetworkSource(url, SourceConfig())
        with probe:
            info = probe.current
        if info is None:
            raise StreamdetError(f"bench: --url {mask_url(url)}: {probe.health().last_error}; start the camera first")
        size, fps, shown = f"{info.width}x{info.height}", info.fps or 25.0, mask_url(url)
    else:
        cap = cv2.VideoCapture(str(clip))
        size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        cap.release()
        shown = clip.name
    result = CapacityResult(machine, model, shown, size, fps, motion, record, detect_fps,
                            mask_url(sub_url) if sub_url else None, searched=cameras is None)
    for n in [cameras] if cameras else range(1, most + 1):
        trial = run_trial(detector, clip, n, seconds, motion, url, record, folder, detect_fps, sub_url)
        result.trials.append(trial)
        if not trial.kept_up and cameras is None:
            break
    return result


def mostly_still(clip: Path, out: Path, still_share: float = 0.8, moving_s: float = 2.0, cycles: int = 2) -> Path:
    """Footage of a fixed camera where little happens: per cycle, a picture of the clip held still
    (plus noise, as a camera sensor gives), then `moving_s` of the clip playing from that picture on."""
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.release()
    frames = decode_clip(clip, cycles * round(moving_s * fps))  # only what the cycles play
    moving = max(1, min(len(frames) // cycles, round(moving_s * fps)))
    held = round(moving * still_share / (1 - still_share))
    encoder = Encoder(out, frames[0].shape[1::-1], fps, RecordingConfig())
    rng = np.random.default_rng(0)
    n = 0
    for c in range(cycles):
        start = c * moving
        noise = rng.normal(0, 2.0, (8, *frames[0].shape)).astype(np.int16)  # a few noise patterns, reused
        still = frames[start].astype(np.int16)
        for k in range(held + moving):
            image = np.clip(still + noise[k % 8], 0, 255).astype(np.uint8) if k < held else frames[start + k - held]
            encoder.add(image, round(n * 1000 / fps))
            n += 1
    encoder.close()
    return out


@contextlib.contextmanager
def prepared(model: str, clip: Path | None, still_share: float | None, device: str, cache_dir: str | None,
             precision: str) -> Iterator[tuple[Detector, str, Path | None, str]]:
    """The model loaded once for every trial, the machine's name, the footage (mostly still where asked) and a
    scratch folder for recordings, removed after."""
    detector = load(model, device, hint="THROUGHPUT", cache_dir=cache_dir, threshold=0.5, precision=precision)
    with tempfile.TemporaryDirectory(prefix="streamdet-capacity-") as tmp:
        footage = mostly_still(clip, Path(tmp) / f"{clip.stem}-still.mp4", still_share) if still_share else clip
        yield detector, machine_of(detector), footage, tmp


def run_cameras(model: str, clip: Path | None, cameras: int | None, *, seconds: float = 20.0, motion: bool = False,
                still_share: float | None = None, device: str = "CPU", cache_dir: str | None = None,
                precision: str = DEFAULT_PRECISION, url: str | None = None, record: str = "none",
                detect_fps: float = 0.0, sub_url: str | None = None) -> CapacityResult:
    """`bench --cameras`: the capacity run, with the model loaded once for every trial."""
    with prepared(model, clip, still_share, device, cache_dir, precision) as (detector, machine, footage, tmp):
        return run_capacity(detector, str(model), footage, cameras, seconds, motion, machine, url=url,
                            record=record, folder=tmp, detect_fps=detect_fps, sub_url=sub_url)
