"""The model layer on real weights: conversion, caching, both output forms, errors."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino.preprocess import ColorFormat, PrePostProcessor
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from media import clip, pedestrian_pb

from streamdet.errors import DeviceError, ModelError
from streamdet.labels import load_labels
from streamdet.model import load, resolve_ir


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(clip("carphone_pristine")))
    out = []
    while len(out) < 40:
        ok, image = cap.read()
        if not ok:
            break
        out.append(image)
    return out


def test_label_file_is_coco_91_with_background():
    labels = load_labels()
    assert len(labels) == 92
    assert labels[0] == "__background__" and labels[1] == "person" and labels[3] == "car" and labels[90] == "toothbrush"


def test_pb_converts_once_and_finds_the_person(cache, frames):
    detector = load(pedestrian_pb(), cache_dir=cache)
    assert detector.form == "tf"
    xml = resolve_ir(pedestrian_pb(), cache)
    stamp = (xml.stat().st_mtime_ns, xml.with_suffix(".bin").stat().st_mtime_ns)
    again = load(pedestrian_pb(), cache_dir=cache)  # from the cache: nothing rewritten
    assert (xml.stat().st_mtime_ns, xml.with_suffix(".bin").stat().st_mtime_ns) == stamp
    assert again.path == xml
    for image in frames[::5]:
        found = detector.detect(image)
        assert found.labels[:1] == ("person",)
        assert found.scores[0] > 0.9
        x1, y1, x2, y2 = found.xyxy[0]
        # The man in carphone fills the middle and right of the 176x144 frame, head near the top.
        assert 15 < x1 < 50 and y1 < 30 and x2 > 160 and y2 > 130


def test_fp16_by_default_fp32_on_request(cache):
    fp16 = resolve_ir(pedestrian_pb(), cache)
    fp32 = resolve_ir(pedestrian_pb(), cache, fp32=True)
    assert fp16 != fp32
    assert fp32.with_suffix(".bin").stat().st_size > 1.8 * fp16.with_suffix(".bin").stat().st_size


def _legacy_from_tf(tf_xml: Path, out: Path) -> Path:
    """Derive the old converter's form: NCHW BGR input, one DetectionOutput [1,1,N,7]."""
    model = ov.Core().read_model(str(tf_xml))
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NCHW")).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NHWC"))
    ppp.input().preprocess().convert_color(ColorFormat.RGB)
    model = ppp.build()
    # model.outputs are the Result nodes' ports; build on what feeds them.
    by_name = {n.split(":")[0]: port.get_node().input_value(0) for port in model.outputs for n in port.get_names()}
    boxes = ops.gather(by_name["detection_boxes"], ops.constant(np.array([1, 0, 3, 2], np.int64)), ops.constant(np.int64(2)))
    axis2 = ops.constant(np.array([2], np.int64))
    classes = ops.unsqueeze(by_name["detection_classes"], axis2)
    scores = ops.unsqueeze(by_name["detection_scores"], axis2)
    image_id = ops.multiply(scores, ops.constant(np.float32(0)))
    rows = ops.concat([image_id, classes, scores, boxes], 2)
    detection_output = ops.reshape(rows, ops.constant(np.array([1, 1, -1, 7], np.int64)), False)
    detection_output.output(0).set_names({"DetectionOutput"})
    legacy = ov.Model([ops.result(detection_output)], model.get_parameters(), "legacy_ssd")
    ov.save_model(legacy, str(out))
    return out


def test_both_output_forms_give_the_same_detections(cache, frames, tmp_path):
    tf = load(pedestrian_pb(), cache_dir=cache, threshold=0.3)
    legacy_xml = _legacy_from_tf(resolve_ir(pedestrian_pb(), cache), tmp_path / "legacy.xml")
    legacy = load(legacy_xml, cache_dir=cache, threshold=0.3)
    assert legacy.form == "legacy"
    compared = 0
    for image in frames:
        a, b = tf.detect(image), legacy.detect(image)
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1.0)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
        assert list(a.class_ids) == list(b.class_ids)
        compared += len(a)
    assert compared >= len(frames)


