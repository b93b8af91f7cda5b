"""`streamdet render SEGMENT.mp4`: a copied segment with its detections file (streamdet.outputs.sidecar) drawn in.

The picture test makes a real run (the real pedestrian model on 40 frames of bikes, a zone and a line, the FPS
plate off) that records its annotated video and writes each frame's sidecar line through the Python API; the
real CLI then renders the clip from those lines, and the two videos must agree where the drawing is, while a
render without detections must not. The errors are the real CLI's, with no model (unit tier).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import decode, write_clip
from media import clip

from streamdet.cli.burn import _line_at
from streamdet.outputs.sidecar import read_sidecar, sidecar_line
from streamdet.drawing import class_color

FRAMES = 40


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """40 frames of bikes (640x272, 25 fps): riders passing, for the pedestrian model."""
    return write_clip(decode(clip("bikes"), FRAMES), tmp_path_factory.mktemp("render") / "bikes40.mp4")


def _decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def _live_run(source: Path, folder: Path, model: Path) -> tuple[Path, Path]:
    """The annotated recording of a real run, and its sidecar written from each processed frame."""
    from streamdet.config.events import LineConfig, ZoneConfig
    from streamdet.config.sections import Config
    from streamdet.model.detector import load
    from streamdet.pipeline import Pipeline

    annotated, sidecar = folder / "annotated.mp4", folder / "live.jsonl"
    config = Config(sources=[str(source)])
    config.display.show = "no"
    config.logging.status_interval = 0
    config.output.video = str(annotated)
    config.overlay.fps = False  # nothing that depends on the moment the frame was drawn
    config.events.zones = [ZoneConfig("yard", [[0.05, 0.5], [0.45, 0.5], [0.45, 0.95], [0.05, 0.95]])]
    config.events.lines = [LineConfig("gate", [[0.6, 0.1], [0.6, 0.9]])]
    with open(sidecar, "w", encoding="utf-8") as out:
        def line(result) -> None:
            size = result.frame.image.shape[1::-1]
            out.write(sidecar_line(result, result.frame.pts_ms / 1000, size, None))

        with Pipeline(config, detector=load(model)) as pipeline:
            pipeline.run(line)
    return annotated, sidecar


def _box_mask(lines, shape, index_of) -> list[np.ndarray]:
    """Per frame: the pixels on and around its line's box outlines and label plates (where drawing shows)."""
    masks = []
    for i in range(len(index_of)):
        mask = np.zeros(shape, bool)
        j = index_of[i]
        if j is not None:
            for x1, y1, x2, y2 in lines[j].detections.xyxy.astype(int):
                mask[max(0, y1 - 25):y2 + 4, max(0, x1 - 4):x2 + 4] = True
                mask[y1 + 6:y2 - 6, x1 + 6:x2 - 6] = False  # inside the outline: the picture, undrawn
        masks.append(mask)
    return masks


def _colour_pixels(image: np.ndarray, bgr) -> np.ndarray:
    return np.all(np.abs(image.astype(int) - np.array(bgr)) < 40, axis=2)


