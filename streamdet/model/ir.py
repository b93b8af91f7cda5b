"""OpenVINO IR files: recognising an SSD's output form, reading, converting a TF frozen graph, the model
cache, writing an IR whole, and preparing a model to take OpenCV's frames.

Two output forms of the same network exist in the wild:
- "tf": what current OpenVINO makes of the TF frozen graph: detection_boxes
  [1,N,4] as [y_min,x_min,y_max,x_max], detection_classes, detection_scores,
  num_detections; input NHWC RGB.
- "legacy": the old converter's single DetectionOutput [1,1,N,7] =
  [image_id,label,conf,x_min,y_min,x_max,y_max]; input NCHW BGR.
Both take an OpenCV frame as it is: colour order and layout are converted
inside the compiled model by OpenVINO's preprocessing (`prepare`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from ..errors import ModelError, OutputError
from ..privacy import telemetry_off
from .fetch import KNOWN, cache_root, fetch_graph, sweep_stale
from .readout import LEGACY_OUTPUT, TF_COUNT, TF_OUTPUTS
from .tf_preprocessor import drop_identity_resize

INPUT_SIZE = 300  # used when the model leaves its spatial size open
PREPARED_MARK = ["streamdet", "input"]  # rt_info of an IR whose graph takes OpenCV's frames as they are


@dataclass(frozen=True)
class ModelForm:
    form: str                       # "tf" or "legacy"
    outputs: dict[str, ov.Output]   # role -> model output



def one_line(exc: BaseException) -> str:
    # OpenVINO messages run over many lines with C++ source locations; keep the gist.
    lines = [l.strip() for l in str(exc).splitlines() if l.strip() and not re.search(r"\.(cpp|hpp):\d+", l)]
    text = " ".join(lines) or type(exc).__name__
    return text[:200]


@contextlib.contextmanager
def quiet_native_stderr():
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


def tensor_names(port: ov.Output) -> set[str]:
    return {n.split(":")[0] for n in port.get_names()}


def recognise(model: ov.Model, where: str) -> ModelForm:
    """Which output form the model has, or a ModelError saying what was found."""
    by_role: dict[str, ov.Output] = {}
    for port in model.outputs:
        for role in (*TF_OUTPUTS, TF_COUNT):
            if role in tensor_names(port):
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


def read_ir(core: ov.Core, xml: Path) -> ov.Model:
    bin_path = xml.with_suffix(".bin")
    if not xml.is_file():
        raise ModelError(f"model '{xml}': no such file; check the path or use a model name such as ssdlite_mobilenet_v2")
    if not bin_path.is_file():
        raise ModelError(f"model '{xml}': its weights '{bin_path.name}' are missing; keep the .bin next to the .xml")
    try:
        return core.read_model(str(xml), str(bin_path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        raise ModelError(f"model '{xml}': not a readable OpenVINO IR ({one_line(exc)})") from None



def sha256(path: Path) -> str:
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
        with quiet_native_stderr():
            model = ov.convert_model(str(pb), input=[1, INPUT_SIZE, INPUT_SIZE, 3])
    except Exception as exc:
        raise ModelError(f"model '{pb}': not a TensorFlow frozen graph OpenVINO can convert ({one_line(exc)})") from None
    recognise(model, str(pb))
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    return write_ir(model, out_xml, "convert", compress_to_fp16=not fp32)


def write_ir(model: ov.Model, out_xml: Path, job: str, compress_to_fp16: bool = True) -> Path:
    """Save `model` as `out_xml` (+ .bin) so that no reader ever sees half of it: written into a folder
    `.JOB-*` beside it, then moved into place, .bin first (a present .xml is what marks the pair complete,
    for the model cache and for a server that loads while we write). Leftovers of killed writes are swept."""
    sweep_stale(out_xml.parent, f".{job}-")
    with tempfile.TemporaryDirectory(dir=out_xml.parent, prefix=f".{job}-") as tmp:
        staged = Path(tmp) / out_xml.name
        ov.save_model(model, str(staged), compress_to_fp16=compress_to_fp16)
        os.replace(staged.with_suffix(".bin"), out_xml.with_suffix(".bin"))
        os.replace(staged, out_xml)
    return out_xml


def check_model_spec(spec: str | os.PathLike) -> None:
    """A model name, or an .xml or .pb that is there: what `resolve_ir` would refuse, found without reading it."""
    text = str(spec)
    if text in KNOWN:
        return
    path = Path(text)
    if path.suffix.lower() not in (".xml", ".pb"):
        raise ModelError(f"model '{text}': give a model name ({', '.join(KNOWN)}), an OpenVINO .xml IR or a "
                         "TensorFlow frozen .pb")
    if not path.is_file():
        raise ModelError(f"model '{path}': no such file; check the path")
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise ModelError(f"model '{path}': its weights '{path.with_suffix('.bin').name}' are missing; keep the "
                         ".bin next to the .xml")


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
        xml = cache_root(cache_dir) / "converted" / f"{sha256(path)[:20]}-{precision}" / "model.xml"
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


def prepare_model(model: ov.Model, form: ModelForm, where: str) -> ov.Model:
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
            raise ModelError(f"model '{where}': input {shape} cannot be fixed to {dims} ({one_line(exc)})") from None
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
        raise ModelError(f"model '{where}': input {port.any_name} {shape} does not take a 3-colour image ({one_line(exc)})") from None


def display_name(spec: str | os.PathLike) -> str:
    """A model as messages and reports name it: a file by its name, a published model by its own."""
    path = Path(str(spec))
    return path.name if path.suffix.lower() in (".xml", ".pb") else str(spec)
