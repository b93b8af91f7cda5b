"""`streamdet model quantize` on real weights and real clips: INT8 written, checked, refused, explained."""

from __future__ import annotations

import re

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from clirun import assert_one_line_error, cli_env, streamdet, streamdet_process
from helpers import decode, write_clip
from media import clip

from streamdet.model.agreement import Agreement, match
from streamdet.model.calibration import input_spec, list_footage, prepare, read_frames, split, spread
from streamdet.detections import Detections
from streamdet.errors import SourceError
from streamdet.model.detector import inspect, load
from streamdet.model.ir import ModelForm, prepare_model, recognise
from streamdet.model.precision import is_int8, weights_precision

CALIB = "bikes"                                # quantised on this clip
HELD_OUT = ("carphone_pristine", "bigbuckbunny")  # checked on these


@pytest.fixture(scope="module")
def quantized(pedestrian_xml, tmp_path_factory):
    """One INT8 model for the whole module: calibrated on bikes, checked by the command on the other two."""
    folder = tmp_path_factory.mktemp("int8")
    out = folder / "pedestrian_int8.xml"
    proc = streamdet_process("model", "quantize", str(pedestrian_xml), "--calib", str(clip(CALIB)), "--frames", "100",
                     *[a for name in HELD_OUT for a in ("--check", str(clip(name)))], "--check-frames", "60",
                     "--bench-seconds", "1", "-o", str(out), env=cli_env(folder / "cache"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_writes_an_int8_model_with_its_figures(quantized):
    out, proc = quantized
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert not list(out.parent.glob(".quantize-*")), "the staging folder must be gone"
    model = ov.Core().read_model(str(out))
    kinds = {op.get_type_name() for op in model.get_ops()}
    weights = {op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert "FakeQuantize" in kinds or weights & {"i8", "u8"}
    assert is_int8(model) and weights_precision(model) == "INT8"
    # The SSD's box decoding stays in floating point.
    assert not [op for op in model.get_ops()
                if op.get_type_name() == "FakeQuantize" and op.get_friendly_name().startswith("Postprocessor/")]
    assert "Traceback" not in proc.stderr and "Statistics collection" not in proc.stdout + proc.stderr
    text = proc.stdout
    assert "100 frames of bikes.mp4" in text
    for name in HELD_OUT:
        assert re.search(rf"{name}\.mp4: F1 \d\.\d+ \(precision \d\.\d+, recall \d\.\d+", text), text
    fps = re.search(r"FP16 ([\d.]+) FPS, INT8 ([\d.]+) FPS, INT8/FP16 ([\d.]+)x", text)
    assert fps and float(fps[1]) > 0 and float(fps[2]) > 0, text
    assert f"written: {out}" in text


def _independent_counts(reference: Detections, changed: Detections) -> tuple[int, int, int]:
    """Matched, INT8-only, FP-only: each FP box, best score first, takes the free INT8 box of its class
    that overlaps it most, if at IoU >= 0.5 (written apart from streamdet.agreement on purpose)."""
    free = list(range(len(changed)))
    matched = 0
    for i in np.argsort(-reference.scores):
        best, best_iou = None, 0.5
        for j in free:
            if changed.class_ids[j] != reference.class_ids[i]:
                continue
            a, b = reference.xyxy[i], changed.xyxy[j]
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
            if w * h / union >= best_iou:
                best, best_iou = j, w * h / union
        if best is not None:
            free.remove(best)
            matched += 1
    return matched, len(changed) - matched, len(reference) - matched


def test_int8_agrees_with_fp16_on_a_clip_it_never_saw(quantized, pedestrian_xml, model_cache):
    out, _ = quantized
    fp16, int8 = load(pedestrian_xml, cache_dir=model_cache), load(out, cache_dir=model_cache)
    matched = extra = missed = 0
    for image in decode(clip("carphone_pristine"))[::2]:  # full size: the detectors resize as in a run
        m, e, x = _independent_counts(fp16.detect(image), int8.detect(image))
        matched, extra, missed = matched + m, extra + e, missed + x
    assert matched >= 50, "the man in carphone is found in nearly every frame"
    f1 = 2 * matched / (2 * matched + extra + missed)
    assert f1 >= 0.95, (matched, extra, missed)


def test_model_check_measures_the_int8_model_against_its_original(quantized, pedestrian_xml, model_cache):
    """`model check --against`: the same agreement as quantize's, on footage named afterwards (one implementation)."""
    out, _ = quantized
    proc = streamdet("model", "check", str(out), "--against", str(pedestrian_xml), "--footage",
                     str(clip("carphone_pristine")), "--frames", "60", "--bench-seconds", "0.6", env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{out.name} in f32 against model.xml in f32 on 60 frames of carphone_pristine.mp4"
    f1 = float(lines[2].split("F1 ")[1].split()[0])
    assert f1 >= 0.95 and "variant only" in lines[2], lines[2]
    assert "x" in lines[-1].split(",")[-1], lines[-1]


def test_model_info_shows_int8_and_where_it_came_from(quantized, pedestrian_xml, tmp_path):
    out, _ = quantized
    proc = streamdet("model", "info", str(out), env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "precision: INT8" in proc.stdout
    lines = [l for l in proc.stdout.splitlines() if l.startswith("quantized:")]
    assert len(lines) == 3, proc.stdout
    assert "streamdet" in lines[0] and "nncf 3." in lines[0] and pedestrian_xml.name in lines[0]
    assert "100 frames of bikes.mp4" in lines[1]
    assert re.search(r"F1 \d\.\d{3} \(precision", lines[2]), lines[2]
    info = inspect(out, tmp_path)
    assert info.precision == "INT8" and info.quantized.frames == 100 and info.quantized.footage == "bikes.mp4"


def test_refuses_a_model_that_agrees_too_little_and_writes_nothing(pedestrian_xml, tmp_path):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "int8.xml"
    proc = streamdet_process("model", "quantize", str(pedestrian_xml), "--calib", str(clip("carphone_pristine")),
                     "--frames", "10", "--check-frames", "10", "--bench-seconds", "0", "--min-agreement", "1.01",
                     "-o", str(out), env=cli_env(tmp_path / "cache"), timeout=300)
    line = assert_one_line_error(proc, "F1 ", "below --min-agreement 1.01", "nothing written", "--force")
    assert re.search(r"F1 \d\.\d{3}", line)
    assert "frames between the calibration frames" in proc.stdout, "the figures are shown before the refusal"
    assert not list(out.parent.iterdir()), "no model, no staging folder left"


def test_prepared_frame_fed_to_the_raw_model_equals_the_compiled_preprocessing(pedestrian_xml, model_cache):
    core = ov.Core()
    raw = core.read_model(str(pedestrian_xml))
    spec = input_spec(raw, recognise(raw, "pedestrian"))
    assert spec.size == (300, 300) and spec.form == "tf" and spec.dtype == np.uint8
    # in f32 as the detector: the comparison is of the preprocessing, not of two precisions
    plain = core.compile_model(raw, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    detector = load(pedestrian_xml, cache_dir=model_cache)
    wrapped = detector.compiled.create_infer_request()
    for name in ("carphone_pristine", "bigbuckbunny"):  # 176x144 upscaled, 1280x720 downscaled
        image = decode(clip(name), 1)[0]
        plain.infer(prepare(image, spec))
        wrapped.infer(detector.infer_input(image))
        for role in ("detection_boxes", "detection_scores", "detection_classes"):
            np.testing.assert_allclose(plain.get_tensor(role + ":0").data, wrapped.get_tensor(role + ":0").data,
                                       atol=1e-4, err_msg=f"{name} {role}")


@pytest.mark.unit
def test_prepare_for_the_legacy_form_gives_nchw_bgr_of_the_model_type():
    """A legacy-form input (NCHW BGR f32): the raw model on prepare()'s output sees what the prepared model does."""
    image_in = ops.parameter([1, 3, 6, 8], ov.Type.f32, name="image")
    model = ov.Model([ops.result(ops.multiply(image_in, ops.constant(np.float32(1))))], [image_in], "legacy_input")
    form = ModelForm("legacy", {})
    spec = input_spec(model, form)
    assert spec.size == (8, 6) and spec.dtype == np.float32
    image = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    core = ov.Core()
    wrapped = core.compile_model(prepare_model(model.clone(), form, "legacy"), "CPU")
    plain = core.compile_model(model, "CPU")
    expected = wrapped(image[np.newaxis])[0]
    np.testing.assert_array_equal(plain(prepare(image, spec))[0], expected)
    np.testing.assert_array_equal(expected[0, 0], image[:, :, 0])  # channel 0 is blue: BGR kept
    bigger = cv2.resize(image, (16, 12), interpolation=cv2.INTER_LINEAR)
    assert prepare(bigger, spec).shape == (1, 3, 6, 8)


# --- bad input: one line, non-zero exit, no traceback -------------------------------------------


@pytest.mark.unit
def test_calibration_footage_errors_come_before_the_model_is_read(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "x.mp4"
    text.write_text("not a video\n")
    missing_model = str(tmp_path / "no-model.xml")  # would fail too: the footage is checked first
    env = cli_env(tmp_path / "cache")
    out = str(tmp_path / "out.xml")
    proc = streamdet_process("model", "quantize", missing_model, "--calib", str(empty), "-o", out, env=env)
    assert_one_line_error(proc, "--calib", str(empty), "no videos or images")
    proc = streamdet_process("model", "quantize", missing_model, "--calib", str(clip("bikes")), "--calib", str(text), "-o", out, env=env)
    assert_one_line_error(proc, "--calib", "x.mp4", "not a readable video")
    proc = streamdet_process("model", "quantize", missing_model, "--calib", str(tmp_path / "nowhere"), "-o", out, env=env)
    assert_one_line_error(proc, "--calib", "nowhere", "no such file or folder")
    proc = streamdet_process("model", "quantize", missing_model, "--calib", str(clip("bikes")), "--check", str(empty), "-o", out, env=env)
    assert_one_line_error(proc, "--check", "no videos or images")
    assert not list(empty.iterdir()) and not (tmp_path / "out.xml").exists()


def test_output_errors(pedestrian_xml, tmp_path):
    env = cli_env(tmp_path / "cache")
    calib = str(clip("carphone_pristine"))
    existing = tmp_path / "taken.xml"
    existing.write_text("<net/>")
    proc = streamdet_process("model", "quantize", str(pedestrian_xml), "--calib", calib, "-o", str(existing), env=env)
    assert_one_line_error(proc, "taken.xml", "exists already", "--overwrite")
    assert existing.read_text() == "<net/>"
    proc = streamdet_process("model", "quantize", str(pedestrian_xml), "--calib", calib, "-o", str(pedestrian_xml),
                     "--overwrite", env=env)
    assert_one_line_error(proc, "is the input model")
    proc = streamdet_process("model", "quantize", str(pedestrian_xml), "--calib", calib, "-o", str(tmp_path / "int8.bin"), env=env)
    assert_one_line_error(proc, "give an .xml path")
    proc = streamdet_process("model", "quantize", str(pedestrian_xml), "--calib", calib, "-o", str(tmp_path / "no" / "a.xml"), env=env)
    assert_one_line_error(proc, "does not exist")


def test_an_int8_model_is_not_quantised_again(quantized, tmp_path):
    out, _ = quantized
    proc = streamdet_process("model", "quantize", str(out), "--calib", str(clip("carphone_pristine")), "-o",
                     str(tmp_path / "again.xml"), env=cli_env(tmp_path / "cache"))
    assert_one_line_error(proc, "INT8 already", "FP16 or FP32")
    assert not (tmp_path / "again.xml").exists()


def test_without_nncf_says_how_to_install_it(pedestrian_xml, tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['nncf'] = None; from streamdet.cli import main; "  # `import nncf` now fails
            f"sys.exit(main(['model', 'quantize', {str(pedestrian_xml)!r}, '--calib', {str(clip('bikes'))!r}, "
            f"'-o', {str(tmp_path / 'int8.xml')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(tmp_path / "cache"), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert_one_line_error(proc, "NNCF", "pip install 'streamdet[quantize]'")


# --- unit tier: matching and frame choice, no model -----------------------------------------------


def _dets(*rows) -> Detections:
    """Detections from (x1, y1, x2, y2, class id, score) rows."""
    array = np.array(rows, np.float32).reshape(-1, 6)
    ids = array[:, 4].astype(np.int32)
    return Detections(array[:, :4].copy(), array[:, 5].copy(), ids, tuple(f"class{i}" for i in ids))


@pytest.mark.unit
def test_match_pairs_same_class_boxes_that_overlap_enough():
    ref = _dets((0, 0, 10, 10, 1, 0.9), (20, 20, 30, 30, 1, 0.8), (50, 50, 60, 60, 2, 0.7))
    new = _dets((1, 0, 11, 10, 1, 0.9),     # IoU 0.82 with the first: a match
                (25, 20, 35, 30, 1, 0.8),   # IoU 0.33 with the second: too little
                (50, 50, 60, 60, 3, 0.7))   # same place, other class: no match
    a = match(ref, new)
    assert (a.matched, a.extra, a.missed, a.frames) == (1, 2, 2, 1)
    assert a.precision == pytest.approx(1 / 3) and a.recall == pytest.approx(1 / 3) and a.f1 == pytest.approx(1 / 3)


@pytest.mark.unit
def test_match_is_greedy_best_overlap_first_and_uses_each_box_once():
    ref = _dets((0, 0, 10, 10, 1, 0.9), (0, 0, 10, 12, 1, 0.6))
    new = _dets((0, 0, 10, 12, 1, 0.9))  # overlaps both; the second exactly
    a = match(ref, new)
    assert (a.matched, a.extra, a.missed) == (1, 0, 1)
    exact = _dets((0, 0, 10, 10, 1, 0.9))
    assert match(exact, _dets((0, 0, 10, 20, 1, 0.9))).matched == 1       # IoU exactly 0.5 counts
    assert match(exact, _dets((0, 0, 10, 21, 1, 0.9))).matched == 0


@pytest.mark.unit
def test_f1_is_taken_over_counts_summed_across_frames():
    empty = _dets()
    box = _dets((0, 0, 10, 10, 1, 0.9))
    quiet = match(empty, empty)
    assert quiet.nothing_found and quiet.f1 == quiet.precision == quiet.recall == 1.0
    total = quiet + quiet + match(box, box) + match(box, empty) + match(empty, box)
    # Empty frames add nothing either way: 1 matched, 1 extra, 1 missed over 5 frames.
    assert (total.matched, total.extra, total.missed, total.frames) == (1, 1, 1, 5)
    assert total.f1 == pytest.approx(0.5) and not total.nothing_found
    assert Agreement(0, 0, 3, 3).f1 == 0.0 and Agreement(0, 0, 3, 3).precision == 1.0


@pytest.mark.unit
def test_check_frames_lie_between_the_calibration_frames():
    calib, check = split(250, 120, 120)
    assert len(calib) == 120 and len(check) == 120 and not set(calib) & set(check)
    assert calib[0] < 5 and calib[-1] > 245 and check[0] < 5 and check[-1] > 245, "both spread over the whole clip"
    calib, check = split(100, 300, 200)  # too short for both: shared 3 to 2
    assert (len(calib), len(check)) == (60, 40) and not set(calib) & set(check)
    assert list(spread(np.arange(4), 10)) == [0, 1, 2, 3]
    with pytest.raises(SourceError, match="none left to check"):
        split(1, 300, 200)


@pytest.mark.unit
def test_int8_recognised_by_fake_quantize_or_compressed_weights():
    x = ops.parameter([1, 4], ov.Type.f32)
    weights = ops.constant(np.ones((4, 4), np.float16))
    fp16 = ov.Model([ops.result(ops.matmul(x, ops.convert(weights, ov.Type.f32), False, True))], [x])
    assert not is_int8(fp16) and weights_precision(fp16) == "FP16"
    lo, hi = ops.constant(np.float32(-1)), ops.constant(np.float32(1))
    fq = ov.Model([ops.result(ops.fake_quantize(x, lo, hi, lo, hi, 256))], [x])
    assert is_int8(fq) and weights_precision(fq) == "INT8"
    packed = ops.constant(np.ones((4, 4), np.int8))
    compressed = ov.Model([ops.result(ops.matmul(x, ops.convert(packed, ov.Type.f32), False, True))], [x])
    assert weights_precision(compressed) == "INT8"
    image = ops.parameter([1, 4], ov.Type.u8)
    as_u8 = ov.Model([ops.result(ops.add(image, ops.constant(np.uint8(1))))], [image])  # u8 data, not weights
    assert not is_int8(as_u8)


@pytest.mark.unit
def test_footage_from_a_folder_of_videos_and_images_in_name_order(tmp_path):
    rng = np.random.default_rng(7)
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(10)]
    write_clip(frames, tmp_path / "b_clip.mp4")
    stills = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(2)]
    cv2.imwrite(str(tmp_path / "a_first.png"), stills[0])
    cv2.imwrite(str(tmp_path / "c_last.png"), stills[1])
    (tmp_path / "notes.txt").write_text("not footage\n")
    footage = list_footage([str(tmp_path)], "--calib")
    assert [c.path.name for c in footage.clips] == ["a_first.png", "b_clip.mp4", "c_last.png"]
    assert [c.frames for c in footage.clips] == [1, 10, 1] and footage.total == 12
    got, owners = read_frames(footage, np.array([11, 0, 3]), lambda image: image, "--calib")
    assert owners == [0, 1, 2]
    np.testing.assert_array_equal(got[0], stills[0])
    np.testing.assert_array_equal(got[2], stills[1])
    assert abs(float(got[1].mean()) - 40) < 3, "frame 3 of all the footage is the clip's frame 2"
    assert footage.names() == f"{tmp_path.name}/", "a folder is named as given, not file by file"
    one = list_footage([str(tmp_path / "c_last.png"), str(tmp_path / "b_clip.mp4")], "--check")
    assert one.names(np.array([0])) == "c_last.png" and one.names() == "c_last.png, b_clip.mp4"