def test_render_draws_what_the_live_run_drew(tmp_path, short_clip, pedestrian_xml, model_cache):
    annotated, sidecar = _live_run(short_clip, tmp_path, pedestrian_xml)
    lines = read_sidecar(sidecar)
    assert len(lines) == FRAMES and sum(len(f.detections) for f in lines) > 0, "the riders were not found"
    assert lines[0].scene and "yard" in lines[0].scene["zones"]
    style = tmp_path / "style.yaml"
    style.write_text("overlay:\n  fps: false\n")
    env = cli_env(model_cache)
    rendered = tmp_path / "rendered.mp4"
    proc = streamdet("render", str(short_clip), "--detections", str(sidecar), "-o", str(rendered),
                     "--config", str(style), env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"rendered {FRAMES} frames" in proc.stdout and f"{FRAMES} of {FRAMES} detection lines used" in proc.stdout
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    bare = tmp_path / "bare.mp4"
    proc = streamdet("render", str(short_clip), "--detections", str(empty), "-o", str(bare), env=env)
    assert proc.returncode == 0 and "0 of 0 detection lines used" in proc.stdout, proc.stderr

    live, ours, plain = _decode_all(annotated), _decode_all(rendered), _decode_all(bare)
    assert len(live) == len(ours) == len(plain) == FRAMES
    index_of = list(range(FRAMES))  # the run processed every frame of the file, in order
    masks = _box_mask(lines, live[0].shape[:2], index_of)
    person = class_color(1)
    agree, differ, colour_kept = [], [], []
    for a, b, c, mask in zip(live, ours, plain, masks):
        if not mask.any():
            continue
        agree.append(np.abs(a.astype(int) - b.astype(int))[mask].mean())
        differ.append(np.abs(a.astype(int) - c.astype(int))[mask].mean())
        drawn = _colour_pixels(a, person) & mask
        if drawn.sum() > 50:
            colour_kept.append((_colour_pixels(b, person) & drawn).sum() / drawn.sum())
    print(f"\nabs diff near boxes: rendered {np.mean(agree):.2f}, undrawn {np.mean(differ):.2f}; "
          f"box colour kept {np.mean(colour_kept):.2f} over {len(colour_kept)} frames")
    # The line format keeps boxes to 0.1 px, so an edge the live run drew at int(265.97) may come one row lower.
    assert agree and np.mean(agree) < 2 and max(agree) < 8, agree
    assert min(differ) > 2 * max(agree) and np.mean(differ) > 5 * np.mean(agree), differ
    # Frames without boxes (zone, line and counts only) are the same picture, up to the encoder's references.
    assert all(np.abs(a.astype(int) - b.astype(int)).mean() < 0.5 for a, b, m in zip(live, ours, masks) if not m.any())
    assert colour_kept and min(colour_kept) > 0.8, colour_kept
    # The zone's amber outline is drawn on every frame of both; the undrawn render has none of it.
    amber = (0, 215, 255)
    zone_row = live[0][int(0.5 * 272) - 3:int(0.5 * 272) + 3, 40:280]
    assert _colour_pixels(zone_row, amber).sum() > 100
    assert _colour_pixels(ours[0][int(0.5 * 272) - 3:int(0.5 * 272) + 3, 40:280], amber).sum() > 100
    assert _colour_pixels(plain[0][int(0.5 * 272) - 3:int(0.5 * 272) + 3, 40:280], amber).sum() < 10


@pytest.mark.unit
def test_a_frame_takes_the_newest_line_at_its_time_held_for_one_second():
    times = [0.0, 0.04, 0.2, 2.0]
    assert _line_at(times, 0.0, 0.02) == 0
    assert _line_at(times, 0.039, 0.02) == 1        # stamps rounded a little early still meet their line
    assert _line_at(times, 0.12, 0.02) == 1         # frames the run skipped keep the last boxes
    assert _line_at(times, 1.2, 0.02) == 2          # 1 s after the line: still held
    assert _line_at(times, 1.21 + 0.02, 0.02) is None  # older than 1 s: nothing drawn
    assert _line_at(times, -0.5, 0.02) is None
    assert _line_at([], 0.0, 0.02) is None


def _line(pts: float, size=(176, 144), box=(10.0, 20.0, 60.0, 100.0)) -> str:
    return json.dumps({"source": "door", "frame": 0, "pts_ms": None, "latency_ms": 5.0, "inferred": True,
                       "detections": [{"label": "person", "class_id": 1, "score": 0.9, "box": list(box)}],
                       "pts": pts, "size": list(size)}) + "\n"


@pytest.fixture(scope="module")
def segment(tmp_path_factory) -> Path:
    """A real 10-frame segment (the recording's encoder) with its sidecar beside it."""
    from streamdet.config.sections import RecordingConfig
    from streamdet.outputs.video import Encoder

    folder = tmp_path_factory.mktemp("segment")
    path = folder / "door_20261204-100000.mp4"
    encoder = Encoder(path, (176, 144), 25.0, RecordingConfig())
    for i, image in enumerate(decode(clip("carphone_pristine"), 10)):
        encoder.add(image, i * 40)
    encoder.close()
    path.with_suffix(".jsonl").write_text("".join(_line(i * 0.04) for i in range(10)))
    return path


@pytest.mark.unit
def test_the_sidecar_beside_the_segment_is_the_default_and_smaller_boxes_are_scaled(segment, tmp_path):
    out = tmp_path / "out.mp4"
    proc = streamdet("render", str(segment), "-o", str(out), env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("10 of 10 detection lines used")
    # The same boxes given for a picture half the size land at twice the place.
    half = tmp_path / "half.jsonl"
    half.write_text("".join(_line(i * 0.04, (88, 72), (5.0, 10.0, 30.0, 50.0)) for i in range(10)))
    scaled = tmp_path / "scaled.mp4"
    proc = streamdet("render", str(segment), "--detections", str(half), "-o", str(scaled), env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    a, b = _decode_all(out), _decode_all(scaled)
    assert len(a) == len(b) == 10
    assert np.abs(a[5].astype(int) - b[5].astype(int)).mean() < 1.0


@pytest.mark.unit
def test_render_refuses_bad_inputs_with_one_line(segment, tmp_path):
    env = cli_env(tmp_path)
    out = tmp_path / "out.mp4"

    def refused(*args: str, fragments=()) -> None:
        assert_one_line_error(streamdet("render", *args, env=env), *fragments)
        assert not out.exists()

    refused(str(tmp_path / "gone.mp4"), "-o", str(out), fragments=("gone.mp4", "no such file"))
    bare = tmp_path / "bare.mp4"
    bare.write_bytes(segment.read_bytes())
    refused(str(bare), "-o", str(out), fragments=("no detections file bare.jsonl beside it; pass --detections",))
    refused(str(segment), "--detections", str(tmp_path / "gone.jsonl"), "-o", str(out), fragments=("gone.jsonl",))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    text.with_suffix(".jsonl").write_text(_line(0.0))
    refused(str(text), "-o", str(out), fragments=("notes.mp4", "not a video"))
    refused(str(segment), "-o", str(segment), fragments=("is the input",))
    refused(str(segment), "-o", str(segment.with_suffix(".jsonl")), fragments=("not a supported recording format",))
    link = tmp_path / "same.mp4"
    os.link(segment, link)
    refused(str(segment), "-o", str(link), fragments=("is the input",))
    refused(str(segment), "-o", str(tmp_path / "out.txt"), fragments=("'.txt' is not a supported recording format",))
    refused(str(segment), "-o", str(tmp_path / "nowhere" / "out.mp4"), fragments=("does not exist",))
    run_json = tmp_path / "run.jsonl"
    run_json.write_text('{"source": "door", "frame": 0, "detections": []}\n')
    refused(str(segment), "--detections", str(run_json), "-o", str(out), fragments=("no line with pts and size",))
    refused(str(segment), "-o", str(out), "--config", str(tmp_path / "gone.yaml"), fragments=("gone.yaml",))
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"keep me")
    assert_one_line_error(streamdet("render", str(segment), "-o", str(existing), env=env), "exists already",
                          "--overwrite")
    assert existing.read_bytes() == b"keep me"
    proc = streamdet("render", str(segment), "-o", str(existing), "--overwrite", env=env)
    assert proc.returncode == 0 and existing.read_bytes()[4:8] == b"ftyp", proc.stderr


@pytest.mark.unit
def test_a_write_error_is_one_line(segment, tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    link = tmp_path / "full.mp4"
    link.symlink_to("/dev/full")
    proc = streamdet("render", str(segment), "-o", str(link), "--overwrite", env=cli_env(tmp_path))
    assert_one_line_error(proc, "full.mp4", "writing failed")


@pytest.mark.unit
def test_a_damaged_sidecar_line_is_skipped_not_a_crash(tmp_path):
    """read_sidecar skips a line whose detections are not objects (a hand edit, another program's JSON)."""
    path = tmp_path / "seg.jsonl"
    path.write_text(_line(0.0) + '{"pts": 0.04, "size": [176, 144], "detections": ["person"]}\n'
                    + '{"pts": 0.08, "size": [176, 144], "detections": {"a": 1}}\n' + "[1, 2]\n" + _line(0.12)
                    + '{"pts": 0.16, "size": [176')
    assert [f.pts for f in read_sidecar(path)] == [0.0, 0.12]


@pytest.mark.unit
def test_frames_the_run_skipped_keep_the_last_boxes_for_one_second(tmp_path):
    """Lines for the first 0.1 s only (a run that then fell behind): the box stays to 1 s past the last line."""
    from streamdet.config.sections import RecordingConfig
    from streamdet.outputs.video import Encoder

    path = tmp_path / "door.mp4"
    encoder = Encoder(path, (176, 144), 25.0, RecordingConfig())
    for i, image in enumerate(decode(clip("carphone_pristine"), 50)):  # 2 s at 25 fps
        encoder.add(image, i * 40)
    encoder.close()
    path.with_suffix(".jsonl").write_text(_line(0.0) + _line(0.08))
    (tmp_path / "none.jsonl").write_text("")
    env = cli_env(tmp_path)
    proc = streamdet("render", str(path), "-o", str(tmp_path / "held.mp4"), env=env)
    assert proc.returncode == 0 and "2 of 2 detection lines used" in proc.stdout, proc.stderr
    proc = streamdet("render", str(path), "--detections", str(tmp_path / "none.jsonl"), "-o",
                     str(tmp_path / "bare.mp4"), env=env)
    assert proc.returncode == 0, proc.stderr
    held, bare = _decode_all(tmp_path / "held.mp4"), _decode_all(tmp_path / "bare.mp4")
    edge = (slice(12, 19), slice(14, 40))  # inside the label plate above the box
    boxed = [np.abs(a[edge].astype(int) - b[edge].astype(int)).mean() > 20 for a, b in zip(held, bare)]
    assert boxed == [i * 0.04 <= 1.08 + 1e-6 for i in range(50)], boxed


@pytest.mark.unit
def test_values_past_drawing_are_skipped_with_one_warning(segment, tmp_path):
    """A NaN or 1e39 box, a class id past int32, a latency that is no number, a scene point of 1e30: each
    line is skipped (the others drawn), one warning counts them; exit 0, no traceback."""
    good = [json.loads(_line(i * 0.04)) for i in range(10)]
    bad = [dict(good[1], detections=[dict(good[1]["detections"][0], box=[float("nan"), 20, 60, 100])]),
           dict(good[2], detections=[dict(good[2]["detections"][0], box=[10, 20, 1e39, 100])]),
           dict(good[3], detections=[dict(good[3]["detections"][0], class_id=99999999999)]),
           dict(good[4], plate={"fps": 25.0, "latency_ms": "abc"}),
           dict(good[5], scene={"zones": {}, "lines": {"gate": {"points": [[0, 0], [1e30, 50]], "in": 0, "out": 0}}}),
           dict(good[6], scene={"zones": {"z": {"points": [[0, 0], [10, 0], [10, "x"]], "inside": 0}}, "lines": {}})]
    lines = [good[0], *bad, *good[7:]]
    detections = tmp_path / "hostile.jsonl"
    detections.write_text("".join(json.dumps(line) + "\n" for line in lines))  # json writes NaN as NaN
    proc = streamdet("render", str(segment), "--detections", str(detections), "-o", str(tmp_path / "out.mp4"),
                     env=cli_env(tmp_path))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip().endswith(f"of {len(lines) - len(bad)} detection lines used"), proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and f"{len(bad)} line(s)" in warnings[0] and "hostile.jsonl" in warnings[0], proc.stderr
