"""The recording player's detections (no model): a segment's sidecar (streamdet.outputs.sidecar) served only for a
segment in the camera's record, with the token rules, and drawn over the <video> in Debian's Chromium.

The segments are real fragmented MP4s (the recording's encoder, carphone's frames) entered in a real record
(streamdet.outputs.segments), as test_web_review.py makes them; their sidecars hold one box per frame.
"""

from __future__ import annotations

import json

import pytest

from helpers import decode
from media import clip
from test_web_review import NAMES, TOKEN, _get, _status

from streamdet.config.sections import RecordingConfig, WebConfig
from streamdet.outputs.segments import Segments
from streamdet.outputs.sidecar import sidecar_path
from streamdet.outputs.video import Encoder
from streamdet.drawing import class_color
from streamdet.web import WebView, bind_listener


BOX = (20.0, 30.0, 120.0, 130.0)  # in the 176x144 picture


def _sidecar_text(frames: int) -> str:
    return "".join(json.dumps({
        "source": "door", "frame": i, "pts_ms": None, "latency_ms": 5.0, "inferred": True,
        "detections": [{"label": "person", "class_id": 1, "score": 0.9, "box": list(BOX), "track": 3}],
        "pts": round(i * 0.04, 4), "size": [176, 144],
        "scene": {"zones": {}, "lines": {"gate": {"points": [[150.0, 10.0], [150.0, 130.0]], "in": 2, "out": 1}}},
    }) + "\n" for i in range(frames))


@pytest.fixture(scope="module")
def segments(tmp_path_factory) -> Segments:
    """Two real 2 s segments of the camera `door`: the older with its detections beside it, the newer without."""
    folder = tmp_path_factory.mktemp("detections") / "rec"
    folder.mkdir()
    frames = decode(clip("carphone_pristine"), 50)
    made = Segments(str(folder / "door_{start}.mp4"), RecordingConfig())
    for i in range(2):
        path = made.path_for(1_764_842_400.0 + 60 * i)
        encoder = Encoder(path, (176, 144), 25.0, RecordingConfig())
        for n, image in enumerate(frames):
            encoder.add(image, n * 40)
        encoder.close()
    sidecar_path(made.ours()[0][0]).write_text(_sidecar_text(len(frames)))
    return made


@pytest.fixture
def serve():
    views = []

    def start(recordings, **settings) -> WebView:
        web = WebConfig(listen="127.0.0.1:0", **settings)
        view = WebView(bind_listener(web), web, list(NAMES), _status, None, recordings=recordings)
        views.append(view)
        return view

    yield start
    for view in views:
        view.close()


@pytest.mark.unit
def test_the_listing_names_a_segments_detections_and_only_those_are_served(serve, segments):
    view = serve({"door": segments.ours})
    older, newer = (path for path, _ in segments.ours())
    listing = json.loads(_get(view, "/api/recordings/door")[1])["segments"]
    assert [s["name"] for s in listing] == [newer.name, older.name]
    assert listing[0]["detections"] is None
    assert listing[1]["detections"] == f"/api/recordings/door/{sidecar_path(older).name}"
    status, body, headers = _get(view, listing[1]["detections"])
    assert status == 200 and body == sidecar_path(older).read_bytes()
    assert headers["content-type"].startswith("application/jsonl") and headers["x-content-type-options"] == "nosniff"
    # Never another .jsonl: one beside the segments that no segment of the record owns, the missing one of the
    # newer segment, a segment itself, another camera's name, a path out of the folder, a link put in its place.
    stranger = segments.folder / "door_20261204-100000.jsonl"
    stranger.write_text(_sidecar_text(1))
    (segments.folder.parent / "secret.jsonl").write_text("{}\n")
    for path in (f"/api/recordings/door/{stranger.name}", f"/api/recordings/door/{sidecar_path(newer).name}",
                 f"/api/recordings/door/{older.name}", f"/api/recordings/yard/{sidecar_path(older).name}",
                 f"/api/recordings/nobody/{sidecar_path(older).name}", "/api/recordings/door/..%2fsecret.jsonl",
                 "/api/recordings/door/%2e%2e"):
        assert _get(view, path)[0] == 404, path
    link = sidecar_path(newer)
    link.symlink_to(segments.folder.parent / "secret.jsonl")
    try:
        assert _get(view, f"/api/recordings/door/{link.name}")[0] == 404
        assert json.loads(_get(view, "/api/recordings/door")[1])["segments"][0]["detections"] is None
    finally:
        link.unlink()


