"""The main job end to end: real weights, real clips, the real command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from media import clip, pedestrian_pb

from streamdet.config import Config, DetectConfig, OutputConfig
from streamdet.model import load
from streamdet.pipeline import Pipeline


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def env(cache_dir) -> dict[str, str]:
    return cli_env(cache_dir)


@pytest.fixture(scope="session")
def detector(cache_dir):
    return load(pedestrian_pb(), cache_dir=cache_dir, threshold=0.5)


def read_jsonl(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n"), "the last JSONL line is cut off"
    return [json.loads(line) for line in text.splitlines()]


def video_props(path: Path) -> tuple[int, int, int, float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    return frames, width, height, fps


def decode_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    return frames


@pytest.mark.parametrize("name", ["bikes", "bigbuckbunny"])
def test_clip_to_mp4_and_jsonl(name, tmp_path, env, detector):
    out, js = tmp_path / "out.mp4", tmp_path / "det.jsonl"
    proc = streamdet("run", "--source", str(clip(name)), "--model", str(pedestrian_pb()),
                     "--output", str(out), "--json", str(js), "--nireq", "3", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    src = video_props(clip(name))
    got = video_props(out)
    assert got[:3] == src[:3]
    assert got[3] == pytest.approx(src[3], abs=0.01)

    records = read_jsonl(js)
    assert [r["frame"] for r in records] == list(range(src[0]))
    assert all(r["source"] == name for r in records)
    assert [r["pts_ms"] for r in records] == sorted(r["pts_ms"] for r in records)
    assert records[1]["pts_ms"] == pytest.approx(1000 / src[3], abs=1)

    # The pipeline must report what the model finds when run directly on the same frames.
    frames = decode_all(clip(name))
    persons_seen = 0
    for record, image in zip(records, frames):
        direct = detector.detect(image)
        got_boxes = np.array([d["box"] for d in record["detections"]], np.float32).reshape(-1, 4)
        confident = direct[direct.scores > 0.55]
        for box in confident.xyxy:
            assert len(got_boxes) and np.abs(got_boxes - box).max(axis=1).min() <= 2.0, (record["frame"], box, got_boxes)
        assert len(record["detections"]) <= len(direct[direct.scores > 0.45])
        persons_seen += sum(d["label"] == "person" for d in record["detections"])
    if name == "bikes":  # big buck bunny is a cartoon: nobody for a pedestrian model to find
        assert persons_seen > 50
    assert "FPS" in proc.stderr and "inference" in proc.stderr


def test_frame_order_and_no_drop_with_many_requests(tmp_path, env):
    js, summary = tmp_path / "det.jsonl", tmp_path / "summary.json"
    # Three passes over bikes in one file = 750 frames, with 6 requests in flight.
    long_clip = tmp_path / "long.mp4"
    frames = decode_all(clip("bikes"))
    writer = cv2.VideoWriter(str(long_clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, frames[0].shape[1::-1])
    for _ in range(3):
        for image in frames:
            writer.write(image)
    writer.release()
    proc = streamdet("run", "--source", str(long_clip), "--model", str(pedestrian_pb()),
                     "--json", str(js), "--summary-json", str(summary), "--nireq", "6", env=env)
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(js)
    assert [r["frame"] for r in records] == list(range(750))
    report = json.loads(summary.read_text())
    assert report["frames"] == 750
    assert report["sources"][0]["frames_dropped"] == 0
    assert report["sources"][0]["frames_read"] == 750
    for stage in ("decode", "inference", "write"):
        assert report["stages"][stage]["count"] > 0


def _start_long_run(tmp_path, env, *extra):
    out, js = tmp_path / "out.mp4", tmp_path / "det.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdet", "run", "--source", str(clip("bikes")), "--loop",
         "--model", str(pedestrian_pb()), "--output", str(out), "--json", str(js), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if js.exists() and js.stat().st_size > 20_000:
            break
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    return proc, out, js


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_file_finalises_outputs(signum, code, tmp_path, env):
    proc, out, js = _start_long_run(tmp_path, env)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert signal.Signals(signum).name in stderr  # the summary says why the run ended
    records = read_jsonl(js)
    assert [r["frame"] for r in records] == list(range(len(records)))
    frames, width, height, _ = video_props(out)
    assert (width, height) == (640, 272)
    assert frames == len(records)


def test_second_ctrl_c_aborts_but_leaves_playable_file(tmp_path, env):
    proc, out, js = _start_long_run(tmp_path, env)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    frames, width, height, _ = video_props(out)
    assert frames > 0 and (width, height) == (640, 272)
    records = read_jsonl(js)
    assert abs(frames - len(records)) <= 0, (frames, len(records))


def test_images_in_annotated_images_out(tmp_path, env):
    src_dir, out_dir = tmp_path / "frames", tmp_path / "annotated"
    src_dir.mkdir()
    for i, image in enumerate(decode_all(clip("carphone_pristine"))[:12]):
        cv2.imwrite(str(src_dir / f"f{i:03d}.png"), image)
    js = tmp_path / "det.jsonl"
    proc = streamdet("run", "--source", str(src_dir), "--model", str(pedestrian_pb()), "--output", str(out_dir),
                     "--json", str(js), "--no-fps", "--line-width", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(js)
    assert len(records) == 12
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in src_dir.iterdir())
    boxes_checked = 0
    for record in records:
        name = f"f{record['frame']:03d}.png"
        before = cv2.imread(str(src_dir / name))
        after = cv2.imread(str(out_dir / name))
        changed = np.any(before != after, axis=2)
        allowed = np.zeros_like(changed)
        h, w = changed.shape
        for det in record["detections"]:
            x1, y1, x2, y2 = (int(round(v)) for v in det["box"])
            # The outline plus the label plate above (or inside) the box.
            allowed[max(0, y1 - 30):min(h, y2 + 4), max(0, x1 - 4):min(w, x2 + 60)] = True
            ring = changed[max(0, y1 - 2):y2 + 3, max(0, x1 - 2):x2 + 3]
            assert ring[:, :3].any() and ring[:, -3:].any(), "box outline missing"
            boxes_checked += 1
        assert not (changed & ~allowed).any(), f"pixels changed away from the boxes in {name}"
        if not record["detections"]:
            assert not changed.any()
    assert boxes_checked > 0


def test_python_api_callback_and_iterator(tmp_path, detector):
    config = Config(sources=[str(clip("carphone_pristine"))], detect=DetectConfig(threshold=0.5),
                    output=OutputConfig(json=str(tmp_path / "api.jsonl")))
    config.display.show = "no"
    seen = []
    with Pipeline(config, detector=detector) as pipeline:
        summary = pipeline.run(on_result=seen.append)
    assert summary.frames == 120 == len(seen)
    assert [r.frame.index for r in seen] == list(range(120))
    assert sum(len(r.detections) for r in seen) > 60
    assert all(r.detections.labels == ("person",) * len(r.detections) for r in seen)
    assert len(read_jsonl(tmp_path / "api.jsonl")) == 120

    with Pipeline(config, detector=detector) as pipeline:
        first = next(iter(pipeline.results()))
        assert first.frame.index == 0
    # Leaving the loop early still finalises the outputs.
    assert read_jsonl(tmp_path / "api.jsonl")[0]["frame"] == 0


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_inputs_give_one_line_errors(tmp_path, env):
    pb = str(pedestrian_pb())
    truncated = _write(tmp_path / "cut.mp4", clip("bikes").read_bytes()[:3000])
    empty = _write(tmp_path / "empty.mp4", b"")
    text = _write(tmp_path / "notes.mp4", b"this is not a video\n" * 50)
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("x")
    good = str(clip("carphone_pristine"))
    bad_yaml = _write(tmp_path / "bad.yaml", b"detect: [threshold\n")
    unknown = _write(tmp_path / "unknown.yaml", b"detect:\n  treshold: 0.4\n")
    negative = _write(tmp_path / "neg.yaml", b"model:\n  name: x\ndetect:\n  threshold: -0.2\n")
    blocker = _write(tmp_path / "file", b"x")
    cases = [
        (["--source", str(tmp_path / "missing.mp4")], ["missing.mp4", "no such file"]),
        (["--source", str(empty)], ["empty"]),
        (["--source", str(truncated)], ["cut.mp4"]),
        (["--source", str(text)], ["notes.mp4"]),
        (["--source", str(no_images)], ["no images"]),
        (["--source", good, "--output", str(tmp_path / "nodir" / "out.mp4")], ["nodir"]),
        (["--source", good, "--output", str(blocker / "out.mp4")], ["out.mp4"]),
        (["--source", good, "--json", str(tmp_path / "nodir" / "d.jsonl")], ["nodir"]),
        (["--source", good, "--config", str(bad_yaml)], ["bad.yaml", "not valid YAML"]),
        (["--source", good, "--config", str(unknown)], ["treshold", "line 2"]),
        (["--source", good, "--config", str(negative)], ["threshold", "line 4"]),
        (["--source", good, "--threshold", "-1"], ["threshold"]),
        (["--source", good, "--config", str(tmp_path / "nope.yaml")], ["nope.yaml"]),
        ([], ["no source"]),
    ]
    before = set(tmp_path.rglob("*"))
    for args, fragments in cases:
        proc = streamdet("run", "--model", pb, *args, env=env, cwd=tmp_path)
        assert_one_line_error(proc, *fragments)
    # Nothing was processed, so nothing may have been written.
    assert set(tmp_path.rglob("*")) == before
