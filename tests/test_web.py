"""The web view for real: real inference on a real clip, Debian's Chromium (driven by Playwright, no
browser download), 20 MJPEG viewers and a stalled one, /healthz following a real RTSP camera, the CLI.

Figures (FPS with 20 viewers, frames per viewer, waits) are printed; run `bash tests/run -n 0 -k web -s` to see them.
What viewers cost in FPS is `streamdet bench`'s measure (web view with 0, 1 and 10 viewers, interleaved).
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import LineReader, Viewer, decode, read_jsonl, wait_for, write_clip
from media import clip
from rtsp import RtspServer

from streamdet.config.sections import Config
from streamdet.pipeline import Pipeline
from streamdet.drawing import class_color

TOKEN = "token-for-the-web-tests"


def _config(sources: list[str], **web) -> Config:
    config = Config()
    config.sources = sources
    config.display.show = "no"
    config.logging.status_interval = 0
    config.web.listen = "127.0.0.1:0"
    for key, value in web.items():
        setattr(config.web, key, value)
    return config


@contextmanager
def running(pipeline: Pipeline, stop_after=None):
    """The run on a thread of its own (the test's thread drives the browser or the clients)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for result in pipeline.results():
                if stop_after is not None and stop_after(result):
                    pipeline.stop("enough frames")
        except BaseException as exc:  # raised on the test's thread below
            errors.append(exc)

    thread = threading.Thread(target=run, name="test-run")
    thread.start()
    try:
        yield thread
    finally:
        pipeline.stop("test done")
        thread.join(timeout=60)
        assert not thread.is_alive(), "the run did not end"
    if errors:
        raise errors[0]


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _color_mask(image: np.ndarray, bgr: tuple[int, int, int], tolerance: int = 60) -> np.ndarray:
    return np.abs(image.astype(np.int16) - np.array(bgr, np.int16)).sum(axis=2) < tolerance


@pytest.mark.services
def test_page_in_chromium_shows_the_live_picture_with_boxes_and_changing_figures(tmp_path, chromium, pedestrian_detector):
    # One real frame with a cyclist, held still and looped: the box stays where the test can look for it.
    frame = decode(clip("bikes"), 121)[120]
    still = write_clip([frame] * 25, tmp_path / "cyclist.mp4")
    config = _config([str(still)])
    config.source.loop = True
    config.overlay.line_width = 4  # a line JPEG keeps the colour of
    config.output.json = str(tmp_path / "cyclist.jsonl")
    with Pipeline(config, detector=pedestrian_detector) as pipeline, running(pipeline):
        page = chromium.new_page(viewport={"width": 1000, "height": 800})
        # The MJPEG picture, drawn on the server: what a browser without Media Source Extensions gets (the
        # live H.264 view with boxes drawn in the browser is tests/test_web_live.py's).
        page.add_init_script("delete window.MediaSource; delete window.ManagedMediaSource;")
        try:
            page.goto(pipeline.web_url)
            page.wait_for_function("() => { const i = document.querySelector('.tile img'); "
                                   "return i && i.naturalWidth > 0; }", timeout=30_000)
            size = page.evaluate("() => { const i = document.querySelector('.tile img'); "
                                 "return [i.naturalWidth, i.naturalHeight]; }")
            stats = page.locator(".tile .stats")
            page.wait_for_function("() => document.querySelector('.tile .stats').textContent.includes('frames')")
            first = stats.text_content()
            page.wait_for_function("(before) => document.querySelector('.tile .stats').textContent !== before",
                                   arg=first, timeout=10_000)
            second = stats.text_content()
            state = page.locator(".tile .state").text_content()
            shot = cv2.imdecode(np.frombuffer(page.locator(".tile img").screenshot(), np.uint8), cv2.IMREAD_COLOR)
        finally:
            page.close()
    assert size == [640, 272]
    assert state == "online" and "processed" in first and first != second, (first, second)
    box = read_jsonl(tmp_path / "cyclist.jsonl")[0]["detections"][0]["box"]
    scale = shot.shape[1] / 640
    x1, y1, x2, y2 = (round(v * scale) for v in box)
    colour = class_color(1)
    mask = _color_mask(shot, colour)
    pad = round(10 * scale)
    near_box = np.zeros_like(mask)
    near_box[max(0, y1 - 4 * pad):y2 + pad, max(0, x1 - pad):x2 + pad] = True
    near_box[y1 + pad:y2 - pad, x1 + pad:x2 - pad] = False  # the box's outline and the label, not its inside
    raw = _color_mask(cv2.resize(frame, shot.shape[1::-1]), colour)
    print(f"\nbox colour: {mask.sum()} pixels in the page's picture, {(mask & near_box).sum()} on the box; "
          f"{raw.sum()} in the raw frame")
    assert mask.sum() > 4 * (x2 - x1), "the person's box is not drawn in the page's picture"
    assert (mask & near_box).sum() / mask.sum() > 0.9, "the box colour is not where the person is"
    assert raw.sum() < mask.sum() / 20


@pytest.mark.services
def test_page_fits_a_phone_and_follows_a_source_named_from_an_odd_file_name(tmp_path, chromium, pedestrian_detector):
    odd = "cam #2 50%?"  # the name comes from the file's name: none of it is a character a user may type
    source = write_clip(decode(clip("carphone_pristine"), 25), tmp_path / f"{odd}.mp4")
    config = _config([str(source)])
    config.source.loop = True
    with Pipeline(config, detector=pedestrian_detector) as pipeline, running(pipeline):
        url = pipeline.web_url
        sources = json.loads(_get(url + "api/sources")[1])
        assert sources[0]["name"] == odd
        wait_for(lambda: _get(url + sources[0]["snapshot"].lstrip("/"))[0] == 200, 30, "the snapshot by its link")
        page = chromium.new_page(viewport={"width": 360, "height": 740})
        try:
            page.goto(url)
            page.wait_for_function("() => { const v = document.querySelector('.tile video'); "
                                   "return v && v.readyState >= 2; }", timeout=30_000)
            page.wait_for_function("() => document.querySelector('.tile .stats').textContent.includes('frames')")
            widths = page.evaluate("() => [document.documentElement.scrollWidth, "
                                   "document.querySelector('.tile').getBoundingClientRect().right]")
        finally:
            page.close()
    assert widths[0] <= 360 and widths[1] <= 360, f"the page is {widths[0]} px wide in a 360 px window: {widths}"


def _run_fps(detector, frames: int, setup) -> tuple[float, dict]:
    """FPS of a run of the looping bikes clip with the web view on; `setup(url)` connects viewers first."""
    config = _config([str(clip("bikes"))], fps=10.0, max_clients=21, client_timeout=2.0)
    config.source.loop = True
    config.logging.quiet = True
    seen: dict = {"most": 0, "dropped": 0, "stats": None}
    count = {"n": 0}
    with Pipeline(config, detector=detector) as pipeline:
        viewers = setup(pipeline.web_url)
        done = threading.Event()

        def monitor():
            while not done.is_set():
                code, body = _get(pipeline.web_url + "api/stats")
                if code == 200:
                    stats = json.loads(body)
                    seen["stats"] = stats
                    seen["most"] = max(seen["most"], stats["web"]["clients"])
                    seen["dropped"] = stats["web"]["dropped_stalled"]
                done.wait(0.2)  # a dashboard's refresh rate

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()

        def enough(result) -> bool:
            count["n"] += 1
            # The run also lasts until the stalled viewer is dropped (web.client_timeout is 2 s).
            return count["n"] >= frames and seen["dropped"] >= 1

        with running(pipeline, enough) as run:
            run.join()
        summary = pipeline.summary()
        done.set()
        watcher.join()
    return summary.fps, {"viewers": viewers, **seen, "wall_s": summary.wall_s}


def test_the_web_picture_is_the_recording_picture_with_lines_and_plate(pedestrian_detector):
    """The web view as the only picture output draws through the render stage's drawing: a counting line with
    its counts, and the status plate, on a snapshot nobody was watching (both were missing)."""
    from streamdet.config.events import LineConfig
    from streamdet.drawing import _SCENE

    config = _config([str(clip("bikes"))])
    config.source.loop = True
    config.events.lines = [LineConfig("gate", [[0.5, 0.0], [0.5, 1.0]])]
    detector = pedestrian_detector
    with Pipeline(config, detector=detector) as pipeline:
        seen = threading.Event()
        with running(pipeline, stop_after=lambda result: seen.set() or False):
            seen.wait(60)
            code, body = _get(pipeline.web_url + f"snapshot/{pipeline.lanes[0].source.name}.jpg")
    assert code == 200
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    amber = _color_mask(image, _SCENE)
    column = amber[:, width // 2 - 3: width // 2 + 4].any(axis=1)
    assert column.mean() > 0.8, "the line is not drawn down the middle of the web picture"
    beside = amber.sum() - amber[:, width // 2 - 4: width // 2 + 5].sum()
    assert beside > 200, "the line's count label is missing"
    # The plate: a filled black rectangle in a corner (street footage has no row of 30 pure-black pixels).
    black = (image.max(axis=2) < 24).astype(np.int8)
    band = np.concatenate([black[:height // 6], black[-height // 6:]])
    runs = [np.diff(np.flatnonzero(np.diff(np.r_[0, row, 0]))).max(initial=0) for row in band]
    assert max(runs) >= 30, "no status plate on the web picture"


def test_twenty_viewers_and_a_stalled_one_are_served_and_wait_for_nobody(pedestrian_detector):
    detector = pedestrian_detector
    frames = 300

    def connect(url: str) -> list[Viewer]:
        stalled = Viewer(url, "/stream/bikes.mjpg", stalled=True)
        viewers = [Viewer(url, "/stream/bikes.mjpg") for _ in range(20)]
        wait_for(lambda: all(v.status == 200 for v in viewers) or None, 20, "20 viewers accepted", poll=0.1)
        refused = [Viewer(url, "/stream/bikes.mjpg") for _ in range(2)]
        wait_for(lambda: all(v.status for v in refused), 10, "the two over the limit answered")
        assert [v.status for v in refused] == [503, 503]
        return viewers + [stalled]

    watched, seen = _run_fps(detector, frames, connect)
    viewers = seen["viewers"][:20]
    counts = [len(v.frames) for v in viewers]
    gaps = [float(np.diff(v.frames).max()) for v in viewers if len(v.frames) > 1]
    print(f"\nweb view, {frames} frames: {watched:.1f} FPS with 20 viewers and a stalled one; frames per viewer {min(counts)}..{max(counts)} in {seen['wall_s']:.1f} s, "
          f"longest wait {max(gaps):.2f} s; JPEG {seen['stats']['web']['jpeg_ms_mean']:.2f} ms per frame; "
          f"most viewers at once {seen['most']}")
    # What the viewers cost is a speed figure, measured by `streamdet bench` (web view with 0, 1 and 10 viewers
    # against headless, interleaved; test_bench.py checks its fields); on this shared machine a timed bound flakes.
    assert seen["dropped"] == 1 and seen["most"] <= 21
    # 10 pictures a second to everyone who reads, whatever the stalled one does.
    assert min(counts) >= 10 * seen["wall_s"] * 0.5, counts
    assert max(gaps) < 1.0, gaps
    for v in seen["viewers"]:
        v.close()


@pytest.mark.services
def test_healthz_follows_a_real_rtsp_camera_and_credentials_stay_out_of_every_page(pedestrian_detector):
    server = RtspServer(clip("bikes"), repeat=50, user="admin", password="Pa55-w0rd-x").start()
    config = _config([server.url("admin", "Pa55-w0rd-x")])
    config.source.read_timeout = 1.0
    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline, running(pipeline):
            url = pipeline.web_url
            wait_for(lambda: _get(url + "healthz") == (200, b"ok\n"), 30, "healthz 200 while the camera streams")
            pages = b"".join(_get(url + path)[1] for path in ("", "api/sources", "api/stats", "healthz"))
            viewer = Viewer(url, f"/stream/{json.loads(_get(url + 'api/sources')[1])[0]['name']}.mjpg")
            wait_for(lambda: len(viewer.frames) >= 2, 20, "frames of the camera's stream")
            viewer.close()
            assert b"Pa55-w0rd-x" not in pages and b"admin" not in pages
            assert b"rtsp://***:***@127.0.0.1" in pages
            server.kill()
            code, body = wait_for(lambda: (r := _get(url + "healthz"))[0] == 503 and r, 15, "healthz 503")
            name = json.loads(_get(url + "api/sources")[1])[0]["name"]
            assert body == f"offline: {name}\n".encode()
            assert json.loads(_get(url + "api/stats")[1])["sources"][0]["state"] == "offline"
            server = RtspServer(clip("bikes"), port=server.port, repeat=50, user="admin", password="Pa55-w0rd-x").start()
            wait_for(lambda: _get(url + "healthz")[0] == 200, 20, "healthz 200 after the camera came back")
            assert json.loads(_get(url + "api/stats")[1])["sources"][0]["reconnects"] == 1
    finally:
        server.close()


def test_cli_other_address_needs_a_token_and_requests_without_it_get_401(tmp_path, model_cache, pedestrian_xml):
    env = cli_env(model_cache)
    env.pop("STREAMDET_WEB_TOKEN", None)
    source = str(clip("carphone_pristine"))
    proc = streamdet("run", "-m", str(pedestrian_xml), "-s", source, "--serve", "0.0.0.0:0", env=env, timeout=60)
    assert_one_line_error(proc, "web: listen '0.0.0.0:0' is reachable from other machines: set web.token")

    with socket.socket() as taken:  # a busy port: refused before the model loads or a source opens (none listens)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = streamdet("run", "-m", str(pedestrian_xml), "-s", "rtsp://127.0.0.1:9/x",
                         "--serve", str(port), env=env, timeout=60)
    assert_one_line_error(proc, f"web.listen {port}: cannot listen there: the port is in use")

    env["STREAMDET_WEB_TOKEN"] = TOKEN
    child = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "-m", str(pedestrian_xml), "-s", source,
                              "--loop", "--serve", "0.0.0.0:0"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = LineReader(child.stderr)
        at = lines.wait(lambda line: "web view on http://0.0.0.0:" in line, 60, "the web view's address")
        assert lines.lines[at].endswith("(token required)") and TOKEN not in lines.lines[at]
        port = int(lines.lines[at].split("http://0.0.0.0:")[1].split("/")[0])
        base = f"http://127.0.0.1:{port}/"
        assert _get(base + "api/stats")[0] == 401
        assert _get(base + "healthz")[0] == 401
        assert _get(base + "api/stats", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert _get(base + f"snapshot/carphone_pristine.jpg?token={TOKEN}")[0] in (200, 503)
        wait_for(lambda: _get(base + f"snapshot/carphone_pristine.jpg?token={TOKEN}")[0] == 200, 30, "a snapshot")
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM
    assert TOKEN not in lines.text()


def test_cli_short_token_in_the_environment_stops_only_a_run_that_serves(tmp_path, model_cache, pedestrian_xml):
    env = cli_env(model_cache, STREAMDET_WEB_TOKEN="short")
    args = ["run", "-m", str(pedestrian_xml), "-s", str(clip("carphone_pristine"))]
    proc = streamdet(*args, "-o", str(tmp_path / "x.mp4"), env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert decode(tmp_path / "x.mp4", 5), "nothing was recorded"
    proc = streamdet(*args, "-o", str(tmp_path / "y.mp4"), "--serve", "0", env=env, cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "web: token (web.token or STREAMDET_WEB_TOKEN) must be at least 8 characters")
    assert not (tmp_path / "y.mp4").exists()


def _half_open(port: int, count: int) -> list[socket.socket]:
    """`count` connections that start a request and never finish its headers (no token needed for that)."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < count + 200:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)  # a connection the server has not accepted yet must not hold the test up
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    for sock in socks:
        try:
            sock.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        except OSError:
            pass  # not accepted (yet) or refused: it still holds a place in the queue, or nothing
    return socks


def test_two_thousand_half_open_connections_leave_the_run_and_its_recording_going(tmp_path, model_cache, pedestrian_xml):
    (tmp_path / "segments.yaml").write_text("recording:\n  segment_seconds: 1\n")  # six new files soon
    (tmp_path / "segs").mkdir()
    env = cli_env(model_cache)
    env.pop("STREAMDET_WEB_TOKEN", None)
    limit = 1024
    child = subprocess.Popen(
        [sys.executable, "-m", "streamdet", "run", "--config", str(tmp_path / "segments.yaml"), "-m", str(pedestrian_xml),
         "-s", str(clip("bikes")), "--loop", "--serve", "127.0.0.1:0", "-o", str(tmp_path / "segs" / "bikes_{start}.mp4")],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
    socks: list[socket.socket] = []

    def segments() -> list[Path]:
        return sorted(p for p in (tmp_path / "segs").iterdir() if p.stat().st_size > 0)

    try:
        lines = LineReader(child.stderr)
        at = lines.wait(lambda line: "web view on http://127.0.0.1:" in line, 60, "the web view's address")
        port = int(lines.lines[at].split("http://127.0.0.1:")[1].split("/")[0])
        wait_for(segments, 60, "the first segment")
        try:
            socks = _half_open(port, 2000)
            before = segments()
            # New segments need new descriptors: the recording goes on while the connections are held open.
            wait_for(lambda: len(segments()) >= len(before) + 6 or child.poll() is not None, 60,
                     "six more segments while 2,000 connections hang")
            assert child.poll() is None, "the run ended under 2,000 half-open connections"
        finally:
            for sock in socks:
                sock.close()
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz") == (200, b"ok\n"), 30,
                 "/healthz answered once the connections went")
        assert child.poll() is None
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    text = lines.text()
    print("\n" + "\n".join(line for line in lines.lines if "web" in line))
    assert child.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "Traceback" not in text and "Too many open files" not in text, text[-3000:]
