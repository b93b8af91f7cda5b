"""The web view's Prometheus /metrics: a real run (real model, real clip) scraped over loopback and parsed
with prometheus_client's own parser; the collector alone on a made-up status; a camera whose URL carries
a password, whose scrape must not."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from clirun import cli_env
from helpers import LineReader, wait_for
from media import clip
from mqtt_broker import AUTH_PW, AUTH_USER, Broker
from rtsp import RtspServer
from test_web import _config, running

from streamdet.config.sections import WebConfig
from streamdet.pipeline import Pipeline
from streamdet.measures.figures import InferenceInfo, RunStatus, SourceStatus, StageSummary
from streamdet.web import WebView, bind_listener
from streamdet.web.metrics import EventTally, MetricsPage, Scrape, WebFigures

TOKEN = "token-for-the-metrics-tests"


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _families(text: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def _value(families: dict, family: str, sample: str, **labels) -> float:
    found = [s.value for s in families[family].samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, f"{sample}{labels}: {len(found)} samples in {families[family].samples}"
    return found[0]


# ------------------------------------------------------------------------------ a real run

@pytest.fixture(scope="module")
def run(pedestrian_detector):
    """A looping clip with tracking, so frames and events keep coming while the tests scrape."""
    config = _config([str(clip("bikes"))], token=TOKEN)
    config.source.loop = True
    config.track.enabled = True
    with Pipeline(config, detector=pedestrian_detector) as pipeline, running(pipeline):
        yield pipeline


def _scrape(pipeline: Pipeline, **headers) -> dict:
    code, body, head = _get(pipeline.web_url + "metrics", {"Authorization": f"Bearer {TOKEN}", **headers})
    assert code == 200, body
    assert head["Content-Type"] == CONTENT_TYPE_LATEST
    return _families(body)


def test_a_real_run_scrapes_with_prometheus_names_types_and_labels(run):
    name = run.status().sources[0].name
    wait_for(lambda: run.status().frames >= 5, 60, "frames through the run")
    f = _scrape(run)
    types = {n: f[n].type for n in ("streamdet_frames_read", "streamdet_frames_processed", "streamdet_frames_inferred",
                                    "streamdet_frames_dropped", "streamdet_processed_fps", "streamdet_frame_age_seconds",
                                    "streamdet_source_state", "streamdet_inference_info", "streamdet_inference_seconds",
                                    "streamdet_events", "streamdet_web_viewers", "streamdet_uptime_seconds")}
    assert types == {"streamdet_frames_read": "counter", "streamdet_frames_processed": "counter",
                     "streamdet_frames_inferred": "counter", "streamdet_frames_dropped": "counter",
                     "streamdet_processed_fps": "gauge", "streamdet_frame_age_seconds": "summary",
                     "streamdet_source_state": "gauge", "streamdet_inference_info": "gauge",  # info, in the text format
                     "streamdet_inference_seconds": "summary", "streamdet_events": "counter",
                     "streamdet_web_viewers": "gauge", "streamdet_uptime_seconds": "gauge"}
    assert _value(f, "streamdet_frames_processed", "streamdet_frames_processed_total", source=name) >= 5
    assert _value(f, "streamdet_source_state", "streamdet_source_state", source=name, state="online") == 1
    p95 = _value(f, "streamdet_frame_age_seconds", "streamdet_frame_age_seconds", source=name, quantile="0.95")
    assert 0 < p95 < 10
    info = f["streamdet_inference_info"].samples[0].labels
    assert info["device"] == "CPU" and info["precision"] in ("f32", "bf16", "f16") and info["weights"] == "FP16"
    assert _value(f, "streamdet_inference_seconds", "streamdet_inference_seconds_count") >= 5
    # A file is no camera: nothing about connections that nothing measures.
    assert not f["streamdet_camera_up"].samples and not f["streamdet_camera_reconnects"].samples


def test_counters_move_between_two_scrapes_and_events_are_counted_by_kind_and_class(run):
    name = run.status().sources[0].name
    first = _value(_scrape(run), "streamdet_frames_processed", "streamdet_frames_processed_total", source=name)
    second = wait_for(lambda: (v := _value(_scrape(run), "streamdet_frames_processed",
                                           "streamdet_frames_processed_total", source=name)) > first and v,
                      30, "frames_processed_total to grow")
    assert second > first
    f = wait_for(lambda: (f := _scrape(run)) and f["streamdet_events"].samples and f, 60, "a track event")
    starts = [s for s in f["streamdet_events"].samples if s.labels["kind"] == "start"]
    assert starts and all(s.labels["source"] == name and s.labels["label"] for s in starts)


def test_metrics_need_the_token_like_every_route(run):
    url = run.web_url + "metrics"
    code, body, head = _get(url)
    assert code == 401 and head["WWW-Authenticate"].startswith("Bearer")
    assert _get(url, {"Authorization": "Bearer wrong-token-here"})[0] == 401
    assert _get(url + f"?token={TOKEN}")[0] == 200


# ------------------------------------------------------------------------------ switched off

def test_cli_no_metrics_flag_leaves_the_rest_of_the_web_view_serving(tmp_path, model_cache, pedestrian_xml):
    child = subprocess.Popen([sys.executable, "-m", "streamdet", "run", "-m", str(pedestrian_xml), "-s",
                              str(clip("carphone_pristine")), "--loop", "--serve", "127.0.0.1:0", "--no-metrics"],
                             env=cli_env(model_cache), cwd=tmp_path, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = LineReader(child.stderr)
        at = lines.wait(lambda line: "web view on http://127.0.0.1:" in line, 60, "the web view's address")
        base = lines.lines[at].split(" on ")[1].split()[0]
        assert _get(base + "metrics")[0] == 404
        assert _get(base + "api/stats")[0] == 200
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM


def _fake_status() -> RunStatus:
    age = StageSummary(mean_ms=40.0, p50_ms=35.0, p95_ms=80.0, count=10)
    return RunStatus(uptime_s=5.0, frames=10, inference_time=age, mqtt={"sent": 3, "dropped": 1, "connected": 0, "queued": 2},
                     inference=InferenceInfo("ssd", ["server grpc://user:hunter2@127.0.0.1:9000"], "set by the server",
                                             "FP32", 4),
                     sources=[SourceStatus(name="yard", url="rtsp://***:***@127.0.0.1:554/yard", live=True,
                                           state="offline", width=64, height=48, input_fps=None, processed_fps=0.0,
                                           frames_processed=10, dropped=2, latency_ms=30.0, reconnects=1,
                                           offline_s=12.5, frames_read=12, frames_inferred=4, frame_age=age)])


@pytest.mark.unit
def test_web_metrics_false_serves_no_metrics():
    web = WebConfig(listen="127.0.0.1:0", metrics=False)
    view = WebView(bind_listener(web), web, ["yard"], _fake_status, None)
    try:
        assert _get(view.server.url + "metrics")[0] == 404
        assert _get(view.server.url + "healthz")[0] == 503  # the rest serves as before (yard is offline)
    finally:
        view.close()


@pytest.mark.unit
def test_served_metrics_count_logged_trouble_and_the_recording_files_on_disk(tmp_path):
    segments = [tmp_path / "yard_1.mp4", tmp_path / "yard_2.mp4"]
    segments[0].write_bytes(b"x" * 1000)
    segments[1].write_bytes(b"y" * 234)
    listing = lambda: [(p, 0.0) for p in segments] + [(tmp_path / "expired.mp4", 0.0)]  # noqa: E731
    web = WebConfig(listen="127.0.0.1:0")
    view = WebView(bind_listener(web), web, ["yard"], _fake_status, None, recordings={"yard": listing})
    try:
        logging.getLogger("streamdet").warning("a camera went away (logged by the test)")
        logging.getLogger("streamdet.web.http").error("a request went wrong (logged by the test)")
        code, body, _ = _get(view.server.url + "metrics")
        assert code == 200
        f = _families(body)
    finally:
        view.close()
    assert view.logged not in logging.getLogger("streamdet").handlers  # nothing counted after the run
    assert _value(f, "streamdet_log_messages", "streamdet_log_messages_total", level="warning") == 1
    assert _value(f, "streamdet_log_messages", "streamdet_log_messages_total", level="error") == 1
    assert _value(f, "streamdet_recording_segments", "streamdet_recording_segments", source="yard") == 2
    assert _value(f, "streamdet_recording_bytes", "streamdet_recording_bytes", source="yard") == 1234


@pytest.mark.unit
def test_the_collector_turns_a_status_into_camera_mqtt_and_event_metrics_with_credentials_masked():
    class Ended:
        source, kind, label, clip = "yard", "end", "person", "yard-1.mp4"

    tally = EventTally({"yard": lambda: 1})  # two tracks that shared one clip: one clip, as the summary says
    tally.add([Ended(), Ended()])
    events, clips = tally.counts()
    text = MetricsPage(lambda: Scrape(_fake_status(), WebFigures([3], 4, 1, 0), events, clips)).text()
    assert b"hunter2" not in text and b"user" not in text
    f = _families(text)
    assert _value(f, "streamdet_camera_up", "streamdet_camera_up", source="yard") == 0
    assert _value(f, "streamdet_camera_offline_seconds", "streamdet_camera_offline_seconds", source="yard") == 12.5
    assert _value(f, "streamdet_camera_reconnects", "streamdet_camera_reconnects_total", source="yard") == 1
    assert _value(f, "streamdet_frames_inferred", "streamdet_frames_inferred_total", source="yard") == 4
    assert _value(f, "streamdet_frame_age_seconds", "streamdet_frame_age_seconds_sum", source="yard") == 0.4
    assert _value(f, "streamdet_events", "streamdet_events_total", source="yard", kind="end", label="person") == 2
    assert _value(f, "streamdet_clips", "streamdet_clips_total", source="yard") == 1
    assert _value(f, "streamdet_mqtt_events_dropped", "streamdet_mqtt_events_dropped_total") == 1
    assert _value(f, "streamdet_mqtt_queued_messages", "streamdet_mqtt_queued_messages") == 2
    assert _value(f, "streamdet_web_viewers", "streamdet_web_viewers", source="yard") == 3
    assert f["streamdet_inference_info"].samples[0].labels["device"] == "server grpc://***:***@127.0.0.1:9000"
    assert "streamdet_input_fps" in f and not f["streamdet_input_fps"].samples  # not measured yet: no sample


# ------------------------------------------------------- a camera and a broker with passwords

@pytest.mark.services
def test_camera_and_broker_passwords_never_reach_the_metrics_and_mqtt_is_measured(tmp_path, pedestrian_detector):
    server = RtspServer(clip("bikes"), repeat=50, user="admin", password="Metr1cs-pa55").start()
    broker = Broker(tmp_path, auth=True).start()
    config = _config([server.url("admin", "Metr1cs-pa55")])
    config.mqtt.url = f"mqtt://{AUTH_USER}:{AUTH_PW}@127.0.0.1:{broker.port}"
    try:
        with Pipeline(config, detector=pedestrian_detector) as pipeline, running(pipeline):
            name = pipeline.status().sources[0].name

            def sent() -> dict | None:
                code, body, _ = _get(pipeline.web_url + "metrics")
                assert code == 200
                assert b"Metr1cs-pa55" not in body and b"admin" not in body and AUTH_PW.encode() not in body
                f = _families(body)
                return f if _value(f, "streamdet_mqtt_events_sent", "streamdet_mqtt_events_sent_total") else None

            f = wait_for(sent, 60, "an event acknowledged by the broker")
            assert _value(f, "streamdet_camera_up", "streamdet_camera_up", source=name) == 1
            assert _value(f, "streamdet_camera_offline_seconds", "streamdet_camera_offline_seconds", source=name) == 0
            assert _value(f, "streamdet_mqtt_connected", "streamdet_mqtt_connected") == 1
            assert _value(f, "streamdet_mqtt_events_dropped", "streamdet_mqtt_events_dropped_total") == 0
            assert _value(f, "streamdet_mqtt_queued_messages", "streamdet_mqtt_queued_messages") == 0
    finally:
        server.close()
        broker.stop()


@pytest.mark.services
def test_clips_total_counts_the_clips_written_not_the_end_events_that_share_them(tmp_path, pedestrian_detector):
    """bikes with 1 s before and after and end_after 1: four tracks end by frame 220, two of them overlapping in
    one clip, so three clips. At the last frame /metrics says what the summary says: the clips written."""
    clips = tmp_path / "clips"
    clips.mkdir()
    config = _config([str(clip("bikes"))], token=TOKEN)
    config.logging.quiet = True
    config.events.clips = str(clips)
    config.events.pre_capture = config.events.post_capture = config.events.end_after = 1.0
    ends: list = []
    scraped: list[float] = []

    def at_each(result) -> None:
        ends.extend(e for e in result.events if e.kind == "end")
        if result.frame.index == 249:  # the last frame: every clip has begun, every track above has ended
            made = len({e.clip for e in ends})
            scraped.append(wait_for(lambda: (n := _value(_scrape(pipeline), "streamdet_clips",
                                                         "streamdet_clips_total", source="bikes")) == made and n,
                                    10, f"streamdet_clips_total to be {made}", poll=0.2))

    with Pipeline(config, detector=pedestrian_detector) as pipeline:
        for result in pipeline.results():
            at_each(result)
    files = [p for p in clips.iterdir() if p.suffix == ".mp4"]
    assert len(ends) > len(files), f"{len(ends)} end events for {len(files)} clips: no two tracks shared one"
    assert scraped == [len(files)]
