"""Motion gating (streamdet.motion): the network runs only where something moved.

The unit tier drives the motion detector and the gate with made pictures and a
stand-in for the inference engine (it records which frames would have gone to
the network). The real tier runs the CLI on footage made of real frames: the
first frame of carphone held still for 10 s (with sensor-like noise, as a real
camera gives), then the clip playing, with the real pedestrian SSDLite.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.model.agreement import Agreement, match
from streamdet.config.sections import DetectConfig
from streamdet.detections import Detections
from streamdet.motion import MotionDetector, MotionGate
from streamdet.sources import Frame

from clirun import cli_env, streamdet
from helpers import decode, read_jsonl, write_clip
from media import clip

FPS = 25


def _scene(rng, width=640, height=360) -> np.ndarray:
    """A textured still picture (so noise and small objects are judged against detail, not a flat wall)."""
    base = rng.integers(40, 200, (height // 8, width // 8, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)


def _noisy(image: np.ndarray, rng, sigma: float = 3.0) -> np.ndarray:
    noise = rng.normal(0, sigma, image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _with_block(image: np.ndarray, x: int, y: int, size: int = 40) -> np.ndarray:
    out = image.copy()
    out[y:y + size, x:x + size] = (20, 220, 240)
    return out


# --------------------------------------------------------------------------------------- unit tier


@pytest.mark.unit
def test_noise_is_not_motion_and_a_moving_object_is():
    rng = np.random.default_rng(1)
    scene = _scene(rng)
    detector = MotionDetector(640, 360, 25)
    first = detector(_noisy(scene, rng), 0.0)
    assert first.relearned and not first.moving  # the first frame is the background
    assert not any(detector(_noisy(scene, rng), (k + 1) / FPS).moving for k in range(50))
    moving = [detector(_noisy(_with_block(scene, 100 + 12 * k, 150), rng), 2 + k / FPS).moving for k in range(20)]
    assert all(moving), moving


@pytest.mark.unit
def test_motion_inside_the_mask_is_ignored():
    rng = np.random.default_rng(2)
    scene = _scene(rng)
    # The left half, in fractions, and then the same in pixels.
    for mask in ([[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]], [[[0, 0], [320, 0], [320, 360], [0, 360]]]):
        detector = MotionDetector(640, 360, 25, mask)
        detector(scene, 0.0)
        assert not any(detector(_with_block(scene, 40 + 10 * k, 100), k / FPS).moving for k in range(1, 15))
        assert detector(_with_block(scene, 480, 100), 1.0).moving  # the right half still counts


@pytest.mark.unit
def test_a_whole_frame_brightness_jump_relearns_once():
    rng = np.random.default_rng(3)
    scene = _scene(rng)
    detector = MotionDetector(640, 360, 25)
    detector(scene, 0.0)
    bright = np.clip(scene.astype(np.int16) + 70, 0, 255).astype(np.uint8)
    jump = detector(_noisy(bright, rng), 1.0)
    assert jump.relearned and not jump.moving and jump.area > 0.8
    after = [detector(_noisy(bright, rng), 1 + k / FPS) for k in range(1, 31)]
    assert not any(m.moving or m.relearned for m in after)


def _frame(index: int, image: np.ndarray) -> Frame:
    return Frame(image=image, index=index, pts_ms=index * 1000 / FPS, captured=0.0)


@pytest.mark.unit
def test_gate_infers_on_motion_one_frame_after_it_and_every_stationary_interval():
    rng = np.random.default_rng(4)
    scene = _scene(rng)
    gate = MotionGate([DetectConfig(motion=True, stationary_interval=2.0), DetectConfig()])
    frames = [_noisy(scene, rng) for _ in range(100)]                        # 4 s still
    frames += [_noisy(_with_block(scene, 60 + 15 * k, 200), rng) for k in range(10)]  # 10 frames of motion
    frames += [_noisy(_with_block(scene, 60 + 15 * 9, 200), rng) for _ in range(100)]  # it stands there 4 s
    sent = [i for i, image in enumerate(frames) if gate.wants_inference(0, _frame(i, image))]
    assert sent[0] == 0                                  # the first frame: nothing known yet
    assert 50 in sent and 100 in sent                    # every 2 s of stillness (pts 2.0 s, 4.0 s)
    assert set(range(100, 110)) <= set(sent)             # every frame with motion
    # What stopped becomes background within a second: then the frames are skipped again (and the
    # first still one after the motion is sent, so the boxes kept show where it came to rest).
    after = [i for i in sent if i >= 100]
    run = [i for k, i in enumerate(after) if i == 100 + k]  # the motion, and what stopped being absorbed
    assert 110 <= run[-1] < 110 + FPS, after
    looks = after[len(run):]                                # then only a look every 2 s of stillness
    assert looks and all(b - a == 2 * FPS for a, b in zip([run[-1]] + looks, looks)), after
    assert gate.cpu_s > 0  # the checks' CPU time goes to the figure the run's summary reads
    # A source without motion gating sends every frame.
    assert all(gate.wants_inference(1, _frame(1000 + i, frames[0])) for i in range(5))


# --------------------------------------------------------------------------------------- real tier


def _still_then_playing(tmp_path, seconds: float = 10.0):
    """carphone's first frame held `seconds` (camera-like noise), then the clip playing."""
    frames = decode(clip("carphone_pristine"))
    rng = np.random.default_rng(5)
    held = [_noisy(frames[0], rng, 2.0) for _ in range(int(seconds * FPS))]
    return write_clip(held + frames, tmp_path / "still_then_playing.mp4", FPS), len(held), len(frames)


