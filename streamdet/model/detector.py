"""The SSD detector: find or make the IR, recognise its output form, compile, decode.

Two output forms of the same network exist in the wild:
- "tf": what current OpenVINO makes of the TF frozen graph: detection_boxes
  [1,N,4] as [y_min,x_min,y_max,x_max], detection_classes, detection_scores,
  num_detections; input NHWC RGB.
- "legacy": the old converter's single DetectionOutput [1,1,N,7] =
  [image_id,label,conf,x_min,y_min,x_max,y_max]; input NCHW BGR.
Both take an OpenCV frame as it is: colour order and layout are converted
inside the compiled model by OpenVINO's preprocessing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from ..config.sections import DEFAULT_PRECISION, HINTS, DetectConfig, InferenceConfig, ModelConfig
from .readout import LEGACY_OUTPUT, TF_COUNT, TF_OUTPUTS, DetectFilter, to_detections
from ..detections import Detections
from .devices import check_device, compiled_precision, cpu_role, normalise, precision_config
from ..errors import ConfigError, ModelError, OutputError
from .fetch import KNOWN, cache_root, fetch_graph, sweep_stale
from .labels import load_labels, resolve_classes
from .precision import Provenance, read_provenance, weights_precision
from ..privacy import telemetry_off
from ..stats import InferenceInfo
from .tf_preprocessor import drop_identity_resize

INPUT_SIZE = 300  # used when the model leaves its spatial size open
_ROLES = (*TF_OUTPUTS, TF_COUNT, "image_tensor")  # names users know, for `model info`
PREPARED_MARK = ["streamdet", "input"]  # rt_info of an IR whose graph takes OpenCV's frames as they are


@dataclass(frozen=True)
class ModelForm:
    form: str                       # "tf" or "legacy"
    outputs: dict[str, ov.Output]   # role -> model output


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


def _one_line(exc: BaseException) -> str:
    # OpenVINO messages run over many lines with C++ source locations; keep the gist.
    lines = [l.strip() for l in str(exc).splitlines() if l.strip() and not re.search(r"\.(cpp|hpp):\d+", l)]
    text = " ".join(lines) or type(exc).__name__
    return text[:200]


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence C++ logging (the TF frontend's absl) that would print raw file bytes on a bad graph."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _names(port: ov.Output) -> set[str]:
    return {n.split(":")[0] for n in port.get_names()}


def recognise(model: ov.Model, where: str) -> ModelForm:
    """Which output form the model has, or a ModelError saying what was found."""
    by_role: dict[str, ov.Output] = {}
    for port in model.outputs:
        for role in (*TF_OUTPUTS, TF_COUNT):
            if role in _names(port):
                by_role[role] = port
    if all(role in by_role for role in TF_OUTPUTS):
        return ModelForm("tf", by_role)
    if len(model.outputs) == 1:
        shape = model.outputs[0].get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() == 4 and shape[3].is_static and shape[3].get_length() == 7:
            return ModelForm("legacy", {LEGACY_OUTPUT: model.outputs[0]})
    found = ", ".join(f"{p.any_name} {p.get_partial_shape()}" for p in model.outputs)
    raise ModelError(
        f"model '{where}': outputs [{found}] are not an SSD detector's; expected detection_boxes, "
        "detection_classes, detection_scores (TF form) or one DetectionOutput [1,1,N,7] (legacy form)"
    )


def _read_ir(core: ov.Core, xml: Path) -> ov.Model:
    bin_path = xml.with_suffix(".bin")
    if not xml.is_file():
        raise ModelError(f"model '{xml}': no such file; check the path or use a model name such as ssdlite_mobilenet_v2")
    if not bin_path.is_file():
        raise ModelError(f"model '{xml}': its weights '{bin_path.name}' are missing; keep the .bin next to the .xml")
    try:
        return core.read_model(str(xml), str(bin_path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        raise ModelError(f"model '{xml}': not a readable OpenVINO IR ({_one_line(exc)})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_ir_output(out: Path) -> None:
    """An IR about to be written: OpenVINO saves only to a name ending in '.xml' (lower case), beside its .bin."""
    if out.suffix != ".xml":
        raise OutputError(f"output '{out}': give an .xml path, '.xml' in lower case (the .bin is written next to it)")
    if not out.parent.is_dir():
        raise OutputError(f"output '{out}': folder '{out.parent}' does not exist; create it first")


def convert_graph(pb: Path, out_xml: Path, fp32: bool = False) -> Path:
    """Convert a TF frozen graph to IR at `out_xml` (written to a temp dir, then moved into place)."""
    if not pb.is_file():
        raise ModelError(f"model '{pb}': no such file; check the path")
    telemetry_off()  # again: the host program may have loaded the converter before streamdet
    try:
        with _quiet_native_stderr():
            model = ov.convert_model(str(pb), input=[1, INPUT_SIZE, INPUT_SIZE, 3])
    except Exception as exc:
        raise ModelError(f"model '{pb}': not a TensorFlow frozen graph OpenVINO can convert ({_one_line(exc)})") from None
    recognise(model, str(pb))
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out_xml.parent, ".convert-")
    with tempfile.TemporaryDirectory(dir=out_xml.parent, prefix=".convert-") as tmp:
        staged = Path(tmp) / out_xml.name
        ov.save_model(model, str(staged), compress_to_fp16=not fp32)
        # .bin first: a present .xml is what marks the cache entry as complete.
        os.replace(staged.with_suffix(".bin"), out_xml.with_suffix(".bin"))
        os.replace(staged, out_xml)
    return out_xml


def resolve_ir(spec: str | os.PathLike, cache_dir=None, fp32: bool = False, base_url: str | None = None) -> Path:
    """The .xml for a model name, .xml path or .pb path, converting and caching as needed."""
    text = str(spec)
    precision = "fp32" if fp32 else "fp16"
    if text in KNOWN:
        xml = cache_root(cache_dir) / "models" / text / precision / f"{text}.xml"
        if not xml.is_file():
            convert_graph(fetch_graph(text, cache_dir, base_url), xml, fp32)
        return xml
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return path
    if suffix == ".pb":
        if not path.is_file():
            raise ModelError(f"model '{path}': no such file; check the path")
        xml = cache_root(cache_dir) / "converted" / f"{_sha256(path)[:20]}-{precision}" / "model.xml"
        if not xml.is_file():
            convert_graph(path, xml, fp32)
        return xml
    raise ModelError(
        f"model '{text}': give a model name ({', '.join(KNOWN)}), an OpenVINO .xml IR or a TensorFlow frozen .pb"
    )


def input_dims(port: ov.Output, form: ModelForm) -> list[int]:
    """The input shape streamdet runs the model at: batch 1, 3 colours and, where the model
    leaves it open, the 300x300 the SSD was trained at."""
    dims = [d.get_length() if d.is_static else INPUT_SIZE for d in port.get_partial_shape()]
    dims[0] = 1
    dims[1 if form.form == "legacy" else 3] = 3  # the colour axis of NCHW or NHWC
    return dims


def _prepare(model: ov.Model, form: ModelForm, where: str) -> ov.Model:
    """Let the compiled model take a BGR u8 NHWC frame, at its input size, as OpenCV gives it."""
    if model.has_rt_info(PREPARED_MARK):
        return model  # written by `streamdet model export-server`: this preprocessing is in its graph already
    if len(model.inputs) != 1:
        raise ModelError(f"model '{where}' has {len(model.inputs)} inputs; an SSD detector has one image input")
    port = model.inputs[0]
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        raise ModelError(f"model '{where}': input {port.any_name} {shape} is not a 4-D image batch")
    layout = "NHWC" if form.form == "tf" else "NCHW"
    if shape.is_dynamic:
        dims = input_dims(port, form)
        try:
            model.reshape({port.any_name: ov.PartialShape(dims)})
        except Exception as exc:
            raise ModelError(f"model '{where}': input {shape} cannot be fixed to {dims} ({_one_line(exc)})") from None
    if form.form == "tf":
        drop_identity_resize(model)  # frames arrive at the input size: the graph's own resize loop does nothing
    ppp = PrePostProcessor(model)
    info = ppp.input()
    info.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    info.model().set_layout(ov.Layout(layout))
    if form.form == "tf":
        info.preprocess().convert_color(ColorFormat.RGB)  # the TF graph was trained on RGB
    if port.get_element_type() != ov.Type.u8:
        info.preprocess().convert_element_type(port.get_element_type())
    try:
        return ppp.build()
    except Exception as exc:
        raise ModelError(f"model '{where}': input {port.any_name} {shape} does not take a 3-colour image ({_one_line(exc)})") from None


def fit_input(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An 8-bit BGR HxWx3 frame at the model's input size (width, height), contiguous; a frame already
    that size is returned as it is, without a copy."""
    # cv2.resize outside the model measured faster than resizing inside it
    # on 720p (about 320-345 against 210-235 FPS; see docs). Each call
    # resizes into a new array because requests run concurrently.
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ModelError(f"detector input must be an 8-bit BGR image (H x W x 3), got {image.dtype} {image.shape}")
    if (image.shape[1], image.shape[0]) != size:
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return image if image.flags.c_contiguous else np.ascontiguousarray(image)


