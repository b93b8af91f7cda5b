"""The live H.264 view for real: a real RTSP camera (gst-rtsp-server sending a real clip's own H.264), the real
model, Debian's Chromium playing /live/{name}.mp4 through Media Source Extensions with the detections channel's
boxes drawn over it; a file source through the encoded stream; 20 viewers and a stalled one; the token.

Figures (frame rate played, delay from a frame's arrival at streamdet to its display, boxes on their own frame)
are printed; run `.venv/bin/python -m pytest tests/test_web_live.py -n 0 -s` to see them. The CPU and bytes
figures are tests/bench_live.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import urllib.error
import urllib.request

import aiohttp
import av
import cv2
import numpy as np
import pytest

from helpers import decode, run_async, wait_for
from media import clip
from rtsp import RtspServer
from test_copy_recording import _with_sound
from test_web import _config, running

from streamdet.outputs.fmp4 import DELTA_FLAGS, KEY_FLAGS, Sample, fragment, init_segment
from streamdet.pipeline import Pipeline
from streamdet.sources.demux import stream_format
from streamdet.web.live_feed import LAG_S, LiveFeed

TOKEN = "token-for-the-live-tests"
SMALL = (160, 68)  # the size frames are compared at, to find which of the clip's frames the page shows

# Inside a frame callback of the tile's video: the picture shown (scaled down) and the detections the player
# draws on it (its own choice for that frame: live.js's lineAt at the frame's mediaTime).
SAMPLE = """([w, h]) => new Promise((resolve) => {
  const player = livePlayers.values().next().value, video = player.video;
  video.requestVideoFrameCallback((now, meta) => {
    const canvas = document.createElement('canvas');
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(video, 0, 0, w, h);
    const line = player.lineAt(meta.mediaTime);
    resolve({pixels: Array.from(ctx.getImageData(0, 0, w, h).data), mediaTime: meta.mediaTime,
             t: line ? line.t : null, detections: line ? line.detections : [], size: line ? line.size : null});
  });
})"""


@pytest.fixture(scope="module")
def bikes_frames() -> list[np.ndarray]:
    return decode(clip("bikes"))


def _small(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(image, SMALL, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY).astype(np.int16)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def _playing(page, seconds: float = 3.0) -> dict:
    """How the tile's video advanced over `seconds` of the page's own clock: its time and frames presented."""
    return page.evaluate("""(seconds) => new Promise((resolve) => {
      const video = document.querySelector('.tile video');
      const q0 = video.getVideoPlaybackQuality(), t0 = video.currentTime, w0 = performance.now();
      setTimeout(() => {
        const q1 = video.getVideoPlaybackQuality();
        resolve({media: video.currentTime - t0, wall: (performance.now() - w0) / 1000,
                 frames: q1.totalVideoFrames - q0.totalVideoFrames, dropped: q1.droppedVideoFrames - q0.droppedVideoFrames});
      }, seconds * 1000);
    })""", seconds)


@pytest.mark.services
def test_a_camera_plays_live_at_its_rate_with_the_persons_box_on_its_own_frame(chromium, pedestrian_detector,
                                                                               bikes_frames):
    server = RtspServer(clip("bikes"), repeat=20).start()
    config = _config([server.url()])
    small = [_small(f) for f in bikes_frames]
    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline, running(pipeline):
            page = chromium.new_page(viewport={"width": 1400, "height": 900})
            try:
                page.goto(pipeline.web_url)
                page.wait_for_function("() => { const v = document.querySelector('.tile video'); "
                                       "return v && v.readyState >= 2 && v.currentTime > 0; }", timeout=30_000)
                mode = page.evaluate("() => document.querySelector('.player').dataset.mode")
                width = page.evaluate("() => document.querySelector('.tile video').getBoundingClientRect().width")
                played = _playing(page)
                samples = []
                for _ in range(60):
                    sample = page.evaluate(SAMPLE, list(SMALL))
                    if sample["detections"]:
                        samples.append(sample)
                    if len(samples) >= 12:
                        break
                figures = page.evaluate("() => { const p = livePlayers.values().next().value; "
                                        "return {delays: p.delays, frames: p.frames, presented: p.presented, "
                                        "lines: p.lineTimes}; }")
                # A hidden tab fetches nothing: the page closes its streams and the server sees no viewer.
                page.evaluate("() => { Object.defineProperty(document, 'hidden', {value: true, configurable: true}); "
                              "document.dispatchEvent(new Event('visibilitychange')); }")
                wait_for(lambda: pipeline_stats(pipeline)["live_viewers"] == 0, 10, "no live viewer once hidden")
            finally:
                page.close()
    finally:
        server.close()
    assert mode == "mse"
    assert width > 1300, f"one camera fills the page's width: its tile is {width} px on a 1400 px page"
    rate = played["frames"] / played["wall"]
    print(f"\nlive camera in Chromium: {rate:.1f} frames/s presented, media time {played['media'] / played['wall']:.2f}x "
          f"wall time, {played['dropped']} dropped")
    assert 22 <= rate <= 27 and 0.9 < played["media"] / played["wall"] < 1.15, played
    # The boxes drawn on a frame are the model's boxes on that very frame of the clip.
    checked = 0
    for sample in samples:
        pixels = np.array(sample["pixels"], np.uint8).reshape(SMALL[1], SMALL[0], 4)[:, :, :3][:, :, ::-1]
        shown = _small(np.ascontiguousarray(pixels))
        k = int(np.argmin([np.abs(shown - f).mean() for f in small]))
        if abs(sample["t"] - sample["mediaTime"]) > 0.02:
            continue  # a frame the run did not process: it shows the newest boxes before it (held up to 1 s)
        direct = pedestrian_detector.detect(bikes_frames[k])
        drawn = np.array([d["box"] for d in sample["detections"]])
        for box in direct[direct.scores > 0.6].xyxy:
            assert np.abs(drawn - box).max(axis=1).min() <= 3.0, (sample["mediaTime"], k, box, drawn)
            checked += 1
    assert checked >= 3, f"only {checked} boxes compared over {len(samples)} samples"
    delays, frames = figures["delays"], figures["frames"]
    own = frames["own"] / max(1, frames["shown"])
    # Of the frames shown that the run processed (a line came for them, maybe after they were shown), those
    # drawn with their own line; the others the run skipped show the newest boxes before them.
    times = np.array(figures["lines"])
    processed = [(m, t) for m, t in figures["presented"] if len(times) and np.abs(times - m).min() <= 0.02]
    mine = sum(1 for m, t in processed if t is not None and abs(t - m) <= 0.02) / max(1, len(processed))
    print(f"delay from a frame's arrival at streamdet to its display: p50 {_percentile(delays, 50):.0f} ms, "
          f"p95 {_percentile(delays, 95):.0f} ms over {len(delays)} frames; boxes on their own frame on "
          f"{100 * mine:.1f}% of {len(processed)} processed frames shown ({100 * own:.1f}% of all "
          f"{frames['shown']} frames shown with boxes: the run processed only some; measured under load)")
    assert len(delays) > 20 and _percentile(delays, 95) < 1000 and mine > 0.9


def pipeline_stats(pipeline) -> dict:
    with urllib.request.urlopen(pipeline.web_url + "api/stats", timeout=10) as response:
        return json.loads(response.read())["web"]


@contextlib.contextmanager
def _looped_bikes(detector):
    """A run of the bikes clip, looped, with its web view, for the block."""
    config = _config([str(clip("bikes"))])
    config.source.loop = True
    with Pipeline(config, detector=detector) as pipeline, running(pipeline):
        yield pipeline


@contextlib.contextmanager
def _page_on(chromium, url: str, init_script: str | None = None):
    """A Chromium page open on `url` for the block (`init_script` run before the page's own)."""
    page = chromium.new_page()
    if init_script is not None:
        page.add_init_script(init_script)
    try:
        page.goto(url)
        yield page
    finally:
        page.close()


@pytest.mark.services
def test_without_mse_the_page_falls_back_to_mjpeg(chromium, pedestrian_detector):
    with (_looped_bikes(pedestrian_detector) as pipeline,
          _page_on(chromium, pipeline.web_url, "delete window.MediaSource; delete window.ManagedMediaSource;") as page):
        page.wait_for_function("() => { const i = document.querySelector('.tile img'); "
                               "return i && i.naturalWidth > 0; }", timeout=30_000)
        mode = page.evaluate("() => document.querySelector('.player').dataset.mode")
        stats = pipeline_stats(pipeline)
    assert mode == "mjpeg" and stats["clients"] >= 1 and stats["live_viewers"] == 0


@pytest.mark.services
def test_a_file_source_plays_through_the_encoded_stream(chromium, pedestrian_detector):
    with _looped_bikes(pedestrian_detector) as pipeline:
        with _page_on(chromium, pipeline.web_url) as page:
            page.wait_for_function("() => { const v = document.querySelector('.tile video'); "
                                   "return v && v.readyState >= 2 && v.currentTime > 0; }", timeout=30_000)
            page.wait_for_function("() => document.querySelector('.player canvas').dataset.boxes !== '0'",
                                   timeout=20_000)
            played = _playing(page, 2.0)
            # The toggle hides the boxes; a click on the picture makes it the whole screen, boxes scaled along.
            page.click("#boxes")
            hidden = page.evaluate("() => getComputedStyle(document.querySelector('.player canvas')).display")
            page.click("#boxes")
            page.click(".player")
            page.wait_for_function("() => document.fullscreenElement === document.querySelector('.player')")
            page.wait_for_function("() => document.querySelector('.player canvas').getBoundingClientRect().width "
                                   "=== window.innerWidth", timeout=10_000)
        # The same stream as chunked HTTP, for players and tools: H.264 in fragmented MP4 that FFmpeg decodes.
        url = pipeline.web_url + "live/bikes.mp4"
        with urllib.request.urlopen(url, timeout=10) as response:
            kind = response.headers["Content-Type"]
            data = response.read(400_000)
        stats = pipeline_stats(pipeline)
    with av.open(io.BytesIO(_whole_boxes(data))) as container:
        frames = [f for f in container.decode(video=0)]
    print(f"\nfile source, encoded once: {played['frames'] / played['wall']:.1f} frames/s presented; "
          f"{stats['live_encoded_frames']} frames encoded, {stats['live_encode_ms_mean']:.1f} ms each")
    assert hidden == "none"
    assert kind.startswith('video/mp4; codecs="avc1.')
    assert len(frames) >= 10 and frames[0].key_frame and (frames[0].width, frames[0].height) == (640, 272)
    assert played["frames"] >= 10 and stats["live_encoded_frames"] > 0


def _whole_boxes(data: bytes) -> bytes:
    """The stream's boxes up to the last one read whole (a read of so many bytes ends in the middle of one)."""
    at = 0
    while at + 8 <= len(data) and at + int.from_bytes(data[at:at + 4], "big") <= len(data):
        at += int.from_bytes(data[at:at + 4], "big")
    return data[:at]


async def _viewer(url: str, pieces: int, got: list) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            hello = json.loads((await ws.receive(timeout=30)).data)
            init = (await ws.receive(timeout=30)).data
            first = (await ws.receive(timeout=30)).data
            for _ in range(pieces - 1):
                await ws.receive(timeout=30)
            got.append((hello, init, first))


def _stalled(host: str, port: int, path: str) -> socket.socket:
    """A WebSocket client that shakes hands and then reads nothing, with a tiny receive window."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    return sock


@pytest.mark.services
def test_a_cameras_aac_sound_goes_along_with_its_picture(tmp_path, pedestrian_detector):
    server = RtspServer(_with_sound(clip("bikes"), tmp_path / "sound.mp4"), repeat=5, audio=True).start()
    try:
        with Pipeline(_config([server.url()]), detector=pedestrian_detector) as pipeline, running(pipeline):
            url = pipeline.web_url.replace("http://", "ws://") + f"live/{pipeline.lanes[0].source.name}.mp4"

            async def watch() -> tuple[dict, bytes]:
                async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                    hello = json.loads((await ws.receive(timeout=30)).data)
                    data = b""
                    while len(data) < 300_000:
                        data += (await ws.receive(timeout=30)).data
                    return hello, data

            hello, data = run_async(watch)
    finally:
        server.close()
    with av.open(io.BytesIO(_whole_boxes(data))) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
        sound = [f for f in container.decode(audio=0)]
    with av.open(io.BytesIO(_whole_boxes(data))) as container:
        pictures = [f for f in container.decode(video=0)]
    assert hello["mime"] == 'video/mp4; codecs="avc1.640015,mp4a.40.2"', hello
    seconds = sum(f.samples for f in sound) / 48000
    assert len(pictures) > 50 and abs(seconds - len(pictures) / 25) < 1.0, (seconds, len(pictures))
    level = np.abs(np.concatenate([f.to_ndarray().ravel() for f in sound[10:20]])).max()
    assert 0.1 < level < 0.3  # the tone, not silence


@pytest.mark.services
def test_twenty_live_viewers_and_a_stalled_one(pedestrian_detector):
    server = RtspServer(clip("bikes"), repeat=20).start()
    config = _config([server.url()], max_clients=21, client_timeout=2.0)
    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline, running(pipeline):
            name = pipeline.lanes[0].source.name
            host, port = pipeline.web_url.split("//")[1].rstrip("/").split(":")
            stalled = _stalled(host, int(port), f"/live/{name}.mp4")
            url = f"ws://{host}:{port}/live/{name}.mp4"
            got: list = []

            async def twenty() -> None:
                await asyncio.gather(*(_viewer(url, 50, got) for _ in range(20)))

            run_async(twenty)
            wait_for(lambda: pipeline_stats(pipeline)["live_dropped_stalled"] >= 1, 30, "the stalled viewer dropped")
            stats = pipeline_stats(pipeline)
            stalled.close()
    finally:
        server.close()
    assert len(got) == 20
    for hello, init, first in got:
        assert hello["mime"].startswith('video/mp4; codecs="avc1.') and init[4:8] == b"ftyp"
        assert first[4:8] == b"moof"
    print(f"\n20 live viewers served {stats['live_bytes'] / 1e6:.1f} MB; stalled dropped: {stats['live_dropped_stalled']}")
    assert stats["live_dropped_stalled"] >= 1


@pytest.mark.services
def test_a_wrong_token_is_refused_on_the_stream_and_the_detections_channel(pedestrian_detector):
    config = _config([str(clip("bikes"))], token=TOKEN)
    config.source.loop = True
    with Pipeline(config, detector=pedestrian_detector) as pipeline, running(pipeline):
        base = pipeline.web_url.replace("http://", "ws://")

        async def status(path: str) -> int:
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.ws_connect(base + path) as ws:
                        await ws.close()
                        return 101
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

        codes = {path: run_async(lambda: status(path)) for path in
                 ("live/bikes.mp4", "live/bikes.detections", "live/bikes.mp4?token=wrong-token-123",
                  "live/bikes.detections?token=wrong-token-123", f"live/bikes.mp4?token={TOKEN}",
                  f"live/bikes.detections?token={TOKEN}")}
        try:
            urllib.request.urlopen(pipeline.web_url + "live/bikes.mp4?token=wrong-token-123", timeout=10)
            plain = 200
        except urllib.error.HTTPError as exc:
            plain = exc.code
    assert list(codes.values()) == [401, 401, 401, 401, 101, 101], codes
    assert plain == 401


# ---------------------------------------------------------------- the parts, without a run


@pytest.mark.unit
def test_fragments_written_here_decode_to_every_frame_of_the_clip():
    with av.open(str(clip("bikes"))) as container:
        video = container.streams.video[0]
        init = init_segment(stream_format(video, None).header, sound=True)
        packets = [p for p in container.demux(video) if p.size]
    assert init.mime == 'video/mp4; codecs="avc1.640015"' and init.audio is None
    scale, tb = init.video.timescale, video.time_base
    first = packets[0].dts
    out = [init.data]
    for i, (p, after) in enumerate(zip(packets, packets[1:])):
        start = round((p.dts - first) * tb * scale)
        sample = Sample(round((after.dts - p.dts) * tb * scale), p.size, KEY_FLAGS if p.is_keyframe else DELTA_FLAGS,
                        round((p.pts - p.dts) * tb * scale))
        out.append(fragment(i + 1, init.video.id, start, [sample], bytes(p)))
    with av.open(io.BytesIO(b"".join(out))) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    reference = decode(clip("bikes"))
    assert len(frames) == len(packets) - 1
    # (The last packet is held for its duration and never written: the frame shown before it in display order,
    # a B-frame referring to it, is the only one that may differ.)
    assert max(np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames[:-1], reference)) < 0.5


@pytest.mark.unit
def test_a_viewer_behind_skips_to_the_newest_keyframe_and_nothing_is_kept_unwatched():
    feed = LiveFeed()
    assert not feed.watched
    with av.open(str(clip("bikes"))) as container:
        init = init_segment(stream_format(container.streams.video[0], None).header, sound=False)
    feed.watch(+1)
    feed.begin(init)
    for i in range(200):  # a keyframe every 25 fragments, 40 ms apart
        feed.add(b"x" * 10, i % 25 == 0, i * 0.04)
    took = feed.take(None, None)
    assert took.init is init and took.pieces[0].key and took.pieces[0].seq == 176 and took.cursor == 200
    # A viewer more than LAG_S behind the newest fragment jumps to the newest keyframe.
    feed.add(b"x" * 10, False, 200 * 0.04)
    assert not feed.take(took.cursor, took.session).skipped
    behind = 200 - round(LAG_S / 0.04) - 5
    again = feed.take(behind, took.session)
    assert again.skipped and again.pieces[0].key and again.pieces[0].seq == 201 - 25 and feed.skipped == 1
    feed.begin(init)
    assert feed.take(again.cursor, took.session).ended
    # Watched again after a pause: what the ring held is gone, the producers begin a new stream.
    starts = feed.starts
    feed.watch(-1)
    feed._linger_until = 0.0  # the 5 s a stream goes on after its last viewer, passed
    feed.watch(+1)
    assert feed.starts == starts + 1 and feed.init is None and feed.take(None, None).pieces == []
