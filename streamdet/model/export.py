"""`streamdet model export-server`: an IR for an inference server that takes frames as streamdet sends them.

Locally, OpenVINO's preprocessing (BGR to RGB, u8 to the model's type, NHWC to
its layout, a fixed 300x300 size) is built into the compiled model. A server
compiles the IR it is given as it is, so the same preprocessing is written into
the IR here: the server then takes the 300x300 8-bit BGR frame the local path
takes (a quarter of the bytes of float input), and runs the same graph on it.
Outputs are named by their roles, so the server's metadata names them plainly
(a converted TF graph's tensors carry internal names first, such as add:0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import openvino as ov

from ..config.names import NAME_CHARS, is_plain_name
from ..errors import ModelError, OutputError
from .fetch import KNOWN
from .ir import (
    PREPARED_MARK,
    prepare_model,
    read_ir,
    recognise,
    resolve_ir,
    tensor_names,
    write_ir,
)
from .readout import LEGACY_OUTPUT

# A name of its own: the TF Object Detection API graph calls its RGB input image_tensor, and a client must
# tell this BGR input from that one by name alone (streamdet.remote does).
INPUT_NAME = "streamdet_bgr"


@dataclass(frozen=True)
class Exported:
    xml: Path
    name: str
    version: int
    form: str
    input: str  # "streamdet_bgr [1,300,300,3] u8"


def default_name(spec: str) -> str:
    return spec if spec in KNOWN else Path(spec).stem


def _make_folder(repository: Path, folder: Path) -> None:
    if repository.exists() and not repository.is_dir():
        raise OutputError(f"repository '{repository}' is a file, not a folder; give the model repository's folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"repository '{repository}': cannot make '{folder}' ({exc.strerror or exc}); "
                          "give a folder you can write to") from None


def export_server(spec: str, repository: Path, name: str | None = None, version: int = 1, *, cache_dir=None,
                  fp32: bool = False, base_url: str | None = None, overwrite: bool = False) -> Exported:
    """Write REPOSITORY/NAME/VERSION/model.xml (+ .bin), the layout OpenVINO Model Server and Triton read."""
    name = name or default_name(spec)
    if not is_plain_name(name):
        # `run --server-model` takes the same names: what is written here can be served and asked for.
        raise ModelError(f"server model name {name!r}: give --name a plain name ({NAME_CHARS}, starting with a "
                         "letter or digit) such as ssdlite_mobilenet_v2")
    if version < 1:
        raise ModelError(f"version {version}: model servers number versions from 1")
    folder = Path(repository) / name / str(version)
    xml = folder / "model.xml"
    if (xml.exists() or xml.with_suffix(".bin").exists()) and not overwrite:
        raise OutputError(f"output '{xml}' exists already; pass --overwrite to replace it, or give another --version")
    _make_folder(Path(repository), folder)  # before the model is converted: a repository that cannot be is found first
    core = ov.Core()
    source = resolve_ir(spec, cache_dir, fp32, base_url)
    model = read_ir(core, source)
    form = recognise(model, spec)
    model = prepare_model(model, form, spec)
    for port in model.outputs:
        roles = sorted(tensor_names(port) & set(form.outputs)) or ([LEGACY_OUTPUT] if form.form == "legacy" else [])
        if roles:
            port.get_tensor().set_names({roles[0]})
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    # A plugin that fuses an output's producer into the node before it (the CPU's does, for
    # detection_classes) names the output by both nodes' tensors, and a server shows the first name
    # in sort order. Inner tensors need no names: only the input and the roles keep theirs.
    kept = {INPUT_NAME, *form.outputs}
    for op in model.get_ops():
        for port in op.outputs():
            if not port.get_names() <= kept:
                port.get_tensor().set_names(set())
    model.set_rt_info("BGR u8 NHWC", PREPARED_MARK)
    write_ir(model, xml, "export", compress_to_fp16=not fp32)  # a server loading meanwhile sees old or new, whole
    port = model.inputs[0]
    described = f"{INPUT_NAME} {port.get_partial_shape()} {port.get_element_type().get_type_name()}"
    return Exported(xml, name, version, form.form, described)
