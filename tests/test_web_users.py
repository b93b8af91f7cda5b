"""Logins, roles and cameras on the real web server (no model): every route of both route tables for a
viewer of `door` against an admin, the login rate limit, idle sessions, CSRF, the metrics token, a users file
changed while serving, and real Chromium logging in and out.

Frames are real pictures from a clip, the snapshots real JPEGs, the clips and segments a real MP4, all
served from the files the web view was told of, as a run tells it."""

from __future__ import annotations

import http.client
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import decode, wait_for
from media import clip

from streamdet.config.users import hash_password, load_users, make_user, save_users
from streamdet.config.web import WebConfig
from streamdet.detections import Detections, FrameResult
from streamdet.errors import ConfigError
from streamdet.measures.figures import RunStatus, SourceStatus
from streamdet.scene import Event
from streamdet.sources import Frame
from streamdet.web import WebView, bind_listener

NAMES = ("door", "yard")
PASSWORDS = {"alice": "alice's password", "vera": "vera's password"}
TOKEN = "machine-token-for-tests"
METRICS = "metrics-token-for-tests"


def _status() -> RunStatus:
    # The yard is offline: /healthz shows a viewer of the door only the door's state.
    return RunStatus(uptime_s=1.0, frames=0, sources=[
        SourceStatus(name=name, url=f"rtsp://***:***@127.0.0.1:554/{name}", live=True, state=state, width=176,
                     height=144, input_fps=25.0, processed_fps=None, frames_processed=0, dropped=0,
                     latency_ms=None, reconnects=0)
        for name, state in (("door", "online"), ("yard", "offline"))])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Per camera: a real JPEG snapshot, a real MP4 clip, a recording segment and its detections file."""
    folder = tmp_path_factory.mktemp("files")
    frames = decode(clip("carphone_pristine"), 2)
    made = {"frames": frames}
    for name in NAMES:
        snapshot, video = folder / f"{name}_track1.jpg", folder / f"{name}_track1.mp4"
        snapshot.write_bytes(cv2.imencode(".jpg", frames[0])[1].tobytes())
        shutil.copyfile(clip("carphone_pristine"), video)
        segment = folder / f"{name}_20261204-100000.mp4"
        shutil.copyfile(clip("carphone_pristine"), segment)
        segment.with_suffix(".jsonl").write_text(json.dumps({"t": 0.0, "size": [176, 144], "detections": []}) + "\n")
        made[name] = {"snapshot": snapshot, "clip": video, "segment": segment}
    return made


def _users(folder: Path) -> Path:
    path = folder / "users.json"
    save_users(path, {"alice": make_user("alice", "admin", hash_password(PASSWORDS["alice"]), None),
                      "vera": make_user("vera", "viewer", hash_password(PASSWORDS["vera"]), ["door"])})
    return path


@pytest.fixture
def serve(tmp_path, files):
    views = []

    def start(**settings) -> WebView:
        web = WebConfig(listen="127.0.0.1:0", users=str(_users(tmp_path)), **settings)
        recordings = {name: (lambda name=name: [(files[name]["segment"], 1_796_378_400.0)]) for name in NAMES}
        view = WebView(bind_listener(web), web, list(NAMES), _status, None, recordings)
        views.append(view)
        none = Detections(xyxy=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32),
                          class_ids=np.zeros(0, np.int32), labels=())
        for i, name in enumerate(NAMES):
            end = Event(kind="end", source=name, track=1, label="person", score=0.8, box=(1.0, 2.0, 30.0, 40.0),
                        time="2026-12-04T10:00:00.000Z", frame=1, pts_s=None, duration_s=1.0,
                        snapshot=str(files[name]["snapshot"]), clip=str(files[name]["clip"]))
            view.write(FrameResult(source=name, frame=Frame(image=files["frames"][i].copy(), index=1, pts_ms=None,
                                                            captured=time.monotonic()),
                                   detections=none, latency_ms=5.0, source_id=i, events=(end,)))
        return view

    yield start
    for view in views:
        view.close()


class Client:
    """Raw HTTP to the web view (exact paths, no redirects followed), with a login's cookie and CSRF token."""

    def __init__(self, view: WebView):
        self.host, port = view.server.url[len("http://"):-1].split(":")
        self.port = int(port)
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                whole: bool = True) -> tuple[int, bytes, dict]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            sent = dict(headers or {})
            if self.cookie:
                sent.setdefault("Cookie", self.cookie)
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            # A stream never ends: its status and headers are the answer.
            data = response.read() if whole else b""
            return response.status, data, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def login(self, name: str, password: str | None = None) -> tuple[int, dict]:
        status, body, headers = self.request("POST", "/login", json.dumps(
            {"name": name, "password": password or PASSWORDS[name]}).encode(), {"Content-Type": "application/json"})
        if status == 200:
            self.cookie = headers["set-cookie"].split(";")[0]
            self.csrf = json.loads(self.request("GET", "/api/me")[1])["csrf"]
        return status, headers | {"body": json.loads(body)}