@pytest.mark.unit
def test_with_a_token_the_detections_need_it(serve, segments):
    view = serve({"door": segments.ours}, token=TOKEN)
    path = f"/api/recordings/door/{sidecar_path(segments.ours()[0][0]).name}"
    assert _get(view, path)[0] == 401
    assert _get(view, f"{path}?token=wrong-token-123")[0] == 401
    assert _get(view, f"{path}?token={TOKEN}")[0] == 200
    assert _get(view, path, {"Authorization": f"Bearer {TOKEN}"})[0] == 200


_PIXEL = """([x, y]) => {
  const data = document.getElementById('overlay').getContext('2d').getImageData(x - 2, y - 2, 5, 5).data;
  const found = [];
  for (let i = 0; i < data.length; i += 4) found.push([data[i], data[i + 1], data[i + 2], data[i + 3]]);
  return found;
}"""
_DRAWN = """() => { const d = document.getElementById('overlay').getContext('2d')
  .getImageData(0, 0, document.getElementById('overlay').width, document.getElementById('overlay').height).data;
  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""


@pytest.mark.services
def test_the_player_draws_the_boxes_over_the_video_in_chromium(serve, segments, chromium):
    view = serve({"door": segments.ours}, token=TOKEN)
    page = chromium.new_page(viewport={"width": 800, "height": 700})
    try:
        refused: list[str] = []  # the page's own requests that failed (the browser's favicon.ico is none of ours)
        page.on("response", lambda r: refused.append(f"{r.status} {r.url}")
                if r.status >= 400 and not r.url.split("?")[0].endswith("/favicon.ico") else None)
        page.goto(f"{view.server.url}recordings/door?token={TOKEN}")
        page.wait_for_function("() => document.querySelectorAll('#segments li').length === 2", timeout=20_000)
        page.locator("#segments li button").nth(1).click()  # the older segment: it has detections
        page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=20_000)
        page.evaluate("() => { const v = document.getElementById('video'); v.pause(); v.currentTime = 0.5; }")
        page.wait_for_function("() => document.getElementById('overlay').dataset.boxes === '1'", timeout=20_000)
        scale, left = page.evaluate("() => { const v = document.getElementById('video'); "
                                    "return [v.clientWidth / v.videoWidth, 0]; }")
        edge = page.evaluate(_PIXEL, [round(left + BOX[0] * scale), round((BOX[1] + BOX[3]) / 2 * scale)])
        gate = page.evaluate(_PIXEL, [round(150 * scale), round(100 * scale)])
        inside = page.evaluate(_PIXEL, [round((BOX[0] + BOX[2]) / 2 * scale), round((BOX[1] + BOX[3]) / 2 * scale)])
        page.locator("#segments li button").nth(0).click()  # the newer: no detections beside it
        page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=20_000)
        page.wait_for_function("() => document.getElementById('video').currentTime > 0.2", timeout=20_000)
        bare = page.evaluate("() => document.getElementById('overlay').dataset.boxes")
        drawn = page.evaluate(_DRAWN)
    finally:
        page.close()
    b, g, r = class_color(1)
    assert any(abs(px[0] - r) < 30 and abs(px[1] - g) < 30 and abs(px[2] - b) < 30 and px[3] > 200 for px in edge), edge
    assert any(abs(px[0] - 255) < 30 and abs(px[1] - 215) < 30 and px[2] < 30 and px[3] > 200 for px in gate), gate
    assert all(px[3] == 0 for px in inside), "the picture inside the box must stay uncovered"
    assert bare == "0" and drawn == 0, (bare, drawn)
    assert not refused, refused
