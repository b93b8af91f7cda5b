"""Cameras changed while the run goes: SIGHUP and POST /api/reload read the settings file again, against the
real command in its own process, real RTSP cameras (gst-rtsp-server on loopback) and the real model. The
camera that stays is recorded by copy all along: its recording must hold every frame across the reloads, in
one file. And the diff of two settings trees, pure.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import av
import pytest

from helpers import call_json, free_port, run_async, settings_from, wait_for
from media import clip
from rtsp import RtspServer
from test_copy_recording import _run  # the real command in its own process, with its settings file
from streamdet.assembly.changes import Reload, diff, with_kept
from streamdet.outputs.sidecar import read_sidecar, sidecar_path

CARPHONE_FPS = 30000 / 1001
QUIET = "source: {read_timeout: 3, open_timeout: 3}\nlogging: {status_interval: 1}\n"


def _camera(name: str, url: str, extra: str = "") -> str:
    return f"  - name: {name}\n    url: {url}\n{extra}"


KEEP = "    output: {video: REC}\n    recording: {mode: copy}\n"


def _packet_times(video: Path) -> list[float]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None)


def _events_of(name: str, events: Path) -> list[dict]:
    return [e for e in map(json.loads, events.read_text().splitlines()) if e["source"] == name]


def _open_tracks(name: str, events: Path) -> set[int] | None:
    """The tracks of `name` with a start and no end yet; None before any started."""
    seen = _events_of(name, events) if events.exists() else []
    starts = {e["track"] for e in seen if e["kind"] == "start"}
    return (starts - {e["track"] for e in seen if e["kind"] == "end"}) if starts else None


def _stop(proc, *servers: RtspServer) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    for server in servers:
        server.close()


@pytest.mark.services
def test_sighup_adds_changes_and_removes_cameras_while_another_records_every_frame(tmp_path, model_cache):
    carphone = RtspServer(clip("carphone_pristine"), repeat=30).start()
    bikes = RtspServer(clip("bikes"), repeat=10, port=free_port()).start()
    other = RtspServer(clip("carphone_pristine"), repeat=30, port=free_port()).start()  # a camera of its own
    rec, events = tmp_path / "rec", tmp_path / "events.jsonl"
    rec.mkdir()
    keep = KEEP.replace("REC", str(rec / "keep.mp4"))
    settings = tmp_path / "settings.yaml"
    shared = f"output: {{events: {events}}}\n" + QUIET

    def write(*cameras: str) -> None:
        settings.write_text("sources:\n" + "".join(cameras) + shared)

    write(_camera("keep", carphone.url(), keep), _camera("gone", bikes.url()))
    proc, err = _run([], model_cache, settings.read_text(), tmp_path)
    try:
        wait_for(lambda: sidecar_path(rec / "keep.mp4").exists()
                 and sidecar_path(rec / "keep.mp4").read_text().count("\n") >= 30, 60, "keep's detections")
        # One reload adds a camera and changes one; the next removes one.
        write(_camera("keep", carphone.url(), keep), _camera("gone", bikes.url(), "    detect: {threshold: 0.4}\n"),
              _camera("third", other.url()))
        proc.send_signal(signal.SIGHUP)
        first = err.wait(lambda line: "reload: added third; restarted gone" in line, 60, "the first reload's line")
        err.wait(lambda line: line.startswith("streamdet: third: input"), 30, "third's status line", after=first)
        # Removed while a track of it is open (the walker of bikes is in view for moments of each loop).
        wait_for(lambda: _open_tracks("gone", events), 60, "an open track of gone", poll=0.02)
        write(_camera("keep", carphone.url(), keep), _camera("third", other.url()))
        proc.send_signal(signal.SIGHUP)
        second = err.wait(lambda line: "reload: removed gone" in line, 60, "the second reload's line")
        # The removed camera's open tracks ended with it, while the run goes on: each start of `gone` has its end.
        wait_for(lambda: _open_tracks("gone", events) == set(), 10, "an end for each of gone's tracks")
        assert any(e["kind"] == "start" for e in _events_of("gone", events))
        lines = sidecar_path(rec / "keep.mp4").read_text().count("\n")
        wait_for(lambda: sidecar_path(rec / "keep.mp4").read_text().count("\n") >= lines + 30, 30,
                 "keep's detections after the reloads")
        after = err.wait(lambda line: line.startswith("streamdet: third: input"), 30, "third still going", after=second)
        assert not any(line.startswith("streamdet: gone:") for line in err.lines[after:])
    finally:
        _stop(proc, carphone, bikes, other)
    stderr = err.text()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    # The camera that stayed: one file, every frame the camera sent, no gap beyond a frame's interval and jitter.
    assert sorted(p.name for p in rec.glob("*.mp4")) == ["keep.mp4"]
    # Frames by their place in the camera's timeline (its clip's B-frames put some a tick apart): none missing.
    # (Not the first and last few: the first picture's B-frames and those cut off by the stop are the stream's own.)
    frames = sorted({round(t * CARPHONE_FPS) for t in _packet_times(rec / "keep.mp4")})[3:-3]
    lost = frames[-1] - frames[0] + 1 - len(frames)
    gap_ms = max(b - a for a, b in zip(frames, frames[1:])) * 1000 / CARPHONE_FPS
    processed = [line.pts for line in read_sidecar(sidecar_path(rec / "keep.mp4"))]
    processing_gap_ms = max(b - a for a, b in zip(processed, processed[1:])) * 1000
    print(f"\nkeep across two reloads: {len(frames)} frames recorded, {lost} lost, largest gap {gap_ms:.0f} ms in the "
          f"recording; {len(processed)} frames processed, largest gap {processing_gap_ms:.0f} ms between them")
    assert lost == 0 and gap_ms < 1000 / CARPHONE_FPS + 20, (lost, gap_ms)


def _post(url: str, method: str = "POST", body: dict | None = None) -> tuple[int, dict]:
    return call_json(method, url, b"" if body is None else body, timeout=90)  # a reload may open cameras


def _first_of_live(url: str) -> tuple[dict, bytes]:
    """A live stream's first two messages: what it is, and its init segment."""
    async def first() -> tuple[dict, bytes]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            hello = json.loads((await ws.receive(timeout=30)).data)
            return hello, (await ws.receive(timeout=30)).data

    return run_async(first)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code  # 503 before a camera's first frame, 404 for one that is no camera of the run


