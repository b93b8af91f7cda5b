"""How closely a changed model (INT8, or the same model in bf16 or f16) follows its reference: same
detections, and how fast. `streamdet model quantize` and `streamdet model check` both measure with `measure`.

The reference model's detections stand in for ground truth: a detection of
the changed model is right when it overlaps one of the reference's of the
same class. Counts are summed over all frames before precision and recall
are taken, so frames where neither model finds anything weigh nothing
rather than counting as perfect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..detections import Detections
from .detector import Detector, raw_run
from ..detections import greedy_match, iou

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    matched: int      # found by both (same class, IoU >= MATCH_IOU)
    extra: int        # found by the changed model only
    missed: int       # found by the reference only
    frames: int

    @property
    def nothing_found(self) -> bool:
        """Neither model found anything: the figures below are 1.0, but say nothing."""
        return self.matched + self.extra + self.missed == 0

    @property
    def precision(self) -> float:
        return self.matched / (self.matched + self.extra) if self.matched + self.extra else 1.0

    @property
    def recall(self) -> float:
        return self.matched / (self.matched + self.missed) if self.matched + self.missed else 1.0

    @property
    def f1(self) -> float:
        found = 2 * self.matched + self.extra + self.missed
        return 2 * self.matched / found if found else 1.0

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(self.matched + other.matched, self.extra + other.extra, self.missed + other.missed,
                         self.frames + other.frames)

    def format(self, changed: str = "INT8", reference: str = "original") -> str:
        return (f"F1 {self.f1:.3f} (precision {self.precision:.3f}, recall {self.recall:.3f}; "
                f"{self.matched} boxes in both, {self.extra} {changed} only, {self.missed} {reference} only) "
                f"on {self.frames} frames")


def match(reference: Detections, changed: Detections, min_iou: float = MATCH_IOU) -> Agreement:
    """One frame: the changed model's boxes paired greedily, best overlap first, with the reference's
    of the same class at IoU >= min_iou."""
    overlap = iou(reference.xyxy, changed.xyxy) * (reference.class_ids[:, None] == changed.class_ids[None, :])
    pairs = len(greedy_match(overlap, min_iou))
    return Agreement(pairs, len(changed) - pairs, len(reference) - pairs, 1)


def compare(reference: Detector, changed: Detector, frames: Sequence[np.ndarray]) -> Agreement:
    """Both detectors on every frame (each keeping its own threshold and classes), summed."""
    total = Agreement(0, 0, 0, 0)
    for image in frames:
        total += match(reference.detect(image), changed.detect(image))
    return total


@dataclass(frozen=True)
class Throughput:
    reference_fps: float
    changed_fps: float
    seconds: float    # measured per model

    @property
    def ratio(self) -> float:
        return self.changed_fps / self.reference_fps


def throughput(reference: Detector, changed: Detector, image: np.ndarray, seconds: float = 3.0,
               rounds: int = 3) -> Throughput:
    """Raw inference FPS of both on one frame, `seconds` each in `rounds` interleaved turns, so load
    that drifts on a shared machine hits both alike."""
    frames = {id(reference): 0, id(changed): 0}
    spent = {id(reference): 0.0, id(changed): 0.0}
    tensors = {id(d): d.infer_input(image) for d in (reference, changed)}  # held until the runs end
    for _ in range(rounds):
        for detector in (reference, changed):
            done, took = raw_run(detector, tensors[id(detector)], seconds=seconds / rounds)
            frames[id(detector)] += done
            spent[id(detector)] += took
    return Throughput(frames[id(reference)] / spent[id(reference)], frames[id(changed)] / spent[id(changed)],
                      seconds)


@dataclass(frozen=True)
class Comparison:
    checked: list[tuple[str, Agreement]]  # per file or folder of the footage, as the user named it
    speed: Throughput | None              # None when not measured

    @property
    def agreement(self) -> Agreement:
        total = Agreement(0, 0, 0, 0)
        for _, part in self.checked:
            total += part
        return total

    def lines(self, changed: str, reference: str, hint: str) -> list[str]:
        """The figures as `model check` and `model quantize` print them: in all, per file or folder, a warning
        (ending in `hint`) when neither model found anything, and the throughput of both."""
        a = self.agreement
        lines = [f"    all:  {a.format(changed, reference)}"]
        if len(self.checked) > 1:
            lines += [f"    {name}: {part.format(changed, reference)}" for name, part in self.checked]
        if a.nothing_found:
            lines.append(f"    warning: neither model found anything in these frames; the agreement proves nothing. {hint}")
        if self.speed is not None:
            s = self.speed
            lines.append(f"  throughput (raw async inference, THROUGHPUT hint, {s.seconds:g} s each, interleaved): "
                         f"{reference} {s.reference_fps:.1f} FPS, {changed} {s.changed_fps:.1f} FPS, "
                         f"{changed}/{reference} {s.ratio:.2f}x")
        return lines


def measure(reference: Detector, changed: Detector, frames: Sequence[np.ndarray], groups: Sequence[str],
            bench_seconds: float) -> Comparison:
    """Agreement per group (`groups[i]` names where `frames[i]` came from) and, unless `bench_seconds`
    is 0, raw throughput of both on the first frame."""
    checked = []
    for group in dict.fromkeys(groups):
        mine = [frame for frame, owner in zip(frames, groups) if owner == group]
        checked.append((group, compare(reference, changed, mine)))
    speed = throughput(reference, changed, frames[0], bench_seconds) if bench_seconds > 0 else None
    return Comparison(checked, speed)
