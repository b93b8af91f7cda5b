"""`streamdet model fetch|convert|info|quantize|check|export-server` and `streamdet devices`."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from ..errors import ModelError, OutputError


def register(sub) -> None:
    model = sub.add_parser("model", help="fetch, convert, inspect or quantise detection models")
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
    p.add_argument("--overwrite", action="store_true", help="replace OUT.xml if it exists")
    p.set_defaults(func=cmd_convert)

    p = msub.add_parser("info", help="show a model's form, inputs, outputs and precision")
    p.add_argument("model", metavar="MODEL", help="model name, .xml or .pb")
    p.add_argument("--cache-dir")
    p.add_argument("--labels", help="label file to count instead of the COCO labels")
    p.add_argument("--device", help="also compile the model on this device (CPU, GPU, AUTO, ...) and show its request count")
    p.set_defaults(func=cmd_info)

    _add_quantize(msub)
    _add_check(msub)

    p = msub.add_parser(
        "export-server", help="write the model for an inference server (OpenVINO Model Server, Triton)",
        description="Write REPOSITORY/NAME/VERSION/model.xml (+ .bin) for `streamdet run --server`: the IR with "
                    "streamdet's preprocessing built in (it takes the 8-bit BGR 300x300 frames streamdet sends) and "
                    "its outputs named detection_boxes, detection_classes, detection_scores, num_detections.")
    p.add_argument("model", nargs="?", default="ssdlite_mobilenet_v2", metavar="MODEL",
                   help="model name, .xml or .pb (default ssdlite_mobilenet_v2)")
    p.add_argument("-o", "--repository", default="models", metavar="DIR", help="the server's model repository (default ./models)")
    p.add_argument("--name", help="the name the server serves it by, as --server-model takes it: letters, digits, '_', '-', '.' "
                                     "(default: the model name or the file's stem)")
    p.add_argument("--version", type=int, default=1, help="version folder (default 1)")
    p.add_argument("--fp32", action="store_true", help="keep FP32 weights (default FP16)")
    p.add_argument("--cache-dir")
    p.add_argument("--base-url", help="mirror to download the model from")
    p.add_argument("--overwrite", action="store_true", help="replace that version if it exists")
    p.set_defaults(func=cmd_export_server)

    p = sub.add_parser("devices", help="list the OpenVINO devices on this machine")
    p.set_defaults(func=cmd_devices)


QUANTIZE_DESCRIPTION = """\
Quantise a model to INT8 with NNCF post-training quantisation, calibrated on frames of
your own footage, prepared exactly as `streamdet run` feeds them to the model. The SSD's
box decoding and NMS stay in floating point.

Then both models run through streamdet's normal loading path on frames not used for
calibration (or on --check footage): detections with score >= --threshold are matched
at IoU >= 0.5 with the same class, and precision, recall and F1 of INT8 against the
original are printed, with the raw inference throughput of both. A model whose F1 is
below --min-agreement is not written (unless --force). The INT8 IR records where it
came from; `streamdet model info` shows it.

Needs NNCF: pip install 'streamdet[quantize]'
"""

QUANTIZE_EXAMPLES = """examples:
  streamdet model quantize ssdlite_mobilenet_v2 --calib recordings/ -o ssdlite_int8.xml
  streamdet model quantize model.xml --calib gate.mp4 --calib yard.mp4 --check night.mp4 -o model_int8.xml
  streamdet run --model ssdlite_int8.xml --source rtsp://camera/stream
"""


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _add_quantize(msub) -> None:
    p = msub.add_parser("quantize", help="make an INT8 model with NNCF, calibrated and checked on your footage",
                        description=QUANTIZE_DESCRIPTION, epilog=QUANTIZE_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model name, .xml IR or TF frozen .pb (FP16 or FP32)")
    p.add_argument("--calib", action="append", required=True, metavar="CLIP_OR_FOLDER",
                   help="video, image, or folder of them (in name order) to calibrate on; repeat for several")
    p.add_argument("-o", "--output", required=True, metavar="OUT.xml", help="the INT8 IR (the .bin is written next to it)")
    p.add_argument("--frames", type=_count, default=300, metavar="N",
                   help="calibration frames, spread evenly over all the --calib footage (default 300)")
    p.add_argument("--check", action="append", metavar="CLIP_OR_FOLDER",
                   help="footage to measure the agreement on (default: --calib frames between the calibration "
                        "frames); repeat for several")
    p.add_argument("--check-frames", type=_count, default=200, metavar="N",
                   help="frames to measure the agreement on, spread evenly (default 200)")
    p.add_argument("--min-agreement", type=_number, default=0.95, metavar="F1",
                   help="refuse to write an INT8 model whose F1 against the original is lower (default 0.95)")
    p.add_argument("--force", action="store_true", help="write the INT8 model even below --min-agreement")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.xml if it exists")
    _add_comparison(p, "the agreement and throughput checks")
    p.add_argument("-v", "--verbose", action="store_true", help="show NNCF's progress bars and log")
    p.set_defaults(func=cmd_quantize)


CHECK_DESCRIPTION = """\
How a model variant detects next to the f32 reference, on your own footage: the model in
another inference precision (--precision bf16, f16, auto), or another IR of it (an INT8 model
from `streamdet model quantize` --against the model it came from). The reference always
infers in f32. Detections with score >= --threshold are matched at IoU >= 0.5 with the same
class; precision, recall and F1 of the variant are printed, per file or folder and in all,
with the raw inference throughput of both.
"""

CHECK_EXAMPLES = """examples:
  streamdet model check ssdlite_mobilenet_v2 --footage gate.mp4 --precision bf16
  streamdet model check ssdlite_int8.xml --against ssdlite_mobilenet_v2 --footage recordings/