def test_threshold_and_class_filter(cache, frames):
    everyone = load(pedestrian_pb(), cache_dir=cache, threshold=0.01)
    strict = load(pedestrian_pb(), cache_dir=cache, threshold=0.9, classes=["person"])
    by_id = load(pedestrian_pb(), cache_dir=cache, threshold=0.9, classes=[1])
    nobody = load(pedestrian_pb(), cache_dir=cache, threshold=0.01, classes=["car"])
    image = frames[0]
    assert len(everyone.detect(image)) > len(strict.detect(image)) >= 1
    assert np.array_equal(strict.detect(image).xyxy, by_id.detect(image).xyxy)
    assert len(nobody.detect(image)) == 0
    with pytest.raises(ModelError, match="'bogus'"):
        load(pedestrian_pb(), cache_dir=cache, classes=["bogus"])


def test_user_label_file_replaces_coco(cache, frames, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("background\npedestrian\n")
    detector = load(pedestrian_pb(), cache_dir=cache, labels=labels)
    assert detector.detect(frames[0]).labels[0] == "pedestrian"


def test_devices(cache):
    with pytest.raises(DeviceError, match=r"removed from OpenVINO in 2023\.0.*devices present: .*CPU"):
        load(pedestrian_pb(), "MYRIAD", cache_dir=cache)
    with pytest.raises(DeviceError, match="MYRIAD"):
        load(pedestrian_pb(), "AUTO:MYRIAD,CPU", cache_dir=cache)
    with pytest.raises(DeviceError, match=r"'TPU' is not present; devices present: .*CPU"):
        load(pedestrian_pb(), "TPU", cache_dir=cache)
    assert load(pedestrian_pb(), "AUTO:CPU", cache_dir=cache).form == "tf"


def _classifier(path: Path) -> Path:
    image = ops.parameter([1, 3, 224, 224], ov.Type.f32, name="data")
    pooled = ops.reduce_mean(ops.relu(image), ops.constant(np.array([2, 3], np.int64)), False)
    pooled.output(0).set_names({"prob"})
    ov.save_model(ov.Model([ops.result(pooled)], [image], "classifier"), str(path))
    return path


def test_model_cli_convert_info_devices(tmp_path, cache):
    env = cli_env(cache)
    out = tmp_path / "ped.xml"
    proc = streamdet("model", "convert", str(pedestrian_pb()), "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.with_suffix(".bin").is_file()
    info = streamdet("model", "info", str(out), env=env)
    assert info.returncode == 0, info.stderr
    assert "form:      tf" in info.stdout and "labels:    92" in info.stdout and "FP16" in info.stdout
    devices = streamdet("devices", env=env)
    assert devices.returncode == 0 and devices.stdout.startswith("CPU\t")


def test_bad_models_give_one_line_errors(tmp_path, cache):
    env = cli_env(cache)
    good_xml = resolve_ir(pedestrian_pb(), cache)
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(good_xml.read_bytes())
    cut = tmp_path / "cut.xml"
    cut.write_bytes(good_xml.read_bytes())
    cut.with_suffix(".bin").write_bytes(good_xml.with_suffix(".bin").read_bytes()[:1000])
    noise = tmp_path / "noise.pb"
    noise.write_bytes(os.urandom(4096))
    text = tmp_path / "text.xml"
    text.write_text("hello, I am not a model\n")
    text.with_suffix(".bin").write_bytes(b"\0" * 16)
    classifier = _classifier(tmp_path / "classifier.xml")
    src = str(clip("carphone_pristine"))
    cases = [
        (["--model", str(tmp_path / "missing.xml")], ["missing.xml", "no such file"]),
        (["--model", str(lonely)], ["lonely.bin", "missing"]),
        (["--model", str(cut)], ["cut.xml"]),
        (["--model", str(noise)], ["noise.pb", "frozen graph"]),
        (["--model", str(text)], ["text.xml"]),
        (["--model", str(classifier)], ["classifier.xml", "prob", "detection_boxes"]),
        (["--model", "yolov99"], ["yolov99"]),
        (["--model", str(good_xml), "--device", "TPU"], ["TPU", "devices present"]),
        (["--model", str(good_xml), "--device", "MYRIAD"], ["MYRIAD", "2023.0", "devices present: CPU"]),
        (["--model", str(good_xml), "--device", "AUTO:MYRIAD"], ["MYRIAD", "2023.0"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(streamdet("run", "--source", src, *args, env=env), *fragments)
    assert_one_line_error(streamdet("model", "info", str(classifier), env=env), "classifier.xml")
    assert_one_line_error(streamdet("model", "convert", str(noise), env=env), "noise.pb")
