"""The model layer on real weights: conversion, caching, both output forms, decoding, errors."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from openvino.preprocess import ColorFormat, PrePostProcessor

from clirun import assert_one_line_error, cli_env, streamdet, streamdet_process
from media import clip, pedestrian_pb

from streamdet.errors import ModelError
from streamdet.model.labels import label_for, load_labels
from streamdet.config.sections import InferenceConfig
from streamdet.engines.backend import requests_in_flight
from streamdet.model.detector import inspect, load
from streamdet.model.ir import resolve_ir


@pytest.mark.unit
def test_label_file_is_coco_91_with_background():
    labels = load_labels()
    assert len(labels) == 92
    assert labels[0] == "__background__"
    assert (labels[1], labels[3], labels[12], labels[90], labels[91]) == ("person", "car", "street sign", "toothbrush", "hair brush")
    assert all(labels), "no blank lines: ids index the file directly"


@pytest.mark.unit
def test_ids_beyond_the_label_file_get_a_generic_name(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("background\npedestrian\n")
    labels = load_labels(short)
    assert label_for(labels, 1) == "pedestrian"
    assert label_for(labels, 7) == "class7"
    with pytest.raises(ModelError, match="empty.txt"):
        empty = tmp_path / "empty.txt"
        empty.write_text("\n\n")
        load_labels(empty)


@pytest.mark.unit
def test_a_label_on_two_lines_is_refused_naming_the_file_lines_and_label(tmp_path):
    """`--classes person` would keep one of its ids and drop every detection of the other."""
    twice = tmp_path / "twice.txt"
    twice.write_text("background\nperson\ncar\n\nPerson\n")
    with pytest.raises(ModelError, match=r"labels '.*twice.txt': 'Person' is on lines 2 and 5"):
        load_labels(twice)
    (tmp_path / "blanks.txt").write_text("background\nperson\n\n\ncar\n")  # blank lines are unused ids
    assert load_labels(tmp_path / "blanks.txt")[4] == "car"


def _tree(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def test_pb_is_converted_once_then_taken_from_the_cache(tmp_path):
    started = time.perf_counter()
    xml = resolve_ir(pedestrian_pb(), tmp_path)
    first = time.perf_counter() - started
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    before = _tree(tmp_path)
    started = time.perf_counter()
    assert resolve_ir(pedestrian_pb(), tmp_path) == xml
    second = time.perf_counter() - started
    detector = load(pedestrian_pb(), cache_dir=tmp_path)
    assert _tree(tmp_path) == before, "the second start must not write anything to the cache"
    assert detector.path == xml and detector.form == "tf"
    # Hashing the .pb is all the second start does: far less than converting it.
    assert second < first / 3, (first, second)


def test_finds_the_person_in_carphone(model_cache, carphone_frames):
    detector = load(pedestrian_pb(), cache_dir=model_cache)
    for image in carphone_frames[::5]:
        found = detector.detect(image)
        assert found.labels[:1] == ("person",)
        assert found.scores[0] > 0.9
        x1, y1, x2, y2 = found.xyxy[0]
        # The man's head is near (60..115, 15..95) and his shoulders reach the right and bottom
        # edges; the striped seat at the far left is not him.
        assert 15 < x1 < 55 and y1 < 25 and x2 > 160 and y2 > 130
        assert ((found.xyxy >= 0) & (found.xyxy <= [176, 144, 176, 144])).all()


def test_boxes_scale_to_the_frame_given(model_cache, carphone_frames):
    detector = load(pedestrian_pb(), cache_dir=model_cache)
    small = carphone_frames[0]
    big = cv2.resize(small, (1280, 720), interpolation=cv2.INTER_LINEAR)
    a, b = detector.detect(small), detector.detect(big)
    assert a.labels[:1] == b.labels[:1] == ("person",)
    scale = np.array([1280 / 176, 720 / 144] * 2, np.float32)
    np.testing.assert_allclose(b.xyxy[0] / scale, a.xyxy[0], atol=4)
    assert abs(a.scores[0] - b.scores[0]) < 0.05


def test_infer_input_shares_or_resizes(model_cache, carphone_frames):
    detector = load(pedestrian_pb(), cache_dir=model_cache)
    assert detector.input_size == (300, 300)
    ready = np.ascontiguousarray(cv2.resize(carphone_frames[0], (300, 300)))
    assert np.shares_memory(detector.infer_input(ready).data, ready), "a 300x300 frame must go in without a copy"
    big = cv2.resize(carphone_frames[0], (1280, 720))
    one, two = detector.infer_input(big), detector.infer_input(big)
    assert list(one.shape) == [1, 300, 300, 3]
    assert not np.shares_memory(one.data, two.data), "concurrent requests need their own resized buffers"
    strided = cv2.resize(carphone_frames[0], (600, 600))[::2, ::2]
    assert list(detector.infer_input(strided).shape) == [1, 300, 300, 3]
    with pytest.raises(ModelError, match="8-bit BGR"):
        detector.infer_input(cv2.cvtColor(carphone_frames[0], cv2.COLOR_BGR2GRAY))


def test_fp16_by_default_fp32_on_request(model_cache, pedestrian_xml):
    fp32 = resolve_ir(pedestrian_pb(), model_cache, fp32=True)
    assert fp32 != pedestrian_xml
    assert fp32.with_suffix(".bin").stat().st_size > 1.8 * pedestrian_xml.with_suffix(".bin").stat().st_size
    assert inspect(fp32, model_cache).precision == "FP32"
    assert inspect(pedestrian_xml, model_cache).precision == "FP16"


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


def test_both_output_forms_give_the_same_detections(model_cache, pedestrian_xml, carphone_frames, tmp_path):
    tf = load(pedestrian_xml, cache_dir=model_cache, threshold=0.3)
    legacy = load(_legacy_from_tf(pedestrian_xml, tmp_path / "legacy.xml"), cache_dir=model_cache, threshold=0.3)
    assert (tf.form, legacy.form) == ("tf", "legacy")
    compared = 0
    for image in carphone_frames:
        a, b = tf.detect(image), legacy.detect(image)
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1.0)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
        assert list(a.class_ids) == list(b.class_ids) and a.labels == b.labels
        compared += len(a)
    assert compared >= len(carphone_frames)


def _legacy_fixed_rows(path: Path, rows: np.ndarray) -> Path:
    """A legacy-form model whose DetectionOutput is `rows` whatever the (f32 NCHW) image."""
    image = ops.parameter([1, 3, 300, 300], ov.Type.f32, name="image")
    zero = ops.multiply(ops.reduce_mean(image, ops.constant(np.array([0, 1, 2, 3], np.int64)), True), ops.constant(np.float32(0)))
    out = ops.add(ops.constant(rows.reshape(1, 1, -1, 7).astype(np.float32)), zero)
    out.output(0).set_names({"detection_out"})
    # FP32 constants so the decoded numbers can be compared exactly.
    ov.save_model(ov.Model([ops.result(out)], [image], "fixed"), str(path), compress_to_fp16=False)
    return path


def test_legacy_rows_stop_at_image_id_minus_one_and_are_clipped(model_cache, tmp_path):
    rows = np.array([
        [0, 1, 0.90, 0.10, 0.20, 0.50, 0.60],
        [0, 3, 0.80, -0.10, 0.00, 1.20, 0.50],   # spills over the frame: clipped
        [0, 1, 0.20, 0.00, 0.00, 0.10, 0.10],    # under the threshold
        [-1, 0, 0.00, 0.00, 0.00, 0.00, 0.00],   # end of the list
        [0, 1, 0.99, 0.00, 0.00, 1.00, 1.00],    # padding after the end: ignored
    ])
    detector = load(_legacy_fixed_rows(tmp_path / "fixed.xml", rows), cache_dir=model_cache)
    assert detector.form == "legacy"
    found = detector.detect(np.zeros((100, 200, 3), np.uint8))
    assert found.labels == ("person", "car")
    np.testing.assert_allclose(found.xyxy, [[20, 20, 100, 60], [0, 0, 200, 50]], atol=1e-4)
    np.testing.assert_allclose(found.scores, [0.9, 0.8], atol=1e-6)
    assert found.class_ids.dtype == np.int32 and found.xyxy.dtype == np.float32


def test_threshold_and_class_filter(model_cache, pedestrian_xml, carphone_frames):
    everyone = load(pedestrian_xml, cache_dir=model_cache, threshold=0.01)
    strict = load(pedestrian_xml, cache_dir=model_cache, threshold=0.9, classes=["Person"])
    by_id = load(pedestrian_xml, cache_dir=model_cache, threshold=0.9, classes=[1])
    nobody = load(pedestrian_xml, cache_dir=model_cache, threshold=0.01, classes=["car"])
    image = carphone_frames[0]
    assert len(everyone.detect(image)) > len(strict.detect(image)) >= 1
    assert (everyone.detect(image).scores >= 0.01).all()
    assert np.array_equal(strict.detect(image).xyxy, by_id.detect(image).xyxy)
    assert len(nobody.detect(image)) == 0
    with pytest.raises(ModelError, match=r"class 'bogus' is not in the label file; use a name such as person, bicycle"):
        load(pedestrian_xml, cache_dir=model_cache, classes=["bogus"])


def test_user_label_file_replaces_coco(model_cache, pedestrian_xml, carphone_frames, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("background\npedestrian\n")
    detector = load(pedestrian_xml, cache_dir=model_cache, labels=labels, classes=["pedestrian"])
    assert detector.detect(carphone_frames[0]).labels[0] == "pedestrian"
    assert len(detector.labels) == 2
    with pytest.raises(ModelError, match="nothere.txt"):
        load(pedestrian_xml, cache_dir=model_cache, labels=tmp_path / "nothere.txt")


def test_model_cli_convert_then_info(tmp_path, model_cache):
    env = cli_env(model_cache)
    out = tmp_path / "ped.xml"
    proc = streamdet("model", "convert", str(pedestrian_pb()), "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.with_suffix(".bin").is_file()
    info = streamdet("model", "info", str(out), "--device", "cpu", env=env)
    assert info.returncode == 0, info.stderr
    for line in ("form:      tf", "labels:    92", "precision: FP16", "layout:    NHWC (RGB)",
                 f"cache:     {model_cache}", "input:     image_tensor", "output:    detection_boxes", "device:    CPU ("):
        assert line in info.stdout, info.stdout
    assert "requests:  " in info.stdout


def test_model_cli_convert_keeps_an_existing_ir_unless_overwrite(tmp_path, model_cache):
    env = cli_env(model_cache)
    out = tmp_path / "ped.xml"
    out.write_text("an IR of mine")
    assert_one_line_error(streamdet("model", "convert", str(pedestrian_pb()), "-o", str(out), env=env),
                          "ped.xml' exists already", "--overwrite")
    assert out.read_text() == "an IR of mine"
    proc = streamdet("model", "convert", str(pedestrian_pb()), "-o", str(out), "--overwrite", env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() != "an IR of mine" and out.with_suffix(".bin").is_file()


def _classifier(path: Path) -> Path:
    image = ops.parameter([1, 3, 224, 224], ov.Type.f32, name="data")
    pooled = ops.reduce_mean(ops.relu(image), ops.constant(np.array([2, 3], np.int64)), False)
    pooled.output(0).set_names({"prob"})
    ov.save_model(ov.Model([ops.result(pooled)], [image], "classifier"), str(path))
    return path


def test_bad_models_give_one_line_errors(tmp_path, model_cache, pedestrian_xml):
    env = cli_env(model_cache)
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(pedestrian_xml.read_bytes())
    cut = tmp_path / "cut.xml"
    cut.write_bytes(pedestrian_xml.read_bytes())
    cut.with_suffix(".bin").write_bytes(pedestrian_xml.with_suffix(".bin").read_bytes()[:1000])
    noise = tmp_path / "noise.pb"
    noise.write_bytes(np.random.default_rng(7).bytes(4096))
    text = tmp_path / "text.xml"
    text.write_text("hello, I am not a model\n")
    text.with_suffix(".bin").write_bytes(b"\0" * 16)
    classifier = _classifier(tmp_path / "classifier.xml")
    src = str(clip("carphone_pristine"))
    cases = [
        (["--model", str(tmp_path / "missing.xml")], ["missing.xml", "no such file"]),
        (["--model", str(lonely)], ["lonely.bin", "missing"]),
        (["--model", str(cut)], ["cut.xml", "not a readable OpenVINO IR"]),
        (["--model", str(noise)], ["noise.pb", "frozen graph"]),
        (["--model", str(text)], ["text.xml", "not a readable OpenVINO IR"]),
        (["--model", str(classifier)], ["classifier.xml", "prob", "detection_boxes", "DetectionOutput"]),
        (["--model", "yolov99"], ["yolov99", "ssdlite_mobilenet_v2"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(streamdet("run", "--source", src, *args, env=env), *fragments)
    assert_one_line_error(streamdet("model", "info", str(classifier), env=env), "classifier.xml", "expected")
    assert_one_line_error(streamdet("model", "convert", str(noise), env=env), "noise.pb")
    assert_one_line_error(streamdet("model", "convert", str(tmp_path / "gone.pb"), env=env), "gone.pb", "no such file")
    # Nothing half-converted was left for the next run to trust.
    assert not list((model_cache / "converted").rglob(".convert-*"))


def test_bad_inference_settings_are_named(model_cache, pedestrian_xml):
    from streamdet.errors import ConfigError

    with pytest.raises(ConfigError, match="hint 'FASTEST'.*THROUGHPUT, LATENCY"):
        load(pedestrian_xml, cache_dir=model_cache, hint="FASTEST")
    with pytest.raises(ConfigError, match="threshold 1.5 is outside"):
        load(pedestrian_xml, cache_dir=model_cache, threshold=1.5)
    with pytest.raises(ConfigError, match="streams -1 is negative"):
        load(pedestrian_xml, cache_dir=model_cache, streams=-1)
    detector = load(pedestrian_xml, cache_dir=model_cache, hint="latency", streams=1, threads=1)
    assert detector.compiled.get_property("NUM_STREAMS") == 1 and detector.hint == "LATENCY"
    assert requests_in_flight(InferenceConfig(nireq=3), detector) == 3


@pytest.mark.parametrize("entry, fragment", [("999", "class id 999"), ("-3", "class id -3"), ("0", "class id 0"),
                                             ("92", "1 to 91"), ("unicorn", "class 'unicorn'")])
def test_class_filters_that_name_nothing_are_refused(entry, fragment, model_cache):
    from streamdet.model.labels import resolve_classes

    with pytest.raises(ModelError, match=fragment):
        resolve_classes(load_labels(), [entry])
    assert resolve_classes(load_labels(), ["person", "3", "91"]) == {1, 3, 91}
    # Through the CLI: refused before any work, so an empty cache stays empty.
    empty = model_cache.parent / f"empty-{entry}"
    proc = streamdet("run", "--source", str(clip("bikes")), "--model", str(pedestrian_pb()), "--classes", entry,
                     env=cli_env(empty))
    assert_one_line_error(proc, fragment)
    assert not empty.exists() or not any(empty.rglob("*"))


def _loops(model: ov.Model) -> int:
    return [op.get_type_name() for op in model.get_ordered_ops()].count("Loop")


def test_the_graphs_own_resize_loop_is_bypassed_without_changing_a_number(pedestrian_xml, carphone_frames):
    from streamdet.model.tf_preprocessor import drop_identity_resize

    core = ov.Core()
    original, bypassed = core.read_model(pedestrian_xml), core.read_model(pedestrian_xml)
    assert _loops(original) == 2  # the preprocessor's per-image resize, and the NMS per image
    assert drop_identity_resize(bypassed) and _loops(bypassed) == 1 and not drop_identity_resize(bypassed)
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    before, after = core.compile_model(original, "CPU", f32), core.compile_model(bypassed, "CPU", f32)
    for image in carphone_frames[::10]:
        rgb = cv2.resize(image, (300, 300))[None, :, :, ::-1].astype(np.float32)
        want, got = before(rgb), after(rgb)
        for port in range(len(original.outputs)):
            np.testing.assert_array_equal(got[after.output(port)], want[before.output(port)])
    # Loading does it: one loop left in what the CPU runs (its name for a Loop is TensorIterator).
    detector = load(pedestrian_xml)
    kinds = [op.get_rt_info()["layerType"].astype(str) for op in detector.compiled.get_runtime_model().get_ordered_ops()]
    assert kinds.count("TensorIterator") == 1 and detector.detect(carphone_frames[0]).labels[:1] == ("person",)
    # Frames fed at another size than the network's: the resize is real and stays.
    resized = core.read_model(pedestrian_xml)
    resized.reshape([1, 320, 320, 3])
    assert not drop_identity_resize(resized) and _loops(resized) == 2


@pytest.mark.unit
def test_ir_outputs_that_openvino_cannot_write_are_one_line_errors_before_any_work(tmp_path):
    """OpenVINO saves only to '.xml' in lower case: `-o ped.XML` is refused before the graph is converted."""
    empty = tmp_path / "cache"
    env = cli_env(empty)
    proc = streamdet("model", "convert", str(pedestrian_pb()), "-o", str(tmp_path / "ped2.XML"), env=env)
    assert_one_line_error(proc, "ped2.XML", "lower case")
    proc = streamdet_process("model", "quantize", str(pedestrian_pb()), "--calib", str(clip("carphone_pristine")),
                     "-o", str(tmp_path / "ped.XML"), env=env)
    assert_one_line_error(proc, "ped.XML", "lower case")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not empty.exists() or not any(empty.rglob("*"))


@pytest.mark.unit
def test_export_server_refuses_bad_names_and_repositories_before_converting(tmp_path):
    """A name `run --server-model` would refuse, or a repository that cannot be made, is found first."""
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"a recording")
    empty = tmp_path / "cache"
    env = cli_env(empty)
    cases = [
        (["--name", "x y"], ["'x y'", "plain name"]),
        (["--name", " "], ["' '", "plain name"]),
        (["--name", "../up"], ["'../up'", "plain name"]),
        (["-o", str(fake)], ["fake.mp4", "is a file, not a folder"]),
        (["-o", "/proc/1"], ["/proc/1", "cannot make"]),
    ]
    for args, fragments in cases:
        proc = streamdet("model", "export-server", str(pedestrian_pb()), *args, env=env, cwd=tmp_path)
        assert_one_line_error(proc, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.mp4"]
    assert fake.read_bytes() == b"a recording"
    assert not empty.exists() or not any(empty.rglob("*")), "the model was converted"


def test_export_server_hint_is_quoted_for_the_shell(tmp_path, model_cache, pedestrian_xml):
    repository = tmp_path / "my models"
    proc = streamdet("model", "export-server", str(pedestrian_xml), "-o", str(repository), "--name", "ped",
                     env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    assert (repository / "ped/1/model.xml").is_file()
    quoted = shlex.quote(str((repository / "ped").resolve()))
    assert f"--model_path {quoted} --model_name ped " in proc.stderr, proc.stderr
    assert "--server-model ped --source" in proc.stderr
