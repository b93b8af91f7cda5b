"""`streamdet bench --cameras max --ladder`: the cameras a machine keeps up with, one setting after another.

The settings, each a rung on the last: every frame inferred; `detect.fps` N; N with the motion gate; N with
the motion gate, detected on the sub-stream (`--sub-url`, where given). Each is searched (or tried at
`--cameras N`) as streamdet.bench.capacity does, recorded as asked (`--record copy` for the table in
docs/performance.md), with the model loaded once. Printed: each search's own table, then one line per
setting: the count, and at that count the CPU, the worst camera's drops and frame age, the share inferred,
and what one more camera did.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from .capacity import CapacityResult, prepared, run_capacity
from ..config.sections import DEFAULT_PRECISION
from ..model.detector import Detector


@dataclass
class Rung:
    setting: str
    result: CapacityResult


@dataclass
class LadderResult:
    rungs: list[Rung]

    def to_json(self) -> str:
        return json.dumps([{"setting": r.setting, "most_cameras": r.result.most_cameras, **asdict(r.result)}
                           for r in self.rungs], indent=2)

    def format(self) -> str:
        lines = [r.result.format() + "\n" for r in self.rungs]
        lines += ["cameras kept up with (drops under 5 % on every camera), setting by setting:",
                  f"  {'setting':<28} {'cameras':>7}  at that count: CPU, worst drops, age p95, inferred  |  one more"]
        for rung in self.rungs:
            result = rung.result
            best = next((t for t in result.trials if t.cameras == result.most_cameras and t.kept_up), None)
            more = next((t for t in result.trials if t.cameras == result.most_cameras + 1), None)
            at = (f"{best.cpu_utilisation:.0%}, {best.worst_drop:.1%}, "
                  f"{max(c.age_p95_ms for c in best.per_camera):.0f} ms, "
                  f"{statistics.mean(c.inferred for c in best.per_camera):.0%}") if best else "-"
            beyond = (f"{more.cameras}: {more.worst_drop:.1%} dropped, {more.cpu_utilisation:.0%} CPU"
                      if more else "-")
            lines.append(f"  {rung.setting:<28} {result.most_cameras:>7}  {at:<47} |  {beyond}")
        return "\n".join(lines)


def run_ladder(detector: Detector, model: str, clip: Path | None, cameras: int | None, seconds: float, machine: str,
               *, url: str | None, record: str, folder: str, detect_fps: float, sub_url: str | None) -> LadderResult:
    """Each setting in turn: every frame, `detect_fps`, with the motion gate, and on `sub_url` where given."""
    settings = [("every frame", 0.0, False, None), (f"detect.fps {detect_fps:g}", detect_fps, False, None),
                (f"detect.fps {detect_fps:g} + motion gate", detect_fps, True, None)]
    if sub_url:
        settings.append((f"detect.fps {detect_fps:g} + motion + sub", detect_fps, True, sub_url))
    rungs = []
    for name, fps, motion, sub in settings:
        rungs.append(Rung(name, run_capacity(detector, model, clip, cameras, seconds, motion, machine, url=url,
                                             record=record, folder=folder, detect_fps=fps, sub_url=sub)))
    return LadderResult(rungs)


def run_ladder_cameras(model: str, clip: Path | None, cameras: int | None, *, seconds: float = 20.0,
                       still_share: float | None = None, device: str = "CPU", cache_dir: str | None = None,
                       precision: str = DEFAULT_PRECISION, url: str | None = None, record: str = "none",
                       detect_fps: float = 5.0, sub_url: str | None = None) -> LadderResult:
    """`bench --cameras ... --ladder`: every setting, with the model loaded once for them all."""
    with prepared(model, clip, still_share, device, cache_dir, precision) as (detector, machine, footage, tmp):
        return run_ladder(detector, str(model), footage, cameras, seconds, machine, url=url, record=record,
                          folder=tmp, detect_fps=detect_fps, sub_url=sub_url)
