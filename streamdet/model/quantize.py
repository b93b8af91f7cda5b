"""`streamdet model quantize`: INT8 post-training quantisation with NNCF, checked against the original.

The IR is quantised as it is stored, not with streamdet's preprocessing
wrapped around it: loading the INT8 IR wraps it again, exactly as it wraps
the original. NNCF is an optional dependency, imported here only.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import openvino as ov

from ..errors import ConfigError, ModelError, OutputError, StreamdetError
from .agreement import MATCH_IOU, Agreement, Comparison, measure
from .calibration import (
    Footage,
    input_spec,
    list_footage,
    prepare,
    read_frames,
    split,
    spread,
)
from .detector import fit_input, load
from .fetch import sweep_stale
from .ir import (
    check_ir_output,
    display_name,
    one_line,
    prepare_model,
    read_ir,
    recognise,
    resolve_ir,
    write_ir,
)
from .precision import Provenance, is_int8, weights_precision, write_provenance

log = logging.getLogger("streamdet.quantize")

INSTALL_HINT = "pip install 'streamdet[quantize]'"
# The TF OD API graph's box decoding and NMS: coordinates and scores that INT8 would coarsen (box
# edges by up to a pixel at 300 px) for no speed, as the work there is small next to the backbone's.
POSTPROCESSOR = "Postprocessor/.*"


@dataclass(frozen=True)
class QuantizeJob:
    """What `streamdet model quantize` was asked to do (the CLI flags, checked by `check_job`)."""

    model: str
    calib: tuple[str, ...]
    output: Path
    frames: int = 300
    check: tuple[str, ...] = ()
    check_frames: int = 200
    threshold: float = 0.5
    min_agreement: float = 0.95
    force: bool = False
    overwrite: bool = False
    bench_seconds: float = 3.0
    device: str = "CPU"
    cache_dir: str | None = None
    verbose: bool = False
    float_postprocessing: bool = True  # leave the SSD's box decoding and NMS out of INT8


@dataclass(frozen=True)
class QuantizeResult:
    source: str                           # the model as the user named it
    source_precision: str                 # FP16 / FP32
    calibrated: int                       # frames
    calib_names: str                      # the files they came from
    comparison: Comparison                # INT8 against the original, per file or folder of the check footage
    held_out: bool                        # checked on calibration footage, other frames
    threshold: float

    @property
    def agreement(self) -> Agreement:
        return self.comparison.agreement

    def format(self, output: Path) -> str:
        where = "frames between the calibration frames" if self.held_out else "other footage"
        return "\n".join([
            f"INT8 model {output} from {self.source} ({self.source_precision})",
            f"  calibration: {self.calibrated} frames of {self.calib_names}",
            f"  agreement with {self.source_precision} on {where}, detections with score >= {self.threshold:g} "
            f"matched at IoU >= {MATCH_IOU:g}, same class:",
            *self.comparison.lines("INT8", self.source_precision,
                                   "Check on footage with objects in it (--check), or lower --threshold"),
        ])


def _finite(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name} {value} is out of range; give a number from {low:g}"
                          + (f" to {high:g}" if math.isfinite(high) else " up"))


def check_job(job: QuantizeJob) -> None:
    """The cheap checks: numbers and the output path, before any file is read."""
    for name, count in (("--frames", job.frames), ("--check-frames", job.check_frames)):
        if count < 1:
            raise ConfigError(f"{name} {count}: give at least 1")
    _finite("--threshold", job.threshold, 0.0, 1.0)
    _finite("--min-agreement", job.min_agreement, 0.0)
    _finite("--bench-seconds", job.bench_seconds, 0.0)
    out = job.output
    check_ir_output(out)
    _not_input(out, Path(job.model))
    if not job.overwrite and (out.exists() or out.with_suffix(".bin").exists()):
        raise OutputError(f"output '{out}' exists already; give another name, or --overwrite to replace it")


def _not_input(out: Path, model: Path) -> None:
    if model.suffix.lower() == ".xml" and out.resolve() == model.resolve():
        raise OutputError(f"output '{out}' is the input model; give another name")


def _import_nncf():
    try:
        import nncf
    except ImportError:
        raise StreamdetError(f"quantize needs NNCF, which is not installed; install it with: {INSTALL_HINT}") from None
    return nncf


@contextlib.contextmanager
def _quiet(verbose: bool, nncf):
    """NNCF's progress bars (rich, on stdout), INFO lines and warnings, unless asked for."""
    if verbose:
        nncf.set_log_level(logging.INFO)
        yield
        return
    nncf.set_log_level(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def quantize(job: QuantizeJob, report: Callable[[QuantizeResult], None] = lambda result: None) -> Path:
    """Quantise, check the agreement and speed (handed to `report` either way), then write the IR
    unless it agrees too little. Raises a StreamdetError for anything the user can put right."""
    check_job(job)
    calib = list_footage(job.calib, "--calib")
    check = list_footage(job.check, "--check") if job.check else None
    nncf = _import_nncf()
    xml = resolve_ir(job.model, job.cache_dir)
    _not_input(job.output, xml)
    raw = read_ir(ov.Core(), xml)
    form = recognise(raw, job.model)
    if is_int8(raw):
        raise ModelError(f"model '{job.model}' is INT8 already; quantise the FP16 or FP32 model it came from")
    prepare_model(raw.clone(), form, job.model)  # the checks loading makes: one image input streamdet can feed
    spec = input_spec(raw, form)

    if check is None:
        calib_at, check_at = split(calib.total, job.frames, job.check_frames)
        if len(calib_at) + len(check_at) < job.frames + job.check_frames:
            log.info("the footage has %d frames: %d to calibrate on, %d to check on", calib.total, len(calib_at),
                     len(check_at))
    else:
        calib_at, check_at = spread(np.arange(calib.total), job.frames), spread(np.arange(check.total), job.check_frames)
    log.info("reading %d calibration frames of %s", len(calib_at), calib.names(calib_at))
    calib_frames, _ = read_frames(calib, calib_at, lambda image: prepare(image, spec), "--calib")
    check_footage = check or calib
    check_frames, owners = read_frames(check_footage, check_at, lambda image: fit_input(image, spec.size),
                                       "--check" if check else "--calib")
    if not calib_frames or not check_frames:
        raise StreamdetError("no frames could be decoded; check the footage plays")

    log.info("quantising %s on %d frames (NNCF %s)", display_name(job.model), len(calib_frames), nncf.__version__)
    ignored = nncf.IgnoredScope(patterns=[POSTPROCESSOR], validate=False) if job.float_postprocessing else None
    with _quiet(job.verbose, nncf):
        try:
            int8 = nncf.quantize(raw, nncf.Dataset(calib_frames), subset_size=len(calib_frames),
                                 ignored_scope=ignored)
        except Exception as exc:  # a graph NNCF cannot handle: the user's model, not a streamdet bug
            raise ModelError(f"model '{job.model}': NNCF could not quantise it ({type(exc).__name__}: "
                             f"{one_line(exc)})") from None

    out = job.output
    sweep_stale(out.parent, ".quantize-")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize-") as tmp:
        staged = Path(tmp) / out.name  # what is measured: loaded the way a run loads it
        ov.save_model(int8, str(staged))
        log.info("checking the INT8 model against %s on %d frames", display_name(job.model), len(check_frames))
        result = _measure(job, xml, staged, weights_precision(raw), len(calib_frames), calib.names(calib_at),
                          check_footage, check_frames, owners, held_out=check is None)
        report(result)
        agreement = result.agreement
        if agreement.f1 < job.min_agreement and not job.force:
            raise ModelError(f"the INT8 model agrees with the original at F1 {agreement.f1:.3f}, below --min-agreement "
                             f"{job.min_agreement:g}; nothing written (calibrate on more or more typical footage, "
                             "or --force to write it anyway)")
        write_provenance(int8, Provenance(
            source=display_name(job.model), footage=result.calib_names, frames=result.calibrated,
            agreement=f"{agreement.format()} at score >= {job.threshold:g}, IoU >= {MATCH_IOU:g}",
            date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            tool=f"streamdet {_version('streamdet')}, nncf {nncf.__version__}",
        ))
    return write_ir(int8, out, "quantize")  # again, with the provenance now known


def _measure(job: QuantizeJob, xml: Path, staged: Path, precision: str, calibrated: int, calib_names: str,
             check_footage: Footage, frames: list[np.ndarray], owners: list[int], held_out: bool) -> QuantizeResult:
    # Both through model.load, so with the preprocessing and readout every streamdet run uses.
    reference = load(xml, job.device, threshold=job.threshold, cache_dir=job.cache_dir)
    changed = load(staged, job.device, threshold=job.threshold, cache_dir=job.cache_dir)
    comparison = measure(reference, changed, frames, [check_footage.clips[o].group for o in owners],
                         job.bench_seconds)
    return QuantizeResult(display_name(job.model), precision, calibrated, calib_names, comparison, held_out,
                          job.threshold)



def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
