"""Inference precision: chosen by streamdet's settings, never silently by OpenVINO, and reported as compiled.

OpenVINO compiles for bf16 by itself on CPUs with AVX-512 BF16 or AMX (and f16 on GPUs), which changes the
detections (docs/precision.md). These tests run on whatever CPU the machine has: where a precision is not
available, the test of it checks the refusal instead.
"""

from __future__ import annotations

import json

import openvino as ov
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from media import clip

from streamdet.config.sections import DEFAULT_PRECISION, Config
from streamdet.model.devices import PRECISIONS, precision_config
from streamdet.errors import DeviceError
from streamdet.model.detector import load
from streamdet.pipeline import Pipeline

CORE = ov.Core()
CAPABILITIES = CORE.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
AVAILABLE = [p for p, cap in PRECISIONS.items() if cap in CAPABILITIES]
MISSING = [p for p, cap in PRECISIONS.items() if cap not in CAPABILITIES]


@pytest.mark.unit
def test_the_precision_reaches_the_device_directly_or_through_device_properties():
    assert precision_config(CORE, "CPU", "f32") == {"INFERENCE_PRECISION_HINT": "f32"}
    assert precision_config(CORE, "BATCH:CPU(2)", "f32") == {"INFERENCE_PRECISION_HINT": "f32"}
    for device in ("AUTO", "AUTO:CPU", "MULTI:CPU", "HETERO:CPU"):
        assert precision_config(CORE, device, "f32") == {"DEVICE_PROPERTIES": {"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}}
    assert precision_config(CORE, "CPU", "auto") == {}


@pytest.mark.unit
@pytest.mark.parametrize("precision", MISSING or ["none"])
def test_a_precision_the_cpu_lacks_is_refused_not_quietly_replaced(precision):
    if precision == "none":
        pytest.skip("this CPU runs f32, bf16 and f16: no precision to refuse")
    # On a CPU without FP16, OpenVINO 2026 compiles an f16 request as bf16 (or f32) without a word.
    with pytest.raises(DeviceError) as err:
        precision_config(CORE, "AUTO:CPU", precision)
    assert str(err.value) == (f"device CPU cannot infer in {precision} (it runs {', '.join(AVAILABLE)}); "
                              "set inference.precision (--precision) to one of those, or auto")


def test_the_default_precision_is_what_is_compiled(pedestrian_xml):
    """Fails if anything but the chosen default is compiled: bf16 is what OpenVINO picks here unless told."""
    detector = load(pedestrian_xml)
    compiled = detector.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    assert DEFAULT_PRECISION == "f32"
    assert (detector.precision, compiled, detector.devices) == ("f32", "f32", ["CPU"])
    config = Config()
    config.sources = [str(clip("carphone_pristine"))]
    config.display.show = "no"
    with Pipeline(config, detector=detector) as pipeline:
        summary = pipeline.run()
    assert summary.inference.precision == "f32" and summary.inference.devices == ["CPU"]
    assert "inference: " in summary.format() and "precision f32" in summary.format()


@pytest.mark.parametrize("precision", AVAILABLE)
def test_each_available_precision_is_compiled_as_asked(pedestrian_xml, precision):
    for device in ("CPU", "AUTO:CPU"):
        detector = load(pedestrian_xml, device, precision=precision)
        assert detector.precision == precision, device


def test_start_line_summary_and_summary_json_name_the_precision_and_device(tmp_path, model_cache):
    from media import pedestrian_pb

    summary = tmp_path / "summary.json"
    proc = streamdet("run", "-s", str(clip("carphone_pristine")), "-m", str(pedestrian_pb()), "--no-show",
                     "--summary-json", str(summary), env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    start = [l for l in proc.stderr.splitlines() if l.startswith("streamdet: inference: ")]
    assert start and "on CPU, precision f32" in start[0] and "FP16 weights" in start[0], proc.stderr
    report = json.loads(summary.read_text())
    assert report["inference"]["precision"] == "f32" and report["inference"]["devices"] == ["CPU"]
    assert report["inference"]["weights"] == "FP16" and report["inference"]["requests"] >= 1
    if MISSING:
        proc = streamdet("run", "-s", str(clip("carphone_pristine")), "-m", str(pedestrian_pb()), "--no-show",
                         "--precision", MISSING[0], env=cli_env(model_cache))
        assert_one_line_error(proc, f"cannot infer in {MISSING[0]}")


def test_model_check_compares_a_precision_with_f32(model_cache, pedestrian_xml):
    variant = AVAILABLE[-1] if AVAILABLE[-1] != "f32" else "auto"
    proc = streamdet("model", "check", str(pedestrian_xml), "--footage", str(clip("carphone_pristine")),
                     "--precision", variant, "--frames", "30", "--bench-seconds", "0.6", env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("model.xml in ") and "against model.xml in f32 on 30 frames of carphone_pristine.mp4" in lines[0]
    assert lines[2].strip().startswith("all:  F1 ") and "boxes in both" in lines[2]
    assert "throughput" in lines[-1] and "FPS" in lines[-1]
    proc = streamdet("model", "check", str(pedestrian_xml), "--footage", str(clip("carphone_pristine")),
                     env=cli_env(model_cache))
    assert_one_line_error(proc, "nothing to compare", "--against")