def _names(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sources", timeout=10) as response:
        return [s["name"] for s in json.loads(response.read())]


@pytest.mark.services
def test_an_invalid_reload_is_one_line_and_post_api_reload_adds_and_removes(tmp_path, model_cache):
    carphone = RtspServer(clip("carphone_pristine"), repeat=30).start()
    port = free_port()
    settings = tmp_path / "settings.yaml"
    good = "sources:\n" + _camera("one", carphone.url()) + QUIET
    proc, err = _run(["--serve", str(port)], model_cache, good, tmp_path)
    try:
        at = err.wait(lambda line: line.startswith("streamdet: one: input"), 60, "one's status line")
        bad = {"sources:\n  - name: one\n    url: [\n": "line 4: not valid YAML",
               good + "detect: {treshold: 0.3}\n": "line 6: unknown key 'detect.treshold'",
               good + "detect: {threshold: 2}\n": "line 6: detect: threshold must be between 0 and 1"}
        for text, said in bad.items():
            settings.write_text(text)
            proc.send_signal(signal.SIGHUP)
            at = err.wait(lambda line: "reload refused" in line, 30, f"the refusal naming {said!r}", after=at + 1)
            assert said in err.lines[at] and err.lines[at].count("\n") == 0, err.lines[at]
            at = err.wait(lambda line: line.startswith("streamdet: one: input"), 30, "one still going", after=at)
        code, body = _post(f"http://127.0.0.1:{port}/api/reload")
        assert code == 409 and "threshold must be between 0 and 1" in body["error"], body
        assert _names(port) == ["one"]
        settings.write_text(good.replace("source:", _camera("two", carphone.url()) + "source:")
                            + "inference: {hint: LATENCY}\n")
        code, body = _post(f"http://127.0.0.1:{port}/api/reload")
        assert code == 200 and body["added"] == ["two"] and body["removed"] == [] and body["error"] is None, body
        assert body["kept"] == ["inference.hint"], body
        assert _names(port) == ["one", "two"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=10) as response:
            assert [s["name"] for s in json.loads(response.read())["sources"]] == ["one", "two"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert 'source="two"' in response.read().decode()
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/snapshot/two.jpg") == 200, 30, "two's snapshot")
        settings.write_text("sources:\n" + _camera("two", carphone.url()) + QUIET)
        code, body = _post(f"http://127.0.0.1:{port}/api/reload")
        assert code == 200 and body["removed"] == ["one"] and body["added"] == [], body
        assert _names(port) == ["two"]
        assert _status(f"http://127.0.0.1:{port}/snapshot/one.jpg") == 404
        # The camera API: the file written back and the run changed by the same reload.
        api = f"http://127.0.0.1:{port}/api/config/sources/three"
        code, body = _post(api, "PUT", {"url": carphone.url()})
        assert code == 201 and body["reload"]["added"] == ["three"], body  # created
        assert _names(port) == ["two", "three"] and "three" in settings.read_text()
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/snapshot/three.jpg") == 200, 30, "three's snapshot")
        # Its live view is the camera's own H.264, as for the cameras the run started with.
        hello, fragment = _first_of_live(f"ws://127.0.0.1:{port}/live/three.mp4")
        assert hello["mime"].startswith('video/mp4; codecs="avc1.') and fragment[4:8] == b"ftyp", hello
        code, body = _post(api, "PUT", {"url": "rtsp://"})
        assert code == 400 and _names(port) == ["two", "three"], body
        code, body = _post(api, "DELETE")
        assert code == 200 and body["reload"]["removed"] == ["three"], body
        assert _names(port) == ["two"] and "three" not in settings.read_text()
    finally:
        _stop(proc, carphone)
    stderr = err.text()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr


@pytest.mark.unit
def test_the_diff_names_cameras_added_removed_changed_and_the_settings_kept(tmp_path):
    old = settings_from(tmp_path, "c", "sources:\n  - {name: a, url: rtsp://h/a}\n  - {name: b, url: rtsp://h/b}\n"
                            "  - rtsp://h/c\n  - {name: d, url: rtsp://h/d}\nevents: {end_after: 1}\n")
    new = settings_from(tmp_path, "c", "sources:\n  - {name: b, url: rtsp://h/b, detect: {threshold: 0.3}}\n"
                            "  - {name: a, url: rtsp://h/a}\n  - rtsp://h/c\n  - {name: e, url: rtsp://h/e}\n"
                            "  - {name: d, url: rtsp://h/d}\n"
                            "events: {end_after: 1}\nmodel: {name: x.xml}\ninference: {device: GPU}\n"
                            "web: {listen: '8080'}\noutput: {overwrite: true}\n")
    changes = diff(old.plans(), new.plans(), old, new)
    assert [p.name for p in changes.added] == ["e"]
    assert changes.removed == ()
    assert [p.name for p in changes.changed] == ["b"]  # moved in the file (a) is no change
    assert changes.kept == ("model.name", "inference.device", "web.listen", "output.overwrite")
    kept = with_kept(old, new)
    assert kept.model == old.model and kept.web == old.web and kept.output.overwrite is False
    assert kept.sources == new.sources
    # A section's default that the cameras inherit changes every camera that takes it; one that sets its own does not.
    inherit = settings_from(tmp_path, "c", old_text := "sources:\n  - {name: a, url: rtsp://h/a}\n"
                                            "  - {name: b, url: rtsp://h/b, events: {end_after: 2}}\n")
    changed = settings_from(tmp_path, "c", old_text + "events: {end_after: 3}\n")
    changes = diff(inherit.plans(), changed.plans(), inherit, changed)
    assert [p.name for p in changes.changed] == ["a"] and not changes.kept and not changes.added
    # Removed: by name, or by url for a camera without one.
    fewer = settings_from(tmp_path, "c", "sources:\n  - {name: b, url: rtsp://h/b}\n")
    assert diff(old.plans(), fewer.plans(), old, fewer).removed == ("a", "rtsp://h/c", "d")


@pytest.mark.unit
def test_a_reloads_line_names_what_it_did_or_why_not():
    assert Reload(added=("x",), removed=("y",), changed=("z",), kept=("model.name",)).line() == (
        "reload: added x; removed y; restarted z; these cannot change while running and keep their old value: "
        "model.name")
    assert Reload().line() == "reload: no camera changed"
    assert Reload(error="config 'c.yaml' line 3: detect: threshold must be between 0 and 1").line() == (
        "reload refused, the run goes on unchanged: config 'c.yaml' line 3: detect: threshold must be between 0 and 1")
