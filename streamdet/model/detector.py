"""The SSD detector: the IR found or made (streamdet.model.ir), compiled for a device in a precision, and
frames in, Detections out."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from ..config.sections import DEFAULT_PRECISION, HINTS, InferenceConfig, ModelConfig
from ..detections import Detections
from ..errors import ConfigError, ModelError
from ..measures.figures import InferenceInfo
from .devices import check_device, compiled_precision, cpu_role, normalise, precision_config
from .fetch import cache_root
from .ir import ModelForm, display_name, one_line, prepare_model, read_ir, recognise, resolve_ir
from .labels import load_labels, resolve_classes
from .precision import Provenance, read_provenance, weights_precision
from .readout import TF_COUNT, TF_OUTPUTS, DetectFilter, to_detections

_ROLES = (*TF_OUTPUTS, TF_COUNT, "image_tensor")  # names users know, for `model info`


@dataclass(frozen=True)
class ModelInfo:
    path: str
    form: str
    inputs: list[str]
    outputs: list[str]
    layout: str
    precision: str
    labels: int
    cache: str
    device: str | None = None        # set when asked to compile: "CPU (full device name)"
    optimal_nireq: int | None = None
    quantized: Provenance | None = None  # how streamdet made this INT8 model, if it did


def fit_input(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An 8-bit BGR HxWx3 frame at the model's input size (width, height), contiguous; a frame already
    that size is returned as it is, without a copy."""
    # cv2.resize outside the model measured faster than resizing inside it
    # on 720p (figures in docs/models.md). Each call
    # resizes into a new array because requests run concurrently.
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ModelError(f"detector input must be an 8-bit BGR image (H x W x 3), got {image.dtype} {image.shape}")
    if (image.shape[1], image.shape[0]) != size:
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return image if image.flags.c_contiguous else np.ascontiguousarray(image)


class Detector:
    """A compiled SSD model that turns OpenCV frames into Detections.

    `infer_input` and `readout` keep no state, so several requests may run at
    once; `detect` reuses one request and is for one thread at a time.
    """

    def __init__(self, compiled: ov.CompiledModel, form: ModelForm, labels: tuple[str, ...],
                 threshold: float, class_ids: frozenset[int], path: Path, hint: str = "THROUGHPUT",
                 weights: str = "unknown"):
        self.compiled = compiled
        self.form = form.form
        self.labels = labels
        self.path = path
        self.filter = DetectFilter(threshold, np.array(sorted(class_ids), np.int32))  # for `detect`
        self._outputs = {role: compiled.output(port.any_name) for role, port in form.outputs.items()}
        self.optimal_nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.hint = hint.upper()  # as asked: HETERO passes it on to its devices but cannot say it back
        shape = compiled.input(0).get_shape()  # NHWC after preprocessing
        self.input_size = (int(shape[2]), int(shape[1]))  # (width, height) as cv2.resize takes it
        self._sync: ov.InferRequest | None = None
        # What it really runs on and in, as the compiled model says (not as asked).
        self.devices, self.precision = compiled_precision(compiled)
        self.weights = weights
        self.name = path.name  # as the user named the model, where load knows it

    def info(self, requests: int) -> InferenceInfo:
        return InferenceInfo(model=self.name, devices=list(self.devices), precision=self.precision,
                             weights=self.weights, requests=requests)

    @property
    def threshold(self) -> float:
        return self.filter.threshold

    def infer_input(self, image: np.ndarray) -> ov.Tensor:
        """The input tensor for an 8-bit BGR HxWx3 frame of any size, sharing its (or its resized copy's) memory.

        The caller keeps the tensor alive until the request that reads it has finished.
        """
        return ov.Tensor(fit_input(image, self.input_size)[np.newaxis], shared_memory=True)

    def readout(self, request: ov.InferRequest, width: int, height: int, filter: DetectFilter) -> Detections:
        """A finished request's outputs as pixel boxes of a width x height frame, filtered and labelled."""
        outputs = {role: request.get_tensor(port).data for role, port in self._outputs.items()}
        return to_detections(self.form, outputs, width, height, filter, self.labels)

    def detect(self, image: np.ndarray) -> Detections:
        """Synchronous single-frame detection (tests, scripts)."""
        if self._sync is None:
            self._sync = self.compiled.create_infer_request()
        self._sync.infer(self.infer_input(image))
        return self.readout(self._sync, image.shape[1], image.shape[0], self.filter)


def _device_config(device: str, hint: str, streams: int | None, threads: int | None) -> dict:
    # Checked here: OpenVINO's own complaint about these arrives as a multi-line compile failure.
    if str(hint).upper() not in HINTS:
        raise ConfigError(f"performance hint '{hint}' is not known; use one of {', '.join(HINTS)}")
    for name, value in (("streams", streams), ("threads", threads)):
        if value is not None and value < 0:
            raise ConfigError(f"{name} {value} is negative; give a count, or 0 to let the hint decide")
    config: dict = {"PERFORMANCE_HINT": str(hint).upper()}
    cpu = {key: str(value) for key, value in (("NUM_STREAMS", streams), ("INFERENCE_NUM_THREADS", threads)) if value}
    if not cpu:
        return config
    where = cpu_role(device)
    if where is None:
        raise ConfigError(f"inference streams and threads are the CPU's, and device {device} does not use the CPU; "
                          "set them to 0")
    # AUTO, MULTI and HETERO take no CPU settings of their own: they would ignore these silently.
    config.update(cpu if where == "direct" else {"DEVICE_PROPERTIES": {"CPU": cpu}})
    return config