class Detector:
    """A compiled SSD model that turns OpenCV frames into Detections.

    `infer_input` and `decode` keep no state, so several requests may run at
    once; `detect` reuses one request and is for one thread at a time.
    """

    def __init__(self, compiled: ov.CompiledModel, form: ModelForm, labels: tuple[str, ...],
                 threshold: float, class_ids: frozenset[int], nireq: int | None, path: Path, hint: str = "THROUGHPUT",
                 weights: str = "unknown"):
        self.compiled = compiled
        self.form = form.form
        self.labels = labels
        self.path = path
        self.keep = DetectFilter(threshold, np.array(sorted(class_ids), np.int32))
        self._outputs = {role: compiled.output(port.any_name) for role, port in form.outputs.items()}
        self.optimal_nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        # With exactly the optimal number of requests the device idles while
        # Python turns a finished request round (decode, take and resize the
        # next frame): on 2 cores one more took the pipeline from 0.80 to 0.90
        # of raw throughput on decoded frames. Under LATENCY a second request
        # would only make each frame wait for the other.
        # The hint as asked: HETERO passes it on to its devices but cannot say it back.
        extra = 1 if hint.upper() == "THROUGHPUT" else 0
        self.nireq = nireq or self.optimal_nireq + extra  # requests the pipeline keeps in flight
        shape = compiled.input(0).get_shape()  # NHWC after preprocessing
        self.input_size = (int(shape[2]), int(shape[1]))  # (width, height) as cv2.resize takes it
        self._sync: ov.InferRequest | None = None
        # What it really runs on and in, as the compiled model says (not as asked).
        self.devices, self.precision = compiled_precision(compiled)
        self.weights = weights
        self.name = path.name  # as the user named the model, where load knows it

    def info(self) -> InferenceInfo:
        return InferenceInfo(model=self.name, devices=list(self.devices), precision=self.precision,
                             weights=self.weights, requests=self.nireq)

    @property
    def threshold(self) -> float:
        return self.keep.threshold

    def infer_input(self, image: np.ndarray) -> ov.Tensor:
        """The input tensor for an 8-bit BGR HxWx3 frame of any size, sharing its (or its resized copy's) memory.

        The caller keeps the tensor alive until the request that reads it has finished.
        """
        return ov.Tensor(fit_input(image, self.input_size)[np.newaxis], shared_memory=True)

    def decode(self, request: ov.InferRequest, width: int, height: int, keep: DetectFilter | None = None) -> Detections:
        """A finished request's outputs as pixel boxes of a width x height frame, filtered (by `keep`, else
        the detector's own threshold and classes) and labelled."""
        outputs = {role: request.get_tensor(port).data for role, port in self._outputs.items()}
        return to_detections(self.form, outputs, width, height, keep or self.keep, self.labels)

    def detect(self, image: np.ndarray) -> Detections:
        """Synchronous single-frame detection (tests, scripts)."""
        if self._sync is None:
            self._sync = self.compiled.create_infer_request()
        self._sync.infer(self.infer_input(image))
        return self.decode(self._sync, image.shape[1], image.shape[0])


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
         streams: int | None = None, threads: int | None = None, nireq: int | None = None,
         threshold: float = 0.5, classes: Sequence[str | int] = (), labels: str | os.PathLike | None = None,
         cache_dir: str | os.PathLike | None = None, fp32: bool = False, base_url: str | None = None,
         precision: str = DEFAULT_PRECISION) -> Detector:
    """Find, convert if needed, check and compile a detector that infers in `precision`
    (f32, bf16, f16, or auto: whatever the device picks)."""
    core = ov.Core()
    device = normalise(device)
    check_device(core, device)
    config = _merge(_device_config(device, hint, streams, threads), precision_config(core, device, precision))
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold {threshold} is outside 0..1; scores are probabilities")
    label_names = load_labels(labels)
    class_ids = resolve_classes(label_names, classes)
    xml = resolve_ir(spec, cache_dir, fp32, base_url)
    model = _read_ir(core, xml)
    form = recognise(model, str(spec))
    weights = weights_precision(model)
    model = _prepare(model, form, str(spec))
    try:
        compiled = core.compile_model(model, device, config)
    except Exception as exc:
        raise ModelError(f"model '{spec}' cannot be compiled for {device} ({_one_line(exc)})") from None
    detector = Detector(compiled, form, label_names, threshold, class_ids, nireq, xml, hint, weights)
    detector.name = Path(str(spec)).name
    if precision != "auto" and detector.precision not in (precision, "unknown"):
        raise ModelError(f"model '{spec}': {device} compiled it for {detector.precision} although {precision} was "
                         "asked; set inference.precision (--precision) to auto to accept the device's choice")
    return detector


def load_from(model: ModelConfig, inference: InferenceConfig, detect: DetectConfig) -> Detector:
    """`load` with the settings tree's sections, as the pipeline has them."""
    return load(model.name, inference.device, hint=inference.hint, streams=inference.streams or None,
                threads=inference.threads or None, nireq=inference.nireq or None, threshold=detect.threshold,
                classes=detect.classes, labels=model.labels, cache_dir=model.cache_dir, fp32=model.fp32,
                base_url=model.base_url, precision=inference.precision)


def inspect(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
            labels: str | os.PathLike | None = None, device: str | None = None) -> ModelInfo:
    """What `streamdet model info` prints; with `device`, also compile there to prove it runs."""
    core = ov.Core()
    if device is not None:
        device = normalise(device)
        check_device(core, device)
    xml = resolve_ir(spec, cache_dir)
    model = _read_ir(core, xml)
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
