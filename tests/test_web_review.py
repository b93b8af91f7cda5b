"""The web view's review pages (no model): /events and /api/events, the clips, snapshots and recording
segments it serves (Range, types, tokens, traversal), and the page in Debian's Chromium playing a clip.

The events are real `Event`s as the events stage makes them, naming real files: a fragmented MP4
encoded by the recording's own encoder from a real clip's frames, a real JPEG, real segments entered in
a real `Segments` record. The server is the real aiohttp one on loopback.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
import pytest

from helpers import decode, wait_for
from media import clip

from streamdet.config.sections import RecordingConfig, WebConfig
from streamdet.detections import Detections, FrameResult
from streamdet.scene import Event
from streamdet.outputs.segments import Retention, Segments
from streamdet.outputs.snapshots import Snapshot, SnapshotOutput
from streamdet.outputs.video import Encoder
from streamdet.sources import Frame
from streamdet.measures.figures import RunStatus, SourceStatus
from streamdet.web import WebView, bind_listener

TOKEN = "review-token-for-tests"
NAMES = ("door", "yard")


def _status() -> RunStatus:
    return RunStatus(uptime_s=1.0, frames=0, sources=[
        SourceStatus(name=name, url=name, live=True, state="online", width=176, height=144,
                     input_fps=25.0, processed_fps=25.0, frames_processed=1, dropped=0, latency_ms=5.0, reconnects=0)
        for name in NAMES])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A real fragmented MP4 clip (the recording's encoder, a real clip's frames) and a real JPEG snapshot."""
    folder = tmp_path_factory.mktemp("media")
    frames = decode(clip("carphone_pristine"), 50)
    mp4 = folder / "door_track1.mp4"
    encoder = Encoder(mp4, frames[0].shape[1::-1], 25.0, RecordingConfig())
    for i, image in enumerate(frames):
        encoder.add(image, i * 40)
    encoder.close()
    jpeg = folder / "door_track1.jpg"
    jpeg.write_bytes(cv2.imencode(".jpg", frames[10])[1].tobytes())
    return {"clip": mp4, "snapshot": jpeg, "frames": frames}


def _event(kind: str, source: str, track: int, label: str = "person", when: str = "2026-12-04T10:00:00.000Z",
           **extra) -> Event:
    return Event(kind=kind, source=source, track=track, label=label, score=0.8, box=(1.0, 2.0, 30.0, 40.0),
                 time=when, frame=track, pts_s=None, **extra)


def _result(source_id: int, events: tuple, image: np.ndarray) -> FrameResult:
    none = Detections(xyxy=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32),
                      class_ids=np.zeros(0, np.int32), labels=())
    return FrameResult(source=NAMES[source_id], frame=Frame(image=image, index=1, pts_ms=None, captured=time.monotonic()),
                       detections=none, latency_ms=5.0, source_id=source_id, events=events)


def _history(media) -> list[FrameResult]:
    """Three tracks at the door (one through a zone and over a line, with clip and snapshot), a car in the yard."""
    image = media["frames"][0]
    return [
        _result(0, (_event("start", "door", 1), _event("zone_enter", "door", 1, zone="porch"),
                    _event("line_cross", "door", 1, line="gate", direction="in")), image),
        _result(0, (_event("end", "door", 1, when="2026-12-04T10:00:05.000Z", duration_s=5.0,
                           snapshot=str(media["snapshot"]), clip=str(media["clip"])),), image),
        _result(1, (_event("end", "yard", 7, label="car", when="2026-12-04T10:01:00.000Z", duration_s=2.0),), image),
        _result(0, (_event("end", "door", 2, when="2026-12-04T10:02:00.000Z", duration_s=1.5),), image),
        _result(0, (_event("end", "door", 3, when="2026-12-04T10:03:00.000Z", duration_s=0.5),), image),
    ]


@pytest.fixture
def serve():
    views = []

    def start(recordings=None, holds=None, **settings) -> WebView:
        web = WebConfig(listen="127.0.0.1:0", **settings)
        more = {"recordings": recordings} if recordings is not None else {}
        more.update({"holds": holds} if holds is not None else {})
        view = WebView(bind_listener(web), web, list(NAMES), _status, None, **more)
        views.append(view)
        return view

    yield start
    for view in views:
        view.close()


