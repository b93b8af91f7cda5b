"""`streamdet model fetch|convert|info|export-server` and `streamdet devices`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ModelError


def register(sub) -> None:
    model = sub.add_parser("model", help="fetch, convert or inspect detection models")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    p = msub.add_parser("fetch", help="download, verify, convert and cache a published model")
    p.add_argument("name", nargs="?", default="ssdlite_mobilenet_v2")
    p.add_argument("--cache-dir", help="cache folder (default $STREAMDET_CACHE_DIR or $XDG_CACHE_HOME/streamdet)")
    p.add_argument("--base-url", help="mirror to download from (default $STREAMDET_MODEL_BASE_URL or the official servers)")
    p.add_argument("--fp32", action="store_true", help="keep FP32 weights (default FP16)")
    p.set_defaults(func=cmd_fetch)

    p = msub.add_parser("convert", help="convert a TensorFlow frozen graph (.pb) to OpenVINO IR")
    p.add_argument("input", metavar="IN.pb")
    p.add_argument("-o", "--output", metavar="OUT.xml", help="default: IN.xml next to the input")
    p.add_argument("--fp32", action="store_true", help="keep FP32 weights (default FP16)")
    p.set_defaults(func=cmd_convert)

    p = msub.add_parser("info", help="show a model's form, inputs, outputs and precision")
    p.add_argument("model", metavar="MODEL", help="model name, .xml or .pb")
    p.add_argument("--cache-dir")
    p.add_argument("--labels", help="label file to count instead of the COCO labels")
    p.add_argument("--device", help="also compile the model on this device (CPU, GPU, AUTO, ...) and show its request count")
    p.set_defaults(func=cmd_info)

    p = msub.add_parser(
        "export-server", help="write the model for an inference server (OpenVINO Model Server, Triton)",
        description="Write REPOSITORY/NAME/VERSION/model.xml (+ .bin) for `streamdet run --server`: the IR with "
                    "streamdet's preprocessing built in (it takes the 8-bit BGR 300x300 frames streamdet sends) and "
                    "its outputs named detection_boxes, detection_classes, detection_scores, num_detections.")
    p.add_argument("model", nargs="?", default="ssdlite_mobilenet_v2", metavar="MODEL",
                   help="model name, .xml or .pb (default ssdlite_mobilenet_v2)")
    p.add_argument("-o", "--repository", default="models", metavar="DIR", help="the server's model repository (default ./models)")
    p.add_argument("--name", help="the name the server serves it by (default: the model name or the file's stem)")
    p.add_argument("--version", type=int, default=1, help="version folder (default 1)")
    p.add_argument("--fp32", action="store_true", help="keep FP32 weights (default FP16)")
    p.add_argument("--cache-dir")
    p.add_argument("--base-url", help="mirror to download the model from")
    p.add_argument("--overwrite", action="store_true", help="replace that version if it exists")
    p.set_defaults(func=cmd_export_server)

    p = sub.add_parser("devices", help="list the OpenVINO devices on this machine")
    p.set_defaults(func=cmd_devices)


def cmd_fetch(args: argparse.Namespace) -> int:
    from .model import resolve_ir

    xml = resolve_ir(args.name, args.cache_dir, args.fp32, args.base_url)
    print(xml)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .model import convert_graph

    src = Path(args.input)
    if src.suffix.lower() != ".pb":
        raise ModelError(f"model '{src}': convert takes a TensorFlow frozen graph (.pb)")
    out = Path(args.output) if args.output else src.with_suffix(".xml")
    if out.suffix.lower() != ".xml":
        raise ModelError(f"output '{out}': give an .xml path (the .bin is written next to it)")
    if not out.parent.is_dir():
        raise ModelError(f"output '{out}': folder '{out.parent}' does not exist; create it first")
    convert_graph(src, out, args.fp32)
    print(out)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .model import inspect

    info = inspect(args.model, args.cache_dir, args.labels, args.device)
    print(f"model:     {info.path}")
    print(f"form:      {info.form}")
    for line in info.inputs:
        print(f"input:     {line}")
    for line in info.outputs:
        print(f"output:    {line}")
    print(f"layout:    {info.layout}")
    print(f"precision: {info.precision}")
    print(f"labels:    {info.labels}")
    print(f"cache:     {info.cache}")
    if info.device is not None:
        print(f"device:    {info.device}")
        print(f"requests:  {info.optimal_nireq} (optimal number of infer requests)")
    return 0


def cmd_export_server(args: argparse.Namespace) -> int:
    from .export import export_server

    done = export_server(args.model, Path(args.repository), args.name, args.version, cache_dir=args.cache_dir,
                         fp32=args.fp32, base_url=args.base_url, overwrite=args.overwrite)
    print(done.xml)
    print(f"form {done.form}, input {done.input} (BGR); serve it with, for example:", file=sys.stderr)
    model_path = done.xml.parent.parent.resolve()
    print(f"  ovms --model_path {model_path} --model_name {done.name} --port 9000", file=sys.stderr)
    print(f"  streamdet run --server grpc://HOST:9000 --server-model {done.name} --source ...", file=sys.stderr)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    import openvino as ov

    from .devices import describe_devices

    for name, full in describe_devices(ov.Core()):
        print(f"{name}\t{full}")
    return 0