def _detections(items: list[dict]) -> Detections:
    """A JSON line's detections back as Detections."""
    return Detections(np.array([d["box"] for d in items], np.float32).reshape(-1, 4),
                      np.array([d["score"] for d in items], np.float32),
                      np.array([d["class_id"] for d in items], np.int32), tuple(d["label"] for d in items))


def test_motion_gate_on_still_then_moving_footage(tmp_path, pedestrian_xml, model_cache):
    video, still, moving = _still_then_playing(tmp_path)
    env = cli_env(model_cache)
    gated, full = tmp_path / "gated.jsonl", tmp_path / "full.jsonl"
    for path, extra in ((gated, ["--motion", "--track"]), (full, ["--track"])):
        proc = streamdet("run", "-s", str(video), "-m", str(pedestrian_xml), "--json", str(path), "-q", *extra, env=env)
        assert proc.returncode == 0, proc.stderr
    on, off = read_jsonl(gated), read_jsonl(full)
    assert len(on) == len(off) == still + moving  # a file never drops a frame, gated or not
    inferred = sum(r["inferred"] for r in on)
    assert all(r["inferred"] for r in off)
    assert inferred <= 0.4 * len(on), f"inference ran on {inferred} of {len(on)} frames"
    assert sum(r["inferred"] for r in on[:still]) <= 3  # the first frame and one look every 10 s
    # The moving part: the same people as without gating.
    together = Agreement(0, 0, 0, 0)
    for gated_line, full_line in zip(on[still:], off[still:]):
        together += match(_detections(full_line["detections"]), _detections(gated_line["detections"]))
    assert together.matched > 0.8 * moving and together.f1 >= 0.95, together
    # The man held still keeps his box and his track through the 10 s without inference.
    first_ids = {d["track"] for d in on[5]["detections"] if d["track"]}
    assert first_ids and all({d["track"] for d in r["detections"] if d["track"]} == first_ids
                             for r in on[5:still])


def test_brightness_jump_is_one_look_not_a_run_of_inference(tmp_path, pedestrian_xml, model_cache):
    frames = decode(clip("carphone_pristine"), 1)
    rng = np.random.default_rng(6)
    bright = np.clip(frames[0].astype(np.int16) + 60, 0, 255).astype(np.uint8)
    held = [_noisy(frames[0], rng, 2.0) for _ in range(3 * FPS)] + [_noisy(bright, rng, 2.0) for _ in range(5 * FPS)]
    video = write_clip(held, tmp_path / "lights_on.mp4", FPS)
    out = tmp_path / "lights.jsonl"
    proc = streamdet("run", "-s", str(video), "-m", str(pedestrian_xml), "--motion", "--json", str(out), "-q",
                     env=cli_env(model_cache))
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(out)
    assert len(records) == len(held)
    looked = [r["frame"] for r in records if r["inferred"]]
    assert looked[0] == 0 and 3 * FPS in looked  # the lights changed: one fresh look
    assert len(looked) <= 4, looked
    assert f"inferred {len(looked)} (" in proc.stdout + proc.stderr  # the summary says how often the network ran
