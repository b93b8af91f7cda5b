"""What live viewers cost (#34): `python tests/bench_live.py [SECONDS]` (default 20 s per case).

A real RTSP camera (tests/rtsp_server.py sending a 720p25 H.264 clip made here from the bikes clip, a keyframe a
second) recorded by copy, and then a file source, each run by `streamdet run --serve` as a process of its own
with the real model. For each case (0, 1 and 10 live H.264 viewers over /live/{name}.mp4's WebSocket; 1 and 10
MJPEG viewers) the run's CPU (its process's user + system time over the window, in % of one core) and the bytes
per second each viewer received are printed, beside the camera's own bitrate. The viewers are coroutines of this
process, so their CPU is not the run's; the run's CPU per processed frame is printed too (on a shared machine
the frame rate, and with it the CPU, moves with the others' load). The cases run twice, interleaved. The delay and the boxes' frames are tests/test_web_live.py's (Chromium).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import cv2

sys.path.insert(0, str(Path(__file__).parent))
from helpers import decode, free_port, wait_for  # noqa: E402
from media import clip, pedestrian_pb  # noqa: E402
from rtsp import RtspServer  # noqa: E402

CASES = [("none", 0), ("live", 1), ("live", 10), ("mjpeg", 1), ("mjpeg", 10)]
ROUNDS = 2


def camera_clip(path: Path) -> tuple[Path, float]:
    """The bikes clip at 1280x720, 25 fps, a keyframe a second, about 3 Mbit/s; and its bitrate (bit/s)."""
    frames = decode(clip("bikes"))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.codec_context.options = {"preset": "veryfast", "g": "25", "bf": "0", "b": "3M", "maxrate": "3M",
                                        "bufsize": "3M"}
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(cv2.resize(image, (1280, 720)), format="bgr24")))
        out.mux(stream.encode(None))
    return path, path.stat().st_size * 8 / (len(frames) / 25)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _live(url: str, counts: list, i: int, until: float) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while time.monotonic() < until:
            msg = await ws.receive(timeout=10)
            counts[i] += len(msg.data) if isinstance(msg.data, (bytes, str)) else 0


async def _mjpeg(url: str, counts: list, i: int, until: float) -> None:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        while time.monotonic() < until:
            counts[i] += len(await response.content.read(65536))


async def _frames(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(base + "api/stats") as response:
        return (await response.json())["frames"]


async def watch(kind: str, n: int, base: str, name: str, seconds: float, pid: int) -> tuple[float, float, float]:
    """(the run's CPU in % of a core, its CPU in ms per processed frame, bytes/s per viewer) over `seconds` with
    `n` viewers of `kind`."""
    counts = [0] * n
    warm = 3.0
    until = time.monotonic() + warm + seconds
    if kind == "live":
        tasks = [_live(f"{base.replace('http', 'ws', 1)}live/{name}.mp4", counts, i, until) for i in range(n)]
    elif kind == "mjpeg":
        tasks = [_mjpeg(f"{base}stream/{name}.mjpg", counts, i, until) for i in range(n)]
    else:
        tasks = []
    running = [asyncio.ensure_future(t) for t in tasks]
    await asyncio.sleep(warm)  # the viewers connected and at the live edge
    c0, b0, f0, t0 = cpu_s(pid), sum(counts), await _frames(base), time.monotonic()
    await asyncio.sleep(seconds)
    c1, b1, f1, t1 = cpu_s(pid), sum(counts), await _frames(base), time.monotonic()
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    return 100 * (c1 - c0) / (t1 - t0), 1000 * (c1 - c0) / max(1, f1 - f0), (b1 - b0) / (t1 - t0) / max(1, n)


def _online(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def run_case_set(source: str, name: str, config: str, seconds: float, folder: Path) -> list[tuple]:
    settings = folder / "settings.yaml"
    settings.write_text(config)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "--config", str(settings), "--source", source,
                             "--model", str(pedestrian_pb()), "--serve", str(port)],
                            stdout=subprocess.DEVNULL, stderr=(folder / "run.log").open("w"), stdin=subprocess.DEVNULL,
                            cwd=folder)
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: _online(base) or proc.poll() is not None, 120, "the run online", poll=0.5)
        if proc.poll() is not None:
            sys.exit(f"the run ended: {(folder / 'run.log').read_text()[-2000:]}")
        # The cases twice, interleaved, so that a change in the machine's load falls on all of them.
        rounds = [[(kind, n, *asyncio.run(watch(kind, n, base, name, seconds, proc.pid))) for kind, n in CASES]
                  for _ in range(ROUNDS)]
        return [(kind, n, *(sum(r[i][k] for r in rounds) / ROUNDS for k in (2, 3, 4)))
                for i, (kind, n) in enumerate(CASES)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    os.environ.setdefault("STREAMDET_CACHE_DIR", str(Path(tempfile.gettempdir()) / "streamdet-bench-models"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path, bitrate = camera_clip(folder / "camera720.mp4")
        (folder / "rec").mkdir()
        server = RtspServer(path, repeat=1000).start()
        try:
            camera = run_case_set(server.url(), f"127.0.0.1_{server.port}_live",
                                  f"recording: {{mode: copy}}\noutput: {{video: '{folder}/rec/cam_{{start}}.mp4'}}\n",
                                  seconds, folder)
        finally:
            server.close()
        print(f"camera: 1280x720 25 fps H.264, {bitrate / 8000:.0f} kB/s; {seconds:g} s per case; machine: "
              f"{os.cpu_count()} cores (measured under load when others share it)")
        show("RTSP camera recorded by copy", camera, bitrate)
        files = run_case_set(str(path), "camera720", "source: {loop: true}\n", seconds, folder)
        show("file source, as fast as the run processes it (encoded once while watched)", files, bitrate)


def show(title: str, rows: list[tuple], bitrate: float) -> None:
    print(f"\n{title}\n  viewers        run CPU % of a core   CPU ms/frame   kB/s per viewer   x camera", flush=True)
    zero, zero_frame = rows[0][2], rows[0][3]
    for kind, n, cpu, per_frame, per in rows:
        print(f"  {n:2d} {kind:10s} {cpu:8.1f} ({cpu / zero:4.2f}x)   {per_frame:6.1f} ({per_frame / zero_frame:4.2f}x)"
              f"  {per / 1000:10.0f}   {per * 8 / bitrate if n else 0:10.2f}", flush=True)


if __name__ == "__main__":
    main()
