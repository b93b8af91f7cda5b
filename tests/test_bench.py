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
        assert set(stages) == {"decode", "write", "inference+other"} | ({"render"} if "mp4" in name else set())
        assert stages["decode"] > 0
    assert report["cpu_ms_per_frame"]["pipeline + mp4"]["write"] > report["cpu_ms_per_frame"]["pipeline headless"]["write"]
    assert all(0 < u <= 1.05 for u in report["cpu_utilisation"].values())
    # The live camera outruns inference (twice the LATENCY raw rate), so frames are dropped.
    assert report["live_source_fps"] > report["fps"]["live newest-frame"]
    costs = report["cost_ms"]
    assert set(costs) == {"inference", "decode", "encode h264", "encode mp4v", "web jpeg"}
    assert all(v > 0 for v in costs.values())
    assert set(report["web_ratio"]) == web and all(0 < r < 2 for r in report["web_ratio"].values())
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