"""


def _add_check(msub) -> None:
    from ..config.fields import choices
    from ..config.sections import DEFAULT_PRECISION, Precision

    p = msub.add_parser("check", help="compare a model in bf16/f16, or an INT8 model, with the f32 reference on "
                        "your footage", description=CHECK_DESCRIPTION, epilog=CHECK_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model name, .xml IR or TF frozen .pb: the variant")
    p.add_argument("--footage", action="append", required=True, metavar="CLIP_OR_FOLDER",
                   help="video, image, or folder of them (in name order); repeat for several")
    p.add_argument("--precision", choices=choices(Precision), type=str.lower, default=DEFAULT_PRECISION,
                   help=f"the variant's inference precision (default {DEFAULT_PRECISION}, as `streamdet run`)")
    p.add_argument("--against", metavar="OTHER", help="the reference model (default: MODEL itself), inferred in f32")
    p.add_argument("--frames", type=_count, default=200, metavar="N",
                   help="frames compared, spread evenly over all the footage (default 200)")
    _add_comparison(p, "both")
    p.set_defaults(func=cmd_check)


def _add_comparison(p, device_for: str) -> None:
    """The flags of a comparison of two models, the same for `quantize` and `check`."""
    p.add_argument("-t", "--threshold", type=_number, default=0.5, metavar="SCORE",
                   help="minimum score of the detections compared (default 0.5)")
    p.add_argument("--bench-seconds", type=_number, default=3.0, metavar="S",
                   help="seconds of throughput measurement per model, in 3 interleaved rounds (default 3; 0 = skip)")
    p.add_argument("-d", "--device", default="CPU", help=f"device for {device_for} (default CPU)")
    p.add_argument("--cache-dir", help="model cache folder, for a model name or .pb")


def cmd_check(args: argparse.Namespace) -> int:
    from ..model.check import CheckJob, check

    job = CheckJob(model=args.model, footage=tuple(args.footage), precision=args.precision, against=args.against,
                   frames=args.frames, threshold=args.threshold, bench_seconds=args.bench_seconds,
                   device=args.device, cache_dir=args.cache_dir)
    print(check(job).format(), flush=True)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from ..model.quantize import QuantizeJob, quantize

    job = QuantizeJob(
        model=args.model, calib=tuple(args.calib), output=Path(args.output), frames=args.frames,
        check=tuple(args.check or ()), check_frames=args.check_frames, threshold=args.threshold,
        min_agreement=args.min_agreement, force=args.force, overwrite=args.overwrite,
        bench_seconds=args.bench_seconds, device=args.device, cache_dir=args.cache_dir, verbose=args.verbose,
    )
    out = quantize(job, report=lambda result: print(result.format(job.output), flush=True))
    print(f"written: {out}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..model.ir import resolve_ir

    xml = resolve_ir(args.name, args.cache_dir, args.fp32, args.base_url)
    print(xml)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..model.ir import check_ir_output, convert_graph

    src = Path(args.input)
    if src.suffix.lower() != ".pb":
        raise ModelError(f"model '{src}': convert takes a TensorFlow frozen graph (.pb)")
    out = Path(args.output) if args.output else src.with_suffix(".xml")
    check_ir_output(out)
    if not args.overwrite and (out.exists() or out.with_suffix(".bin").exists()):
        raise OutputError(f"output '{out}' exists already; give another name, or --overwrite to replace it")
    convert_graph(src, out, args.fp32)
    print(out)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..model.detector import inspect

    info = inspect(args.model, args.cache_dir, args.labels, args.device)
    print(f"model:     {info.path}")
    print(f"form:      {info.form}")
    for line in info.inputs:
        print(f"input:     {line}")
    for line in info.outputs:
        print(f"output:    {line}")
    print(f"layout:    {info.layout}")
    print(f"precision: {info.precision}")
    if info.quantized is not None:
        for line in info.quantized.lines():
            print(f"quantized: {line}")
    print(f"labels:    {info.labels}")
    print(f"cache:     {info.cache}")
    if info.device is not None:
        print(f"device:    {info.device}")
        print(f"requests:  {info.optimal_nireq} (optimal number of infer requests)")
    return 0


def cmd_export_server(args: argparse.Namespace) -> int:
    from ..model.export import export_server

    done = export_server(args.model, Path(args.repository), args.name, args.version, cache_dir=args.cache_dir,
                         fp32=args.fp32, base_url=args.base_url, overwrite=args.overwrite)
    print(done.xml)
    print(f"form {done.form}, input {done.input} (BGR); serve it with, for example:", file=sys.stderr)
    # Quoted: the lines are meant to be pasted into a shell, and a repository path may hold spaces.
    model_path = shlex.quote(str(done.xml.parent.parent.resolve()))
    name = shlex.quote(done.name)
    print(f"  ovms --model_path {model_path} --model_name {name} --port 9000", file=sys.stderr)
    print(f"  streamdet run --server grpc://HOST:9000 --server-model {name} --source ...", file=sys.stderr)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    import openvino as ov

    from ..model.devices import describe_devices

    for name, full in describe_devices(ov.Core()):
        print(f"{name}\t{full}")
    return 0
