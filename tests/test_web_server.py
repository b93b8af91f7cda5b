"""The web view's server on its own (no model): routes, limits, tokens, snapshots, stalled viewers.

Frames are real pictures from a clip, published the way the pipeline's output
thread does; the HTTP side is the real aiohttp server on loopback, spoken to
with raw sockets and urllib.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from helpers import Viewer, fed, wait_for

from streamdet.config.loader import load_config
from streamdet.config.sections import WebConfig, override
from streamdet.detections import Detections, FrameResult, OverlayStatus
from streamdet.errors import ConfigError
from streamdet.sources import Frame
from streamdet.measures.figures import RunStatus, SourceStatus
from streamdet.web import WebView, bind_listener


TOKEN = "s3cret-token-for-tests"


def _status(states: dict[str, str]):
    def status() -> RunStatus:
        return RunStatus(uptime_s=1.0, frames=0, sources=[
            SourceStatus(name=name, url=f"rtsp://***:***@127.0.0.1:554/{name}", live=True, state=state,
                         width=64, height=48, input_fps=float("nan"), processed_fps=None, frames_processed=0,
                         dropped=0, latency_ms=None, reconnects=0)
            for name, state in states.items()])
    return status


def _result(source_id: int, index: int, image: np.ndarray | None = None) -> FrameResult:
    image = image if image is not None else np.full((48, 64, 3), index % 255, np.uint8)
    detections = Detections(xyxy=np.array([[8, 8, 40, 40]], np.float32), scores=np.array([0.9], np.float32),
                            class_ids=np.array([1], np.int32), labels=("person",))
    return FrameResult(source="cam", frame=Frame(image=image, index=index, pts_ms=None, captured=time.monotonic()),
                       detections=detections, latency_ms=5.0 + index, source_id=source_id, fps=25.0)


@pytest.fixture
def serve():
    views = []

    def start(names=("door", "yard"), states=None, **settings) -> WebView:
        web = WebConfig(listen="127.0.0.1:0", **settings)
        drawn = []

        def draw(image, result):
            drawn.append(result.frame.index)
            view.plates.append(result.plate)
            image[:4, :4] = (0, 0, 255)

        view = WebView(bind_listener(web), web, list(names), _status(states or {n: "online" for n in names}), draw)
        view.drawn, view.plates = drawn, []
        views.append(view)
        return view

    yield start
    for view in views:
        view.close()


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.mark.unit
def test_listen_address_and_token_rules():
    assert WebConfig(listen="8080").listen == "8080"
    with pytest.raises(ValueError, match="reachable from other machines: set web.token"):
        WebConfig(listen="0.0.0.0:8080", token=None)
    WebConfig(listen="0.0.0.0:8080", token=TOKEN)
    WebConfig(listen="[::1]:8080")
    for bad in ("80800", "host:", "a:b:c", "8080x", ""):
        if bad:
            with pytest.raises(ValueError, match="is not PORT or HOST:PORT"):
                WebConfig(listen=bad)
    with pytest.raises(ValueError, match="at least 8 characters"):
        WebConfig(listen="8080", token="short")


@pytest.mark.unit
def test_token_from_the_environment(monkeypatch):
    # Read where the settings are loaded (config.loader), then checked with the rest by WebConfig.
    monkeypatch.setenv("STREAMDET_WEB_TOKEN", TOKEN)
    config = load_config(None)
    override(config, "web", listen="0.0.0.0:8080")
    assert config.web.token == TOKEN


@pytest.mark.unit
def test_short_token_matters_only_with_the_web_view_on(monkeypatch):
    monkeypatch.setenv("STREAMDET_WEB_TOKEN", "short")
    config = load_config(None)
    assert config.web.token == "short"  # no web view: nothing to guard, nothing to refuse
    with pytest.raises(ConfigError, match=r"token \(web.token or STREAMDET_WEB_TOKEN\) must be at least 8 characters"):
        override(config, "web", listen="8080")


@pytest.mark.unit
def test_busy_port_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"web.listen 127.0.0.1:{port}: cannot listen there: the port is in use"):
            bind_listener(WebConfig(listen=f"127.0.0.1:{port}"))


@pytest.mark.unit
def test_routes_json_health_and_nothing_else(serve):
    view = serve(states={"door": "online", "yard": "offline"})
    url = view.server.url
    code, body, headers = _get(url)
    assert code == 200 and b"<title>streamdet</title>" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    code, body, _ = _get(url + "api/sources")
    sources = json.loads(body)
    assert [s["name"] for s in sources] == ["door", "yard"]
    assert sources[0]["stream"] == "/stream/door.mjpg"
    code, body, _ = _get(url + "api/stats")
    stats = json.loads(body)
    assert code == 200 and stats["sources"][0]["input_fps"] is None  # NaN is no JSON: null
    code, body, _ = _get(url + "healthz")
    assert code == 503 and body == b"offline: yard\n"
    for path in ("stream/nobody.mjpg", "snapshot/..%2F..%2Fetc%2Fpasswd.jpg", "stream/../../etc/passwd",
                 "page.html", "static/x", "api", "%2e%2e/%2e%2e/etc/passwd", "snapshot/door.png"):
        code, body, _ = _get(url + path)
        assert code == 404, path
        assert b"root:" not in body
    code, _, _ = _get(url + "snapshot/door.jpg")
    assert code == 503  # no frame yet


@pytest.mark.unit
def test_healthz_200_when_all_online(serve):
    view = serve(states={"door": "online", "yard": "ended"})
    assert _get(view.server.url + "healthz")[:2] == (200, b"ok\n")


@pytest.mark.unit
def test_snapshot_is_the_newest_frame_drawn_by_the_web_view_only(serve):
    view = serve()
    for i in range(1, 6):
        view.write(_result(0, i))
    code, body, headers = _get(view.server.url + "snapshot/door.jpg")
    assert code == 200 and headers["Content-Type"] == "image/jpeg"
    import cv2
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 64, 3)
    assert abs(int(image[20, 50, 0]) - 5) < 6        # frame 5's grey, not an older frame
    assert image[1, 1, 2] > 180                      # drawn on
    assert view.drawn == [5]                          # only the frame asked for was drawn and encoded
    # with its own plate, though nobody watched when it came (the plate was missing from such snapshots)
    assert view.plates == [OverlayStatus(fps=25.0, latency_ms=5.0 + 5)]
    assert view.hub.encode_ms.summary().count == 1


@pytest.mark.unit
def test_unwatched_frames_are_never_encoded(serve):
    view = serve()
    for i in range(1, 200):
        view.write(_result(i % 2, i))
    assert view.hub.encode_ms.summary().count == 0 and view.drawn == []


@pytest.mark.unit
def test_streams_capped_per_second_shared_by_viewers_and_limited_in_number(serve):
    view = serve(fps=20.0, max_clients=3)
    url = view.server.url
    viewers = [Viewer(url, "/stream/door.mjpg") for _ in range(3)]
    wait_for(lambda: view.hub.watchers()[0] == 3, 10, "three viewers")
    extra = Viewer(url, "/stream/door.mjpg")
    wait_for(lambda: extra.status, 10, "the fourth viewer's answer")
    assert extra.status == 503
    # The page's JSON and /healthz are still answered with every viewer place taken.
    assert _get(url + "api/stats")[0] == 200 and _get(url + "healthz")[0] == 200
    with fed(lambda i: view.write(_result(0, i)), 0.002):  # a 500 fps source
        wait_for(lambda: all(len(v.frames) >= 20 for v in viewers), 20, "20 frames at every viewer")
    encoded = view.hub.encode_ms.summary().count
    span = max(v.frames[-1] for v in viewers) - min(v.frames[0] for v in viewers)
    assert encoded <= 20 * span + 3, f"{encoded} JPEGs in {span:.2f} s: the 20 fps cap is not kept"
    assert all(len(v.frames) <= encoded for v in viewers)  # one encode serves every viewer
    stats = json.loads(_get(url + "api/stats")[1])
    assert stats["web"]["most_clients"] == 3 and stats["web"]["refused"] >= 1
    for v in viewers + [extra]:
        v.close()


@pytest.mark.unit
def test_stalled_viewer_dropped_others_unaffected(serve):
    view = serve(fps=30.0, client_timeout=1.0, max_width=640)
    url = view.server.url
    stalled = Viewer(url, "/stream/door.mjpg", stalled=True)
    wait_for(lambda: view.hub.watchers()[0] == 1, 10, "the stalled viewer")
    good = Viewer(url, "/stream/door.mjpg")
    noise = np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8)  # big JPEGs fill buffers fast
    with fed(lambda i: view.write(_result(0, i, noise.copy())), 0.01):
        wait_for(lambda: view.server.dropped_stalled == 1, 30, "the stalled viewer to be dropped")
        count = len(good.frames)
        wait_for(lambda: len(good.frames) >= count + 10, 10, "frames at the good viewer after the drop")
    gaps = np.diff(good.frames)
    assert gaps.max() < 0.9, f"the good viewer waited {gaps.max():.2f} s for a frame while the other stalled"
    assert view.hub.watchers()[0] == 1
    good.close()
    stalled.close()


@pytest.mark.unit
def test_token_required_everywhere_when_set(serve):
    view = serve(token=TOKEN)
    url = view.server.url
    for path in ("", "api/stats", "healthz", "stream/door.mjpg", "snapshot/door.jpg"):
        code, body, headers = _get(url + path)
        assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
    assert _get(url + "api/stats", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert _get(url + f"api/stats?token={TOKEN}")[0] == 200
    assert _get(url + "api/stats?token=wrong-token-value")[0] == 401
    assert _get(url + "api/stats", {"Authorization": "Bearer wrong-token-value"})[0] == 401


@pytest.mark.unit
def test_pages_scripts_and_styles_are_files_of_the_server_served_without_a_token(serve):
    """The page runs no inline code (its CSP refuses it); its script and style hold nothing of the cameras, so
    they are served to anybody, and only the files shipped with streamdet exist under /static/."""
    view = serve(token=TOKEN)
    url = view.server.url
    code, page, headers = _get(url + f"?token={TOKEN}")
    assert code == 200 and "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert b"<script>" not in page and b"<style>" not in page and b'src="/static/page.js"' in page
    code, body, headers = _get(url + "static/page.js")
    assert code == 200 and headers["Content-Type"].startswith("text/javascript") and b"/api/stats" in body
    assert _get(url + "static/page.css")[2]["Content-Type"].startswith("text/css")
    for path in ("static/..%2Fpage.html", "static/%2e%2e%2fserver.py", "static/", "static/page.js/x"):
        assert _get(url + path)[0] in (401, 404), path


def _raw(url: str, data: bytes) -> socket.socket:
    host, port = url.split("//")[1].rstrip("/").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(data)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return data


@pytest.mark.unit
def test_connections_are_capped_and_unfinished_headers_time_out(serve):
    view = serve(max_clients=1)
    url = view.server.url
    cap = view.server.max_connections
    assert cap == 1 + 16 + 48  # far below this process's descriptor limit, so the cap is from web.max_clients
    hanging = [_raw(url, b"GET / HTTP/1.1\r\nHost: x\r\n") for _ in range(cap)]
    wait_for(lambda: view.server.connections == cap, 10, f"{cap} connections open")
    over = _raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _answer(over).startswith(b"HTTP/1.1 503") and view.server.refused == 1
    assert view.server.connections == cap
    # No header within the timeout: every one of them is closed by the server, none by the test.
    started = time.monotonic()
    answers = [_answer(sock) for sock in hanging]
    assert time.monotonic() - started < 8
    assert all(a == b"" or a.startswith(b"HTTP/1.1 4") for a in answers)
    wait_for(lambda: view.server.connections == 0, 10, "every connection closed")
    assert _get(url + "healthz")[0] == 200


@pytest.mark.unit
def test_connection_cap_leaves_most_descriptors_to_the_run(monkeypatch):
    import resource

    from streamdet.web.connections import connection_cap

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1024, 1024))
    assert connection_cap(32) == 96 and connection_cap(1000) == 256


@pytest.mark.unit
def test_malformed_requests_are_one_short_line_each_without_the_token(serve, caplog):
    import logging

    caplog.set_level(logging.INFO)
    view = serve(token=TOKEN)
    url = view.server.url
    query = f"/snapshot/door.jpg?token={TOKEN}".encode()
    bad = {
        "long header": b"GET " + query + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        "garbage": b"GARBAGE " + query + b"\r\n\r\n",
        "version": b"GET " + query + b" HTTP/9.9\r\nHost: x\r\n\r\n",
        "control byte": b"GET " + query + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    for _ in range(3):
        for kind, request in bad.items():
            answer = _answer(_raw(url, request))
            assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), (kind, answer[:200])
    assert _get(url + "healthz")[0] == 401  # the server goes on
    text = caplog.text
    assert TOKEN not in text and "Traceback" not in text and "s3cret" not in text, text
    lines = [r.getMessage() for r in caplog.records if "web view on" not in r.getMessage()]
    # Each kind was sent three times: one line for each kind aiohttp tells apart, none repeated.
    assert 1 <= len(lines) <= len(bad) and len(set(lines)) == len(lines), lines
    assert all("malformed request" in line and "\n" not in line and len(line) < 200 for line in lines), lines


@pytest.mark.unit
def test_links_in_api_sources_are_url_encoded_and_lead_to_the_source(serve):
    odd = "cam #2 50%?"  # a name derived from a file name: none of the characters a user may type
    view = serve(names=(odd, "door"))
    url = view.server.url
    view.write(_result(0, 1))
    sources = json.loads(_get(url + "api/sources")[1])
    assert sources[0]["name"] == odd
    assert sources[0]["snapshot"] == "/snapshot/cam%20%232%2050%25%3F.jpg"
    code, body, headers = _get(url + sources[0]["snapshot"].lstrip("/"))
    assert code == 200 and headers["Content-Type"] == "image/jpeg"
    stream = Viewer(url, sources[0]["stream"])
    wait_for(lambda: stream.status, 10, "the stream's answer")
    assert stream.status == 200
    stream.close()


def test_a_long_route_takes_a_viewers_place_by_its_route_for_get_and_head_alike(serve):
    """Long routes are marked where they are registered: a HEAD of a stream is refused like its GET when the
    viewers' places are taken, while a path no route has is answered 404 from the short requests' places."""
    view = serve(max_clients=1)
    url = view.server.url
    watching = socket.create_connection(("127.0.0.1", int(url.rstrip("/").rsplit(":", 1)[1])), timeout=10)
    watching.sendall(b"GET /stream/door.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in watching.recv(200)
    wait_for(lambda: view.server.clients == 1, 10, "the stream to be counted")
    refused = view.server.refused
    for method in ("GET", "HEAD"):
        request = urllib.request.Request(url + "stream/yard.mjpg", method=method)
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)
        assert answer.value.code == 503 and answer.value.headers["Retry-After"] == "5", method
    assert view.server.refused == refused + 2
    assert _get(url + "stream/yard")[0] == 404  # no route: not a viewer
    assert view.server.refused == refused + 2
    watching.close()
    wait_for(lambda: view.server.clients == 0, 10, "the stream to end")


@pytest.mark.unit
def test_links_take_web_public_url_else_the_host_the_listener_was_given_and_none_for_every_address():
    from streamdet.web.listener import link_url

    cases = [({"listen": "127.0.0.1:0"}, "http://127.0.0.1:{port}/"),
             ({"listen": "localhost:0"}, "http://localhost:{port}/"),
             ({"listen": "[::1]:0"}, "http://[::1]:{port}/"),
             ({"listen": "0.0.0.0:0", "token": "links-token-123"}, None),
             ({"listen": "[::]:0", "token": "links-token-123"}, None),
             ({"listen": "0.0.0.0:0", "token": "links-token-123", "public_url": "http://cams.lan:8080"},
              "http://cams.lan:8080/")]
    for settings, expected in cases:
        web = WebConfig(**settings)
        try:
            sock = bind_listener(web)
        except ConfigError as exc:  # a machine without IPv6
            assert "::" in settings["listen"], exc
            continue
        try:
            port = sock.getsockname()[1]
            assert link_url(web, sock) == (expected.format(port=port) if expected else None), settings
        finally:
            sock.close()
