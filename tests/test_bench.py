"""The bench runs end to end and reports well-formed figures (speed itself is not asserted here)."""

from __future__ import annotations

import json
import math


import pytest

from clirun import cli_env, streamdet
from media import clip, pedestrian_pb


def test_bench_prints_table_and_json(tmp_path, model_cache):
    out = tmp_path / "bench.json"
    proc = streamdet("bench", "--model", str(pedestrian_pb()), "--clip", str(clip("bikes")),
                     "--frames", "250", "--rounds", "1", "--json", str(out), env=cli_env(model_cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "WARN" not in proc.stderr, proc.stderr  # OpenCV's note on OPENCV_FFMPEG_IS_THREAD_SAFE, set on purpose
    report = json.loads(out.read_text())
    web = {"pipeline + web, no viewer", "pipeline + web, 1 viewer", "pipeline + web, 10 viewers"}
    pipelines = {"pipeline headless", "pipeline + mp4", "pipeline + jsonl", "pipeline headless, no decode", *web}
    expected = {"raw THROUGHPUT", "raw LATENCY", "live newest-frame", *pipelines}
    assert set(report["fps"]) == expected
    assert set(report["ratio_to_raw"]) == pipelines
    for value in [*report["fps"].values(), *report["ratio_to_raw"].values(), report["single_request_latency_ms"],
                  report["live_age_p50_ms"], report["live_age_p95_ms"]]:
        assert math.isfinite(value) and value > 0
    assert report["live_age_p95_ms"] >= report["live_age_p50_ms"]
    for name, stages in report["cpu_ms_per_frame"].items():
        assert set(stages) == {"decode", "write", "inference+other"} | ({"draw"} if "mp4" in name else set())
        assert stages["decode"] > 0
    assert report["cpu_ms_per_frame"]["pipeline + mp4"]["write"] > report["cpu_ms_per_frame"]["pipeline headless"]["write"]
    assert all(0 < u <= 1.05 for u in report["cpu_utilisation"].values())
    # The live camera outruns inference (twice the LATENCY raw rate), so frames are dropped.
    assert report["live_source_fps"] > report["fps"]["live newest-frame"]
    costs = report["cost_ms"]
    assert set(costs) == {"inference", "decode", "encode h264", "encode mp4v", "web jpeg", "motion check"}
    assert all(v > 0 for v in costs.values())
    assert set(report["web_ratio"]) == web and all(0 < r < 2 for r in report["web_ratio"].values())
    assert "cores, inference on CPU in f32" in proc.stdout.splitlines()[0]
    assert "web view (10 pictures a second to each viewer) vs pipeline headless: no viewer" in proc.stdout
    # Viewers cost JPEG encoding, on threads the web view owns: counted in its write stage.
    write = {name: report["cpu_ms_per_frame"][name]["write"] for name in web}
    assert write["pipeline + web, 10 viewers"] > write["pipeline + web, no viewer"]
    ceiling = report["ceiling"]
    assert ceiling["headless"] == pytest.approx(costs["inference"] / (costs["inference"] + costs["decode"]))
    assert 0 < ceiling["+ mp4"] < ceiling["headless"] < 1
    assert "ceiling here" in proc.stdout
    for name in expected:
        assert name in proc.stdout
    assert "x raw" in proc.stdout


def test_capacity_bench_prints_table_and_json(tmp_path, model_cache):
    """`--cameras 2` on a mostly still version of a real clip, with the motion gate: the fields are all there."""
    out = tmp_path / "capacity.json"
    proc = streamdet("bench", "--model", str(pedestrian_pb()), "--clip", str(clip("bikes")), "--cameras", "2",
                     "--seconds", "3", "--motion", "--still-share", "0.8", "--json", str(out),
                     env=cli_env(model_cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["motion"] is True and report["camera_fps"] == 25 and report["size"] == "640x272"
    assert report["clip"] == "bikes-still.mp4"
    (trial,) = report["trials"]
    assert trial["cameras"] == 2 and 2.5 < trial["seconds"] < 4.5 and 0 < trial["cpu_utilisation"] <= 1.05
    assert [c["name"] for c in trial["per_camera"]] == ["cam1", "cam2"]
    for cam in trial["per_camera"]:
        assert 0 < cam["fps"] <= 26 and 0 <= cam["drop_rate"] < 1
        assert 0 <= cam["age_p50_ms"] <= cam["age_p95_ms"]
        assert 0 <= cam["inferred"] < 0.9  # mostly still footage: the gate skips most frames
    assert trial["worst_drop"] == max(c["drop_rate"] for c in trial["per_camera"])
    assert trial["kept_up"] == (trial["worst_drop"] < 0.05)
    assert "cores, inference on CPU in f32" in proc.stdout
    assert "cameras  fps/camera   drops  age p50  age p95  inferred   CPU" in proc.stdout
    assert "motion gate on" in proc.stdout


def test_capacity_search_adds_cameras_until_one_drops(pedestrian_xml, pedestrian_detector):
    """`max`: one camera more per trial; the answer is the most cameras kept up with. A 100 fps clip makes
    the machine fall behind within a few cameras, so the search ends quickly."""
    from streamdet.bench.capacity import run_capacity

    from helpers import decode, write_clip

    fast = write_clip(decode(clip("bikes"), 100), tmp_clip := pedestrian_xml.parent / "fast-100fps.mp4", fps=100)
    try:
        detector = pedestrian_detector
        result = run_capacity(detector, "pedestrian", fast, None, 1.5, False, "this machine", most=6)
    finally:
        tmp_clip.unlink()
    assert result.searched and result.camera_fps == 100
    counts = [t.cameras for t in result.trials]
    assert counts == list(range(1, len(counts) + 1))
    assert not result.trials[-1].kept_up or len(counts) == 6
    assert all(t.kept_up for t in result.trials[:-1])
    assert result.most_cameras == (len(counts) - 1 if not result.trials[-1].kept_up else len(counts))
    assert f"most cameras kept up with (drops under 5% on every camera): {result.most_cameras}" in result.format()


@pytest.mark.parametrize("args, fragment", [
    (["--cameras", "0"], "--cameras '0'"),
    (["--cameras", "lots"], "--cameras 'lots'"),
    (["--cameras", "2", "--still-share", "1.5"], "--still-share"),
    (["--cameras", "2", "--seconds", "0"], "--seconds"),
    (["--cameras", "2", "--record", "copy"], "--record copy records real cameras"),
    (["--record", "annotated"], "--url and --record are for --cameras"),
    (["--cameras", "1", "--url", "rtsp://127.0.0.1:9/x", "--still-share", "0.5"], "--still-share plays a clip"),
    (["--detect-fps", "5"], "--detect-fps, --sub-url and --ladder are for --cameras"),
    (["--cameras", "1", "--detect-fps", "-1"], "--detect-fps must be between 0 and 240"),
    (["--cameras", "1", "--ladder"], "more than 0 with --ladder"),
    (["--cameras", "1", "--url", "rtsp://127.0.0.1:9/x", "--sub-url", "rtsp://127.0.0.1:9/y"], "give --url and --record copy"),
])
def test_capacity_bench_bad_arguments(model_cache, args, fragment):
    from clirun import assert_one_line_error

    proc = streamdet("bench", "--model", str(pedestrian_pb()), "--clip", str(clip("bikes")), *args,
                     env=cli_env(model_cache), timeout=60)
    assert_one_line_error(proc, fragment)


@pytest.mark.services
def test_capacity_bench_on_a_real_rtsp_camera_recorded_by_copy(tmp_path, model_cache):
    """`--url` with `--record copy`: real cameras (the test RTSP server, each client at another point of the
    clip as the capacity figures are taken), each recorded as it comes."""
    from rtsp import RtspServer

    server = RtspServer(clip("bikes"), repeat=3, stagger=True).start()
    out = tmp_path / "capacity.json"
    try:
        proc = streamdet("bench", "--model", str(pedestrian_pb()), "--cameras", "2", "--url", server.url(),
                         "--record", "copy", "--seconds", "2", "--json", str(out), env=cli_env(model_cache), timeout=300)
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["record"] == "copy" and report["size"] == "640x272" and report["clip"] == server.url()
    (trial,) = report["trials"]
    assert [c["name"] for c in trial["per_camera"]] == ["cam1", "cam2"]
    # 25 fps, give or take a frame or two of jitter in a 2 s window (the staggered server joins pieces of the clip)
    assert all(20 < c["fps"] <= 27.5 for c in trial["per_camera"]), trial
    assert "recording copy" in proc.stdout and "from rtsp://127.0.0.1:" in proc.stdout


@pytest.mark.services
def test_the_ladder_on_a_real_camera_with_its_sub_stream(tmp_path, model_cache):
    """`--ladder` with `--detect-fps 5` and `--sub-url`: one trial of one camera for each setting (every frame;
    5 fps; 5 fps + motion gate; 5 fps + motion gate + the sub-stream), each recorded by copy, and the table."""
    from helpers import decode, h264_clip
    from rtsp import RtspServer

    sub_clip = tmp_path / "sub.mp4"
    h264_clip(decode(clip("bikes")), sub_clip, (320, 136))  # the camera's sub-stream: bikes at half its size
    main, sub = RtspServer(clip("bikes"), repeat=20).start(), RtspServer(sub_clip, repeat=20).start()
    out = tmp_path / "ladder.json"
    try:
        proc = streamdet("bench", "--model", str(pedestrian_pb()), "--cameras", "1", "--url", main.url(),
                         "--sub-url", sub.url(), "--record", "copy", "--detect-fps", "5", "--ladder", "--seconds", "1",
                         "--json", str(out), env=cli_env(model_cache), timeout=300)
    finally:
        main.close()
        sub.close()
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    rungs = json.loads(out.read_text())
    assert [r["setting"] for r in rungs] == ["every frame", "detect.fps 5", "detect.fps 5 + motion gate",
                                             "detect.fps 5 + motion + sub"]
    assert [(r["detect_fps"], r["motion"], r["sub_stream"] is not None) for r in rungs] == [
        (0, False, False), (5, False, False), (5, True, False), (5, True, True)]
    inferred = [r["trials"][0]["per_camera"][0]["inferred"] for r in rungs]
    assert inferred[0] == 1.0 and 0.1 <= inferred[1] <= 0.3 and all(share <= 0.3 for share in inferred[2:]), inferred
    assert all(r["record"] == "copy" and r["size"] == "640x272" for r in rungs)
    assert "cameras kept up with (drops under 5 % on every camera), setting by setting:" in proc.stdout
    assert "detected on the sub-stream rtsp://127.0.0.1:" in proc.stdout