def _logged_in(view: WebView, name: str) -> Client:
    client = Client(view)
    assert client.login(name)[0] == 200
    return client


def _path(view: WebView, files: dict, route, camera: str) -> str:
    """The route's address for `camera`: its name in {name}, and the camera's own file in {file}."""
    file_of = {"/snapshots/{file}": files[camera]["snapshot"].name, "/clips/{file}": files[camera]["clip"].name,
               "/recordings/{name}/{file}": files[camera]["segment"].name,
               "/api/recordings/{name}/{file}": files[camera]["segment"].with_suffix(".jsonl").name,
               "/static/{file}": "page.js"}
    path = route.path.replace("{name}", camera)
    if "{file}" in path:
        assert route.path in file_of, f"{route.path} names a file: say in this test which file is a camera's"
        path = path.replace("{file}", file_of[route.path])
    assert "{" not in path, f"{route.path}: a parameter this test does not know; add it"
    return path


WEBSOCKET = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}

# What a viewer of the door sees in each route that lists cameras (Route.shows == "cameras").
LISTS = {
    "/api/sources": lambda body: [s["name"] for s in json.loads(body)] == ["door"],
    "/api/stats": lambda body: [s["name"] for s in json.loads(body)["sources"]] == ["door"],
    "/api/events": lambda body: [e["source"] for e in json.loads(body)["events"]] == ["door"],
    "/healthz": lambda body: body == b"ok\n",  # the yard is offline; the door is not
}


