"""What a model's weights are (FP16, FP32, INT8) and, for an INT8 model streamdet made, how it was made.

The provenance travels inside the IR (its rt_info), so it stays with the
model wherever the .xml is copied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import openvino as ov

_KEY = ["streamdet", "quantized"]


@dataclass(frozen=True)
class Provenance:
    """How `streamdet model quantize` made an INT8 model."""

    source: str       # the model it was quantised from, as the user named it
    footage: str      # calibration file names
    frames: int       # calibration frames
    agreement: str    # "F1 0.98 (precision 0.99, recall 0.97) on 200 frames of ..."
    date: str         # UTC, ISO 8601
    tool: str         # "streamdet 0.1.0, nncf 3.4.0"

    def lines(self) -> list[str]:
        return [
            f"INT8 by {self.tool} on {self.date}, from {self.source}",
            f"calibrated on {self.frames} frames of {self.footage}",
            f"agreement with {self.source}: {self.agreement}",
        ]


def write_provenance(model: ov.Model, record: Provenance) -> None:
    model.set_rt_info("INT8", [*_KEY, "precision"])
    for field in dataclasses.fields(record):
        model.set_rt_info(str(getattr(record, field.name)), [*_KEY, field.name])


def read_provenance(model: ov.Model) -> Provenance | None:
    """The record `write_provenance` left, or None (not made by streamdet, or by an older one)."""
    values = {}
    for field in dataclasses.fields(Provenance):
        if not model.has_rt_info([*_KEY, field.name]):
            return None
        values[field.name] = model.get_rt_info([*_KEY, field.name]).astype(str)
    try:
        values["frames"] = int(values["frames"])
    except ValueError:
        return None
    return Provenance(**values)


def is_int8(model: ov.Model) -> bool:
    """Quantised already: FakeQuantize ops (their limits stay f16/f32), or 8-bit (or narrower) integer
    weights that are turned back into floats (how saving compresses quantised weights)."""
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant" and op.get_output_element_type(0).get_type_name() in ("i8", "u8", "i4", "u4"):
            users = [u.get_node() for u in op.output(0).get_target_inputs()]
            if any(u.get_type_name() == "Convert" and u.get_output_element_type(0).is_real() for u in users):
                return True
    return False


def weights_precision(model: ov.Model) -> str:
    if is_int8(model):
        return "INT8"
    types = {op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    for name in ("f16", "f32"):
        if name in types:
            return name.replace("f", "FP")
    return "unknown"