def _merge(config: dict, more: dict) -> dict:
    """`more` over `config`, DEVICE_PROPERTIES merged per device rather than replaced."""
    merged = {**config, **more}
    if "DEVICE_PROPERTIES" in config and "DEVICE_PROPERTIES" in more:
        devices = {**config["DEVICE_PROPERTIES"]}
        for name, props in more["DEVICE_PROPERTIES"].items():
            devices[name] = {**devices.get(name, {}), **props}
        merged["DEVICE_PROPERTIES"] = devices
    return merged


def load(spec: str | os.PathLike = "ssdlite_mobilenet_v2", device: str = "CPU", *, hint: str = "THROUGHPUT",
         streams: int | None = None, threads: int | None = None,
         threshold: float = 0.5, classes: Sequence[str | int] = (),
         labels: str | os.PathLike | tuple[str, ...] | None = None,
         cache_dir: str | os.PathLike | None = None, fp32: bool = False, base_url: str | None = None,
         precision: str = DEFAULT_PRECISION) -> Detector:
    """Find, convert if needed, check and compile a detector that infers in `precision`
    (f32, bf16, f16, or auto: whatever the device picks). `labels`: a label file, or its names loaded already."""
    core = ov.Core()
    device = normalise(device)
    check_device(core, device)
    config = _merge(_device_config(device, hint, streams, threads), precision_config(core, device, precision))
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold {threshold} is outside 0..1; scores are probabilities")
    label_names = labels if isinstance(labels, tuple) else load_labels(labels)
    class_ids = resolve_classes(label_names, classes)
    xml = resolve_ir(spec, cache_dir, fp32, base_url)
    model = read_ir(core, xml)
    form = recognise(model, str(spec))
    weights = weights_precision(model)
    model = prepare_model(model, form, str(spec))
    try:
        compiled = core.compile_model(model, device, config)
    except Exception as exc:
        raise ModelError(f"model '{spec}' cannot be compiled for {device} ({one_line(exc)})") from None
    detector = Detector(compiled, form, label_names, threshold, class_ids, xml, hint, weights)
    detector.name = display_name(spec)
    if precision != "auto" and detector.precision not in (precision, "unknown"):
        raise ModelError(f"model '{spec}': {device} compiled it for {detector.precision} although {precision} was "
                         "asked; set inference.precision (--precision) to auto to accept the device's choice")
    return detector


def load_from(model: ModelConfig, inference: InferenceConfig, labels: tuple[str, ...] | None = None) -> Detector:
    """`load` with the settings tree's sections, as the pipeline has them (and its labels, loaded once).

    No threshold or classes: the pipeline filters per source (each job carries its filter); `detect`, which
    uses the detector's own filter, is for tests and scripts.
    """
    return load(model.name, inference.device, hint=inference.hint, streams=inference.streams or None,
                threads=inference.threads or None,
                labels=labels if labels is not None else model.labels, cache_dir=model.cache_dir, fp32=model.fp32,
                base_url=model.base_url, precision=inference.precision)


def inspect(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
            labels: str | os.PathLike | None = None, device: str | None = None) -> ModelInfo:
    """What `streamdet model info` prints; with `device`, also compile there to prove it runs."""
    core = ov.Core()
    if device is not None:
        device = normalise(device)
        check_device(core, device)
    xml = resolve_ir(spec, cache_dir)
    model = read_ir(core, xml)
    form = recognise(model, str(spec))
    compiled_on, nireq = None, None
    if device is not None:
        detector = load(xml, device, cache_dir=cache_dir, labels=labels)
        head = device.split(":")[0]
        full = core.get_property(head, "FULL_DEVICE_NAME") if head in core.available_devices else head
        compiled_on, nireq = f"{device} ({full})", detector.optimal_nireq
    return ModelInfo(
        path=str(xml),
        form=form.form,
        inputs=[_describe(p) for p in model.inputs],
        outputs=[_describe(p) for p in model.outputs],
        layout="NHWC (RGB)" if form.form == "tf" else "NCHW (BGR)",
        precision=weights_precision(model),
        labels=len(load_labels(labels)),
        cache=str(cache_root(cache_dir)),
        device=compiled_on,
        optimal_nireq=nireq,
        quantized=read_provenance(model),
    )


def _describe(port: ov.Output) -> str:
    # Converted TF graphs give outputs internal names too (add:0); show the one users know.
    names = sorted(port.get_names(), key=lambda n: (n.split(":")[0] not in _ROLES, "/" in n, len(n)))
    name = names[0] if names else port.get_node().get_friendly_name()
    return f"{name} {port.get_partial_shape()} {port.get_element_type().get_type_name()}"


def raw_run(detector: Detector, tensor: ov.Tensor, *, frames: int = 0, seconds: float = 0.0,
            nireq: int | None = None) -> tuple[int, float]:
    """Raw async inference on one input, as benchmark_app runs it: as many requests as the device wants
    (or `nireq`) kept full for `frames` frames or `seconds`, after a warm-up. Returns (frames, seconds taken)."""
    queue = ov.AsyncInferQueue(detector.compiled, nireq or detector.optimal_nireq)
    for _ in range(2 * len(queue)):  # warm-up
        queue.start_async(tensor)
    queue.wait_all()
    done = 0
    t0 = time.perf_counter()
    while (done < frames) if frames else (time.perf_counter() - t0 < seconds):
        queue.start_async(tensor)  # blocks while every request is busy
        done += 1
    queue.wait_all()
    return done, time.perf_counter() - t0