@pytest.mark.unit
def test_every_route_for_a_viewer_of_the_door_and_for_an_admin(serve, files):
    view = serve(token=TOKEN)
    vera, alice, nobody = _logged_in(view, "vera"), _logged_in(view, "alice"), Client(view)
    routes = view.server.routes()
    assert {r.path for r in routes} >= {"/", "/stream/{name}.mjpg", "/clips/{file}", "/api/recordings/{name}/{file}",
                                        "/metrics", "/login", "/api/me"}
    for route in routes:
        assert route.decided, f"{route.path}: neither public, admin-only, a camera's nor filtered: say which"
        method, whole = route.method, not route.long
        headers = {"X-CSRF-Token": vera.csrf} if method != "GET" else {}
        if route.public:
            assert nobody.request(method, _path(view, files, route, "door"))[0] not in (401, 403), route.path
            continue
        assert nobody.request(method, _path(view, files, route, "door"), whole=whole)[0] == 401, route.path
        if route.admin:
            assert vera.request(method, _path(view, files, route, "door"), headers=headers)[0] == 403, route.path
            # An admin is let through (the camera API of a run without a config file then answers 404).
            mine = {"X-CSRF-Token": alice.csrf} if method != "GET" else {}
            assert alice.request(method, _path(view, files, route, "door"), headers=mine,
                                 whole=whole)[0] not in (401, 403), route.path
        elif route.camera is not None:
            # The live streams start with their first fragment: asked as the page asks (a WebSocket), the
            # handshake's answer is what the server decided.
            ask, ok = (WEBSOCKET, 101) if route.path.startswith("/live/") else ({}, 200)
            for who in (vera, alice):
                status = who.request(method, _path(view, files, route, "door"), headers=ask, whole=whole)[0]
                assert status == ok, (route.path, status)
            for verb in (method, "HEAD"):
                status, body, _ = vera.request(verb, _path(view, files, route, "yard"), headers=ask, whole=whole)
                assert status == 403, (route.path, verb, status)
            assert alice.request(method, _path(view, files, route, "yard"), headers=ask, whole=whole)[0] == ok, \
                route.path
        elif route.shows == "cameras":
            assert route.path in LISTS, f"{route.path} lists cameras: say in LISTS what a viewer of the door sees"
            status, body, _ = vera.request(method, route.path)
            assert status == 200 and LISTS[route.path](body), (route.path, body)
            assert alice.request(method, route.path)[0] in (200, 503), route.path
        else:  # shows nothing of any camera: anybody logged in
            who = _logged_in(view, "vera") if method != "GET" else vera  # (logging out ends the session)
            status = who.request(method, route.path, headers={"X-CSRF-Token": who.csrf} if method != "GET" else {})[0]
            assert status == 200, route.path
    # The lists an admin sees hold both; a viewer asking for another camera's events by name is refused.
    assert [s["name"] for s in json.loads(alice.request("GET", "/api/sources")[1])] == ["door", "yard"]
    assert alice.request("GET", "/healthz")[:2] == (503, b"offline: yard\n")
    assert vera.request("GET", "/api/events?source=yard")[0] == 403
    assert vera.request("GET", "/api/events?source=door")[0] == 200
    assert vera.request("GET", "/clips/nothing-of-this-run.mp4")[0] == 404
    me = json.loads(vera.request("GET", "/api/me")[1])
    assert me["name"] == "vera" and me["role"] == "viewer" and me["cameras"] == ["door"] and me["logins"]
    # The machine token is an admin; a browser without a session is sent to the login page.
    assert nobody.request("GET", "/api/recordings/yard", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    status, _, headers = nobody.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 303 and headers["location"] == "/login"
    assert nobody.request("GET", "/api/stats")[0] == 401


@pytest.mark.unit
def test_failed_logins_are_limited_per_address_and_a_right_one_after_the_window_passes(serve):
    view = serve()
    view.server.logins.failed.window_s = 2.0  # the real limit (5 a window) over a window a test can wait out
    client = Client(view)
    for _ in range(5):
        status, answer = client.login("alice", "wrong password")
        assert status == 401 and answer["body"]["error"] == "wrong user name or password"
    status, answer = client.login("alice", "wrong password")
    assert status == 429 and 1 <= int(answer["retry-after"]) <= 2
    assert client.login("alice")[0] == 429  # the right password too: nothing is checked while refused
    assert client.login("nobody-at-all", "whatever it is")[0] == 429
    wait_for(lambda: client.login("alice")[0] == 200, 10, "a login once the window has passed", poll=0.25)


@pytest.mark.unit
def test_a_wrong_name_and_a_wrong_password_take_as_long(serve):
    view = serve()
    client = Client(view)
    view.server.logins.failed.most = 1000  # timing many attempts: the limit is tested above

    def took(name: str) -> float:
        t0 = time.perf_counter()
        assert client.login(name, "wrong password")[0] == 401
        return time.perf_counter() - t0

    took("alice")  # warm
    pairs = [(took("alice"), took("nobody")) for _ in range(9)]  # in turns: both see the same load
    wrong_password = sorted(p for p, _ in pairs)[4]
    wrong_name = sorted(n for _, n in pairs)[4]
    # Both run scrypt (the dummy hash for a name nobody has): medians within a factor of three on this shared
    # machine, where skipping the check would make it 1 ms against 50.
    assert 1 / 3 < wrong_name / wrong_password < 3, (wrong_name, wrong_password)


@pytest.mark.unit
def test_a_session_ends_after_its_idle_time_and_requests_keep_it(serve):
    view = serve(session_idle=0.025)  # 1.5 s
    vera = _logged_in(view, "vera")
    last = time.monotonic()
    for _ in range(4):  # 2 s in all, more than the idle time: each request starts it again
        wait_for(lambda: time.monotonic() - last > 0.5, 5, "half a second")
        assert vera.request("GET", "/api/me")[0] == 200
        last = time.monotonic()
    wait_for(lambda: time.monotonic() - last > 1.6, 5, "the idle time to pass")
    assert vera.request("GET", "/api/me")[0] == 401
    status, _, headers = vera.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 303 and headers["location"] == "/login"


@pytest.mark.unit
def test_changes_need_the_sessions_csrf_token_or_a_bearer_token(serve):
    view = serve(token=TOKEN)
    vera = _logged_in(view, "vera")
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
        status, body, _ = vera.request("POST", "/logout", headers=headers)
        assert status == 403 and b"X-CSRF-Token" in body
    assert vera.request("GET", "/api/me")[0] == 200  # still logged in
    assert Client(view).request("POST", "/logout", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    status, _, headers = vera.request("POST", "/logout", headers={"X-CSRF-Token": vera.csrf})
    assert status == 200 and "streamdet_session=;" in headers["set-cookie"].replace('""', "")
    assert vera.request("GET", "/api/me")[0] == 401
    # Login is public: a browser's login from another site's page is refused.
    status, _, _ = Client(view).request("POST", "/login", json.dumps({"name": "vera", "password": PASSWORDS["vera"]})
                                        .encode(), {"Content-Type": "application/json", "Origin": "http://evil.test"})
    assert status == 403


@pytest.mark.unit
def test_the_cookie_and_the_metrics_token(serve):
    view = serve(metrics_token=METRICS)
    client = Client(view)
    status, answer = client.login("vera")
    cookie = answer["set-cookie"]
    assert status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS (request.secure) it is Secure
    assert client.request("GET", "/metrics")[0] == 403
    bearer = {"Authorization": f"Bearer {METRICS}"}
    status, body, _ = Client(view).request("GET", "/metrics", headers=bearer)
    assert status == 200 and b'streamdet_frames_processed_total{source="yard"}' in body
    assert Client(view).request("GET", "/api/stats", headers=bearer)[0] == 401  # it reads /metrics only
    assert _logged_in(view, "alice").request("GET", "/metrics")[0] == 200


@pytest.mark.unit
def test_the_users_file_is_read_again_when_it_changes(serve, tmp_path, caplog):
    view = serve()
    vera = _logged_in(view, "vera")
    users = load_users(tmp_path / "users.json")
    users["vera"] = make_user("vera", "viewer", hash_password("a new password"), ["door"])
    save_users(tmp_path / "users.json", users)  # what streamdet user passwd does
    wait_for(lambda: vera.request("GET", "/api/me")[0] == 401, 10, "the old password's session to end")
    assert Client(view).login("vera")[0] == 401
    assert Client(view).login("vera", "a new password")[0] == 200
    (tmp_path / "users.json").write_text("{")  # broken: the users read before stay, and that is said once

    def alice_still_logs_in() -> bool:
        assert Client(view).login("alice")[0] == 200
        return "not valid JSON: Expecting property name" in caplog.text and "the users read before stay" in caplog.text

    wait_for(alice_still_logs_in, 10, "the broken users file to be seen", poll=0.25)


@pytest.mark.unit
def test_a_missing_users_file_is_one_line(tmp_path):
    web = WebConfig(listen="127.0.0.1:0", users=str(tmp_path / "none.json"))
    with pytest.raises(ConfigError, match=r"users file '.*none.json' \(web.users\): no such file"):
        WebView(bind_listener(web), web, list(NAMES), _status, None)


@pytest.mark.unit
def test_without_users_the_asker_is_the_admin_and_there_is_no_login(tmp_path):
    web = WebConfig(listen="127.0.0.1:0")
    view = WebView(bind_listener(web), web, list(NAMES), _status, None)
    try:
        client = Client(view)
        me = json.loads(client.request("GET", "/api/me")[1])
        assert me == {"name": None, "role": "admin", "cameras": None, "csrf": None, "logins": False}
        assert client.request("GET", "/login")[0] == 404
        assert [s["name"] for s in json.loads(client.request("GET", "/api/sources?token=any")[1])] == ["door", "yard"]
        # A change asked for by another site's page (an open view on loopback is reachable from any page the
        # browser shows) is refused before anything else; the same request from here is only a wrong method.
        assert client.request("POST", "/api/me", headers={"Origin": "http://evil.test"})[0] == 403
        assert client.request("POST", "/api/me", headers={"Origin": view.server.url.rstrip("/")})[0] == 405
    finally:
        view.close()


@pytest.mark.services
def test_chromium_logs_in_through_the_form_sees_the_page_and_logs_out(serve, chromium):
    view = serve()
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.goto(view.server.url)
        page.wait_for_url("**/login")
        page.fill("#name", "vera")
        page.fill("#password", "not her password")
        page.click("button[type=submit]")
        page.wait_for_function("() => document.getElementById('message').textContent.length > 0", timeout=10_000)
        assert page.text_content("#message") == "wrong user name or password"
        page.fill("#password", PASSWORDS["vera"])
        page.click("button[type=submit]")
        page.wait_for_url(view.server.url)
        page.wait_for_selector(".tile[data-source=door]", timeout=10_000)
        page.wait_for_function("() => document.getElementById('me').textContent === 'vera (viewer)'", timeout=10_000)
        assert page.locator(".tile").count() == 1  # the yard is not hers
        assert [c["name"] for c in context.cookies()] == ["streamdet_session"]
        page.click("#logout")
        page.wait_for_url("**/login")
        assert context.cookies() == []
        page.goto(view.server.url)  # the old session is gone: back to the login
        page.wait_for_url("**/login")
    finally:
        context.close()


@pytest.mark.unit
def test_sessions_and_failed_logins_are_bounded_and_expire():
    from streamdet.web.logins import FailedLogins, Sessions

    now = [0.0]
    sessions = Sessions(idle_s=10, most=3, clock=lambda: now[0])
    people = [make_user(f"u{i}", "viewer", "scrypt$x", None) for i in range(4)]
    opened = [sessions.open(person) for person in people]
    assert sessions.get(opened[0].id) is None  # the fourth login dropped the one unused longest
    assert all(sessions.get(s.id) is not None for s in opened[1:])
    now[0] = 9.0
    assert sessions.get(opened[1].id) is not None  # used at 9 s: its idle time starts again
    now[0] = 15.0
    assert sessions.get(opened[2].id) is None and sessions.get(opened[1].id) is not None
    failed = FailedLogins(most=2, window_s=60, addresses=2, clock=lambda: now[0])
    for address in ("a", "a", "b", "c"):
        failed.failed(address)
    assert failed.retry_after("a") == 0  # forgotten: the oldest of three addresses, two remembered
    failed.failed("c")
    assert failed.retry_after("c") == 60
    now[0] = 75.0
    assert failed.retry_after("c") == 0
