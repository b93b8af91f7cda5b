"""The main job end to end: real weights, real clips, the real command."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import threading
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import decode as decode_all
from helpers import read_jsonl, video_props, wait_for
from media import clip, pedestrian_pb

from streamdet.config.sections import Config, DetectConfig, OutputConfig
from streamdet.errors import ModelError
from streamdet.model.detector import load
from streamdet.pipeline import Pipeline
from streamdet.sources import Frame, Source, SourceInfo


@pytest.fixture(scope="session")
def env(model_cache) -> dict[str, str]:
    return cli_env(model_cache)


@pytest.fixture(scope="session")
def detector(pedestrian_xml):
    return load(pedestrian_xml, threshold=0.5)


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
    def running_with_lines() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        return js.exists() and js.stat().st_size > 20_000

    wait_for(running_with_lines, 60, "JSON lines from the looping run")
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

    config.output.overwrite = True
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


def test_each_source_has_its_own_threshold_from_the_yaml(tmp_path, env):
    config = tmp_path / "site.yaml"
    config.write_text(f"""
detect:
  threshold: 0.3
output:
  json: {tmp_path}/{{name}}.jsonl
sources:
  - name: loose
    url: {clip("bikes")}
  - name: strict
    url: {clip("bikes")}
    detect: {{threshold: 0.8}}
""")
    proc = streamdet("run", "--config", str(config), "--model", str(pedestrian_pb()), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    loose, strict = read_jsonl(tmp_path / "loose.jsonl"), read_jsonl(tmp_path / "strict.jsonl")
    assert len(loose) == len(strict) == 250
    assert all(r["source"] == "loose" for r in loose) and all(r["source"] == "strict" for r in strict)
    scores = lambda records: [d["score"] for r in records for d in r["detections"]]  # noqa: E731
    assert min(scores(loose)) < 0.8 <= min(scores(strict))
    # Same frames, same model: the strict source keeps exactly the loose one's detections scoring 0.8 or more.
    for a, b in zip(loose, strict):
        assert [d for d in a["detections"] if d["score"] >= 0.8] == b["detections"]
    assert "source loose:" in proc.stderr and "source strict:" in proc.stderr


def test_a_wrong_key_in_one_camera_names_that_camera_and_line(tmp_path, env):
    config = tmp_path / "site.yaml"
    config.write_text(f"sources:\n  - {clip('bikes')}\n  - name: door\n    url: rtsp://u:secretpw@cam/live\n"
                      "    detect:\n      threshhold: 0.7\n")
    proc = streamdet("run", "--config", str(config), "--model", str(pedestrian_pb()), env=env, cwd=tmp_path)
    line = assert_one_line_error(proc, "line 6", "(door)", "threshhold")
    assert "secretpw" not in proc.stderr, line


class GreySource(Source):
    """A custom source (Python API) that turns out to give grey frames after a while: the model takes BGR."""

    name = "grey"

    def __init__(self, good: list[np.ndarray]):
        self.good = good
        self.index = 0

    def open(self) -> SourceInfo:
        return SourceInfo(176, 144, 25.0, None, live=False)

    def read(self) -> Frame | None:
        image = self.good[self.index] if self.index < len(self.good) else np.zeros((144, 176), np.uint8)
        self.index += 1
        return Frame(image=image, index=self.index - 1, pts_ms=None, captured=time.monotonic())

    def close(self) -> None:
        pass


def test_an_error_on_the_feeder_thread_ends_the_run_with_that_error(tmp_path, detector):
    frames = decode_all(clip("carphone_pristine"), 20)
    config = Config(output=OutputConfig(json=str(tmp_path / "grey.jsonl"), video=str(tmp_path / "grey.mp4")))
    config.display.show = "no"
    seen = []
    with pytest.raises(ModelError, match="8-bit BGR image"):
        with Pipeline(config, detector=detector, sources=[GreySource(frames)]) as pipeline:
            pipeline.run(on_result=seen.append)
    # Every good frame before the bad one went through and the outputs were finalised.
    assert [r.frame.index for r in seen] == list(range(20))
    assert len(read_jsonl(tmp_path / "grey.jsonl")) == 20
    assert video_props(tmp_path / "grey.mp4")[0] == 20
    assert not [t for t in threading.enumerate() if t.name in ("feeder", "capture-grey")]


@pytest.mark.parametrize("draw, outputs, drawn", [
    ("auto", {"json": "d.jsonl"}, False),   # nothing shows pictures: no time spent drawing
    ("auto", {"video": "d.mp4"}, True),
    ("yes", {"json": "d.jsonl"}, True),     # API callers who want annotated frames
    ("no", {"video": "d.mp4"}, False),      # a raw recording
])
def test_drawing_is_an_explicit_setting(draw, outputs, drawn, tmp_path, detector):
    config = Config(sources=[str(clip("carphone_pristine"))],
                    output=OutputConfig(**{k: str(tmp_path / v) for k, v in outputs.items()}))
    config.display.show = "no"
    config.overlay.draw = draw
    originals = decode_all(clip("carphone_pristine"))
    with Pipeline(config, detector=detector) as pipeline:
        changed = [bool((r.frame.image != originals[r.frame.index]).any()) for r in pipeline.results()]
    assert len(changed) == 120
    # Every carphone frame has the man in it: a drawn frame always differs from the decoded one.
    assert all(changed) if drawn else not any(changed)


def test_the_readmes_first_command_runs_on_the_clip_that_ships(tmp_path, env):
    """The README's first line, as a new user runs it in a clone; only the model differs: the COCO
    model is downloaded on first use, which tests may not do, so the pedestrian graph stands in."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    first = readme.split("```sh\n", 1)[1].splitlines()[0]
    run = next(part for part in first.split("&&") if "streamdet run" in part)
    args = shlex.split(run)[2:]  # after `.venv/bin/streamdet run`
    source = args[args.index("--source") + 1]
    assert source.startswith("assets/") and (root / source).is_file()
    (tmp_path / "assets").symlink_to(root / "assets")
    proc = streamdet("run", *args, "--model", str(pedestrian_pb()), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    recording = tmp_path / args[args.index("--output") + 1]
    records = read_jsonl(tmp_path / args[args.index("--json") + 1])
    assert video_props(recording)[0] == len(records) == video_props(root / source)[0]
    assert sum(any(d["label"] == "person" for d in r["detections"]) for r in records) > len(records) // 2