def _get(view: WebView, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    """A raw GET of exactly `path` (no client normalises or re-encodes it)."""
    host, port = view.server.url[len("http://"):-1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def _api(view: WebView, query: str = "") -> dict:
    status, body, _ = _get(view, f"/api/events{query}")
    assert status == 200, body
    return json.loads(body)


@pytest.mark.unit
def test_api_lists_this_runs_ended_tracks_newest_first_filtered_and_paged(serve, media):
    view = serve()
    for result in _history(media):
        view.write(result)
    everything = _api(view)["events"]
    assert [(e["source"], e["track"]) for e in everything] == [("door", 3), ("door", 2), ("yard", 7), ("door", 1)]
    first = everything[-1]
    assert first["zones"] == ["porch"] and first["lines"] == ["gate"] and first["duration_s"] == 5.0
    assert first["clip"] == "/clips/door_track1.mp4" and first["snapshot"] == "/snapshots/door_track1.jpg"
    assert first["time"] == "2026-12-04T10:00:05.000Z" and first["score"] == 0.8
    assert [e["track"] for e in _api(view, "?source=yard")["events"]] == [7]
    assert [e["track"] for e in _api(view, "?label=person")["events"]] == [3, 2, 1]
    assert [e["track"] for e in _api(view, "?zone=porch")["events"]] == [1]
    assert [e["track"] for e in _api(view, "?zone=gate")["events"]] == [1]  # a line is found by the same filter
    window = "?after=2026-12-04T10:00:05Z&before=2026-12-04T10:02:30%2B00:00"
    assert [e["track"] for e in _api(view, window)["events"]] == [2, 7]
    # Paged: two at a time, following `next` (which keeps the filters) until there is none.
    page = _api(view, "?label=person&limit=2")
    seen = [e["track"] for e in page["events"]]
    while page["next"]:
        page = _api(view, page["next"][len("/api/events"):])
        seen += [e["track"] for e in page["events"]]
    assert seen == [3, 2, 1]
    for bad, words in (("?limit=0", b"limit must be from 1 to 500"), ("?limit=501", b"limit must be from 1 to 500"),
                       ("?after=yesterday", b"after='yesterday' is no ISO 8601 time")):
        status, body, _ = _get(view, f"/api/events{bad}")
        assert status == 400 and words in body and body.count(b"\n") == 1, (bad, body)


@pytest.mark.unit
def test_clips_and_snapshots_are_served_with_range_and_their_types(serve, media):
    view = serve()
    for result in _history(media):
        view.write(result)
    data = media["clip"].read_bytes()
    status, body, headers = _get(view, "/clips/door_track1.mp4", {"Range": "bytes=0-99"})
    assert status == 206 and body == data[:100], status
    assert headers["content-type"] == "video/mp4" and headers["content-range"] == f"bytes 0-99/{len(data)}"
    status, body, _ = _get(view, "/clips/door_track1.mp4", {"Range": f"bytes={len(data) - 50}-"})
    assert status == 206 and body == data[-50:]
    status, body, headers = _get(view, "/clips/door_track1.mp4")
    assert status == 200 and body == data and headers["accept-ranges"] == "bytes"
    status, body, headers = _get(view, "/snapshots/door_track1.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body == media["snapshot"].read_bytes()


@pytest.mark.unit
def test_files_are_found_by_lookup_only_traversal_and_links_get_404(serve, media, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web\n")
    # A snapshot of this run that is replaced by a link out of its folder afterwards.
    linked = tmp_path / "yard_track9.jpg"
    linked.write_bytes(media["snapshot"].read_bytes())
    view, segments = _door_with_history(serve, media, tmp_path / "rec")
    view.write(_result(1, (_event("end", "yard", 9, snapshot=str(linked)),), media["frames"][0]))
    assert _get(view, "/snapshots/yard_track9.jpg")[0] == 200
    linked.unlink()
    linked.symlink_to(secret)
    folder = quote(str(media["clip"].parent), safe="")
    attempts = ["/snapshots/yard_track9.jpg",
                "/clips/..%2f..%2fsecret.txt", "/clips/%2e%2e%2fsecret.txt", "/clips/%2e%2e", "/clips/..",
                "/snapshots/../clips/door_track1.mp4", f"/clips/{folder}%2fdoor_track1.mp4",
                f"/clips/{quote(str(secret), safe='')}", "/clips/door_track1.jpg", "/snapshots/door_track1.mp4",
                "/clips/%2Fetc%2Fpasswd", "/clips//etc/passwd", "/recordings/door/..%2f..%2fsecret.txt",
                "/recordings/door/%2e%2e", "/recordings/door/.door_{start}.mp4.segments",
                "/recordings/yard/" + segments.ours()[0][0].name, "/recordings/nobody/x.mp4",
                "/recordings/..%2fdoor/" + segments.ours()[0][0].name]
    for path in attempts:
        status, body, _ = _get(view, path)
        assert status == 404 and b"not for the web" not in body, (path, status, body)
    # A file beside the segments, named like one, that the camera's record does not hold.
    stranger = segments.folder / "door_20261204-100000.mp4"
    stranger.write_bytes(b"copied in")
    assert _get(view, f"/recordings/door/{stranger.name}")[0] == 404


@pytest.mark.unit
@pytest.mark.parametrize("swap", ["link", "move"])
def test_a_file_swapped_in_under_a_served_name_is_not_served(serve, media, tmp_path, swap):
    """#32 item 7: `rm X.jpg; ln secret.txt X.jpg` (or `mv other X.jpg`) put another regular file under a
    snapshot's, clip's or segment's name; it was served. Each is served only while it is the file written:
    by its outputs' record (snapshots, clips, segments) and, with no record at hand, the inode it had."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web\n")
    snaps, clips = tmp_path / "snaps", tmp_path / "clips"
    snaps.mkdir()
    clips.mkdir()
    snapshot_output = SnapshotOutput(str(snaps), "door", Retention())
    snapshot = snaps / "door_20261204-100000_track1.jpg"
    snapshot_output.write(dataclasses.replace(_result(0, (), media["frames"][0]), snapshots=(
        Snapshot(snapshot, media["frames"][10], (10, 10, 60, 60), 1),)))
    clip_record = Segments(str(clips / "door_{start}.mp4"), RecordingConfig(), kind="clips")
    clip_file = clip_record.take(clips / "door_20261204-100000_track1.mp4", 1_764_842_400.0)
    clip_file.write_bytes(media["clip"].read_bytes())
    clip_record.finish(clip_file)
    unrecorded = tmp_path / "door_track2.jpg"  # served by the inode it had when its track ended
    unrecorded.write_bytes(media["snapshot"].read_bytes())
    segments = _segments(tmp_path / "rec", media, count=1)
    segment = segments.ours()[0][0]
    checked = serve(recordings={"door": segments.ours},
                    holds=lambda path: snapshot_output.holds(path) or clip_record.holds(path))
    unchecked = serve()
    ends = (_event("end", "door", 1, snapshot=str(snapshot), clip=str(clip_file)),
            _event("end", "door", 2, snapshot=str(unrecorded)))
    for view in (checked, unchecked):
        view.write(_result(0, ends, media["frames"][0]))
    urls = [(checked, f"/snapshots/{snapshot.name}"), (checked, f"/clips/{clip_file.name}"),
            (checked, f"/recordings/door/{segment.name}"), (unchecked, f"/snapshots/{unrecorded.name}")]
    for view, url in urls:
        assert _get(view, url)[0] == 200, url
    for path in (snapshot, clip_file, segment, unrecorded):
        path.unlink()
        if swap == "link":
            os.link(secret, path)
        else:
            other = tmp_path / "other"
            other.write_text("not for the web\n")
            other.rename(path)
    for view, url in urls:
        status, body, _ = _get(view, url)
        assert status == 404 and b"not for the web" not in body, (url, status, body)


def _segments(folder: Path, media, count: int) -> Segments:
    """`count` real segments written the way a segmented recording takes their names (entered in its record)."""
    folder.mkdir()
    segments = Segments(str(folder / "door_{start}.mp4"), RecordingConfig())
    for i in range(count):
        path = segments.path_for(1_764_842_400.0 + 60 * i)
        path.write_bytes(media["clip"].read_bytes())
    return segments



def _door_with_history(serve, media, folder: Path, **settings):
    """A web view serving door's one recorded segment (in `folder`), with the review history written to it."""
    segments = _segments(folder, media, count=1)
    view = serve(recordings={"door": segments.ours}, **settings)
    for result in _history(media):
        view.write(result)
    return view, segments

@pytest.mark.unit
def test_recordings_list_the_cameras_segments_and_serve_them(serve, media, tmp_path):
    segments = _segments(tmp_path / "rec", media, count=2)
    view = serve(recordings={"door": segments.ours})
    status, body, _ = _get(view, "/api/recordings/door")
    listing = json.loads(body)
    names = [p.name for p, _ in segments.ours()][::-1]  # newest first
    assert status == 200 and listing["recording"] is True
    assert [s["name"] for s in listing["segments"]] == names
    assert listing["segments"][0]["start"] == "2025-12-04T10:01:00Z"
    assert listing["segments"][0]["size"] == media["clip"].stat().st_size
    status, body, headers = _get(view, listing["segments"][0]["url"], {"Range": "bytes=0-99"})
    assert status == 206 and body == media["clip"].read_bytes()[:100] and headers["content-type"] == "video/mp4"
    assert json.loads(_get(view, "/api/recordings/yard")[1]) == {"source": "yard", "recording": False, "segments": []}
    status, body, headers = _get(view, "/recordings/door")
    assert status == 200 and b"<video" in body and "media-src 'self'" in headers["content-security-policy"]


@pytest.mark.unit
def test_with_a_token_files_pages_and_lists_need_it(serve, media, tmp_path):
    view, segments = _door_with_history(serve, media, tmp_path / "rec", token=TOKEN)
    segment = f"/recordings/door/{segments.ours()[0][0].name}"
    for path in ("/events", "/api/events", "/clips/door_track1.mp4", "/snapshots/door_track1.jpg", "/recordings/door",
                 "/api/recordings/door", segment):
        assert _get(view, path)[0] == 401, path
        assert _get(view, f"{path}?token=wrong-token-123")[0] == 401, path
        assert _get(view, f"{path}?token={TOKEN}")[0] == 200, path
        assert _get(view, path, {"Authorization": f"Bearer {TOKEN}", "Range": "bytes=0-9"})[0] in (200, 206), path
    assert _get(view, "/clips/door_track1.mp4", {"Authorization": f"Bearer {TOKEN}", "Range": "bytes=0-9"})[0] == 206


@pytest.mark.unit
def test_the_store_keeps_the_newest_and_forgets_their_files():
    from streamdet.web.review import EventStore, Query

    store = EventStore(max_events=2)
    for track in (1, 2, 3):
        store.add((_event("end", "door", track, snapshot=f"/snaps/door_track{track}.jpg"),))
    # Two cameras' snapshots with the same file name in different folders are both served, under two names.
    store.add((_event("end", "yard", 4, snapshot="/other/door_track3.jpg"),))
    kept = store.find(Query())
    assert [e.track for e in kept] == [4, 3]
    assert store.snapshot("door_track1.jpg") is None and store.snapshot("door_track2.jpg") is None
    assert store.snapshot("door_track3.jpg") == Path("/snaps/door_track3.jpg")
    assert store.snapshot(kept[0].snapshot) == Path("/other/door_track3.jpg") and kept[0].snapshot != "door_track3.jpg"


@pytest.mark.services
def test_review_page_in_chromium_lists_the_events_and_plays_a_clip_on_a_phone(serve, media, chromium):
    segments = _segments(Path(media["clip"]).parent / "rec-chromium", media, count=2)
    view = serve(recordings={"door": segments.ours}, token=TOKEN)
    history = _history(media)
    # A busy camera: its many newer events must not push the door's out of the door's tile.
    history += [_result(1, (_event("end", "yard", 100 + i, label="car", when="2026-12-04T11:00:00.000Z"),),
                        media["frames"][0]) for i in range(120)]
    for result in history:
        view.write(result)
    page = chromium.new_page(viewport={"width": 360, "height": 740})
    try:
        page.goto(f"{view.server.url}events?token={TOKEN}")
        page.wait_for_function("() => document.querySelectorAll('#events .event').length === 50", timeout=20_000)
        page.locator("#more").click()  # the next page, older events below
        page.wait_for_function("() => document.querySelectorAll('#events .event').length === 100", timeout=20_000)
        page.select_option("select[name=source]", "door")
        page.wait_for_function("() => document.querySelectorAll('#events .event').length === 3", timeout=20_000)
        labels = page.locator("#events .event .label").all_text_contents()
        meta = page.locator("#events .event .meta").last.text_content()
        page.wait_for_function("() => { const i = document.querySelector('#events .event:last-child img'); "
                               "return i.complete && i.naturalWidth > 0; }", timeout=20_000)
        page.locator("#events .event:last-child button").click()
        page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=20_000)
        video = page.evaluate("() => { const v = document.getElementById('video'); "
                              "return [v.videoWidth, v.videoHeight, v.duration]; }")
        widths = page.evaluate("() => [document.documentElement.scrollWidth, "
                               "document.querySelector('#events .event').getBoundingClientRect().right]")
        page.select_option("select[name=source]", "")
        page.fill("input[name=label]", "car")
        page.fill("input[name=zone]", "porch")
        page.press("input[name=zone]", "Enter")
        page.wait_for_function("() => document.querySelectorAll('#events .event').length === 0", timeout=20_000)
        page.fill("input[name=label]", "person")
        page.press("input[name=label]", "Enter")
        page.wait_for_function("() => document.querySelectorAll('#events .event').length === 1", timeout=20_000)
        filtered = page.locator("#events .event .label").all_text_contents()
        page.goto(f"{view.server.url}recordings/door?token={TOKEN}")
        page.wait_for_function("() => document.querySelectorAll('#segments li').length === 2", timeout=20_000)
        starts = page.locator("#segments .meta").all_text_contents()
        page.locator("#segments li button").first.click()
        page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=20_000)
        page.goto(f"{view.server.url}?token={TOKEN}")
        page.wait_for_function("() => document.querySelectorAll('.tile .recent .event').length === 6",
                               timeout=20_000)
        recent = page.locator(".tile").first.locator(".recent .event").all_text_contents()
        link = page.locator("#review").get_attribute("href")
    finally:
        page.close()
    assert labels == ["person #3 · door", "person #2 · door", "person #1 · door"], labels
    assert "5.0 s" in meta and "score 0.80" in meta and "porch, gate" in meta, meta
    assert video[:2] == [176, 144] and video[2] > 1.5, video
    assert widths[0] <= 360 and widths[1] <= 360, f"the page is {widths[0]} px wide in a 360 px window: {widths}"
    assert filtered == ["person #1 · door"]
    assert len(starts) == 2 and all("door_2025" in s and "MB" in s for s in starts), starts
    assert len(recent) == 3 and "person #3" in recent[0], recent
    assert link == f"/events?token={TOKEN}"


@pytest.mark.services
def test_a_real_run_lists_its_ended_tracks_snapshots_and_recording_segments(tmp_path, pedestrian_detector):
    """End to end: the pipeline's events and its segmented recording reach the review routes."""
    import threading
    import urllib.request

    from streamdet.config.sections import Config
    from streamdet.pipeline import Pipeline

    (tmp_path / "snaps").mkdir()
    (tmp_path / "rec").mkdir()
    config = Config()
    config.sources = [str(clip("bikes"))]
    config.source.loop = True
    config.display.show = "no"
    config.logging.status_interval = 0
    config.web.listen = "127.0.0.1:0"
    config.events.snapshots = str(tmp_path / "snaps")
    config.events.end_after = 0.5
    config.output.video = str(tmp_path / "rec" / "{name}_{start}.mp4")
    config.recording.segment_seconds = 1.0

    def get(url: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()

    with Pipeline(config, detector=pedestrian_detector) as pipeline:
        thread = threading.Thread(target=pipeline.run, name="test-run")
        thread.start()
        try:
            base = pipeline.web_url.rstrip("/")
            ended = wait_for(lambda: [e for e in json.loads(get(base + "/api/events")[1])["events"] if e["snapshot"]],
                             120, "an ended track with a snapshot in /api/events")
            segments = wait_for(lambda: json.loads(get(base + "/api/recordings/bikes")[1])["segments"][1:], 120,
                                "two recording segments in /api/recordings/bikes")
            status, jpeg = get(base + ended[0]["snapshot"])
            segment_status, segment = get(base + segments[-1]["url"])
        finally:
            pipeline.stop("test done")
            thread.join(timeout=60)
    assert ended[0]["source"] == "bikes" and ended[0]["label"] == "person" and ended[0]["duration_s"] is not None
    assert status == 200 and jpeg == Path(tmp_path / "snaps" / Path(ended[0]["snapshot"]).name).read_bytes()
    assert segment_status == 200 and segment == (tmp_path / "rec" / segments[-1]["name"]).read_bytes()[:len(segment)]
    assert segment[4:8] == b"ftyp"


@pytest.mark.unit
def test_clips_and_segments_take_a_viewers_place_so_health_checks_keep_theirs(serve, media, tmp_path):
    """A <video> keeps its download open while it plays: it counts as a viewer (web.max_clients), not as one
    of the short requests the page, JSON and /healthz share."""
    view, segments = _door_with_history(serve, media, tmp_path / "rec", max_clients=1)
    host, port = view.server.url[len("http://"):-1].split(":")
    watching = socket.create_connection((host, int(port)), timeout=10)
    try:
        watching.sendall(b"GET /stream/door.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in watching.recv(200)
        wait_for(lambda: view.server.clients == 1, 10, "the stream to be counted")
        segment = f"/recordings/door/{segments.ours()[0][0].name}"
        for path in ("/clips/door_track1.mp4", segment):
            status, body, _ = _get(view, path, {"Range": "bytes=0-99"})
            assert status == 503 and b"web.max_clients" in body, (path, status)
        assert _get(view, "/healthz")[0] == 200
        assert _get(view, "/snapshots/door_track1.jpg")[0] == 200  # a picture ends in a moment: a short request
    finally:
        watching.close()
    wait_for(lambda: view.server.clients == 0, 10, "the stream to end")
    assert _get(view, "/clips/door_track1.mp4", {"Range": "bytes=0-99"})[0] == 206


@pytest.mark.unit
def test_a_filter_given_twice_is_refused_in_one_line(serve, media):
    """`?source=door&source=yard` once gave page 1 filtered by door and `next` by yard: any key given twice is
    refused, whatever it is."""
    view = serve()
    for result in _history(media):
        view.write(result)
    for query, key in (("?source=door&source=yard", "source"), ("?label=person&label=car", "label"),
                       ("?zone=porch&zone=gate", "zone"), ("?limit=1&limit=2", "limit"),
                       ("?cursor=9&cursor=3", "cursor"), ("?after=2026-12-04T10:00:00Z&after=2026-12-04T10:01:00Z",
                                                          "after"), ("?source=door&source=door", "source")):
        status, body, _ = _get(view, f"/api/events{query}")
        assert status == 400 and body.count(b"\n") == 1, (query, status, body)
        assert f"bad query: {key} is given 2 times; give each parameter once".encode() in body, body
    assert [e["track"] for e in _api(view, "?source=door&label=person")["events"]] == [3, 2, 1]


STRANGE = "a#b?c%41 d"  # a fragment, a query and an escape, were the name put into a path as it is


@pytest.mark.services
def test_names_with_hash_question_mark_and_percent_load_their_snapshot_and_clip_in_chromium_with_a_token(media,
                                                                                                          tmp_path,
                                                                                                          chromium):
    snapshot, video = tmp_path / f"{STRANGE}_track1.jpg", tmp_path / f"{STRANGE}_track1.mp4"
    shutil.copy(media["snapshot"], snapshot)
    shutil.copy(media["clip"], video)
    web = WebConfig(listen="127.0.0.1:0", token=TOKEN)
    view = WebView(bind_listener(web), web, [STRANGE], _status, None)
    try:
        view.write(FrameResult(source=STRANGE, frame=Frame(image=media["frames"][0], index=1, pts_ms=None,
                                                           captured=time.monotonic()),
                               detections=_result(0, (), media["frames"][0]).detections, latency_ms=5.0, source_id=0,
                               events=(_event("end", STRANGE, 1, snapshot=str(snapshot), clip=str(video)),)))
        entry = _api(view, f"?token={TOKEN}")["events"][0]
        assert entry["snapshot"] == "/snapshots/" + quote(snapshot.name, safe="")
        assert entry["clip"] == "/clips/" + quote(video.name, safe="")
        status, body, _ = _get(view, f"{entry['snapshot']}?token={TOKEN}")
        assert status == 200 and body == snapshot.read_bytes()
        page = chromium.new_page()
        try:
            page.goto(f"{view.server.url}events?token={TOKEN}")
            page.wait_for_function("() => document.querySelectorAll('#events .event').length === 1",
                                   timeout=20_000)
            page.wait_for_function("() => { const i = document.querySelector('#events .event img'); "
                                   "return i.complete; }", timeout=20_000)
            width = page.evaluate("() => document.querySelector('#events .event img').naturalWidth")
            page.locator("#events .event button").click()
            page.wait_for_function("() => { const v = document.getElementById('video'); "
                                   "return v.readyState >= 2 || v.error; }", timeout=20_000)
            played = page.evaluate("() => { const v = document.getElementById('video'); "
                                   "return [v.videoWidth, v.error && v.error.code]; }")
        finally:
            page.close()
    finally:
        view.close()
    assert width == 176, "the snapshot did not load: its address was cut at '#' or '?'"
    assert played == [176, None], played
