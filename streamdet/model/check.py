"""`streamdet model check`: how a variant (bf16, f16, INT8, another IR) detects next to the f32 reference,
on the user's own footage, and how fast.

The reference is the model itself, or `--against` another IR, always inferred in f32; the variant is the
model in `--precision`. Both load through `model.load`, with the preprocessing and readout every run uses,
and are compared with `agreement.measure`, as `streamdet model quantize` compares INT8 with its original.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .agreement import MATCH_IOU, Comparison, measure
from .calibration import list_footage, read_frames, spread
from ..config.sections import DEFAULT_PRECISION, PRECISION_NAMES
from ..errors import ConfigError, StreamdetError
from .detector import fit_input, load
from .ir import display_name

log = logging.getLogger("streamdet.check")

REFERENCE_PRECISION = "f32"


@dataclass(frozen=True)
class CheckJob:
    """What `streamdet model check` was asked to do."""

    model: str
    footage: tuple[str, ...]
    precision: str = DEFAULT_PRECISION
    against: str | None = None
    frames: int = 200
    threshold: float = 0.5
    bench_seconds: float = 3.0
    device: str = "CPU"
    cache_dir: str | None = None


@dataclass(frozen=True)
class CheckResult:
    variant: str       # "model.xml in bf16"
    reference: str     # "model.xml in f32"
    footage: str
    threshold: float
    comparison: Comparison

    def format(self) -> str:
        changed, reference = self.variant.rsplit(" in ", 1)[-1], self.reference.rsplit(" in ", 1)[-1]
        if changed == reference:
            changed, reference = "variant", "reference"
        return "\n".join([
            f"{self.variant} against {self.reference} on {self.comparison.agreement.frames} frames of {self.footage}",
            f"  detections with score >= {self.threshold:g} matched at IoU >= {MATCH_IOU:g}, same class:",
            *self.comparison.lines(changed, reference, "Check on footage with objects in it, or lower --threshold"),
        ])


def _check_job(job: CheckJob) -> None:
    if job.precision not in PRECISION_NAMES:
        raise ConfigError(f"--precision {job.precision!r}: use one of {', '.join(PRECISION_NAMES)}")
    if job.against is None and job.precision == REFERENCE_PRECISION:
        raise ConfigError(f"nothing to compare: the reference is the model in {REFERENCE_PRECISION}; give "
                          "--precision bf16|f16|auto, or --against OTHER.xml")
    if job.frames < 1:
        raise ConfigError(f"--frames {job.frames}: give at least 1")
    if not (math.isfinite(job.threshold) and 0 <= job.threshold <= 1):
        raise ConfigError(f"--threshold {job.threshold}: give a score from 0 to 1")
    if not (math.isfinite(job.bench_seconds) and job.bench_seconds >= 0):
        raise ConfigError(f"--bench-seconds {job.bench_seconds}: give 0 (skip) or more")


def check(job: CheckJob) -> CheckResult:
    """Compare; raises a StreamdetError for anything the user can put right (cheap checks first)."""
    _check_job(job)
    footage = list_footage(job.footage, "--footage")
    reference = load(job.against or job.model, job.device, threshold=job.threshold, cache_dir=job.cache_dir,
                     precision=REFERENCE_PRECISION)
    variant = load(job.model, job.device, threshold=job.threshold, cache_dir=job.cache_dir, precision=job.precision)

    log.info("reading %d frames of %s", min(job.frames, footage.total), footage.names())
    frames, owners = read_frames(footage, spread(np.arange(footage.total), job.frames),
                                 lambda image: fit_input(image, reference.input_size), "--footage")
    if not frames:
        raise StreamdetError("--footage: no frame could be decoded; check the footage plays")
    comparison = measure(reference, variant, frames, [footage.clips[o].group for o in owners], job.bench_seconds)
    return CheckResult(
        variant=f"{display_name(job.model)} in {variant.precision}",
        reference=f"{display_name(job.against or job.model)} in {reference.precision}",
        footage=footage.names(), threshold=job.threshold, comparison=comparison)
