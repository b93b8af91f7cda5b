"""Home Assistant across a reload, for real: the command in its own process with MQTT discovery on a real broker
(mosquitto on 127.0.0.1), MJPEG cameras on loopback at a low rate, SIGHUP. A camera removed has its retained
discovery configs and state topics emptied (Home Assistant drops its entities), a camera added is announced, the
camera that stays keeps its entities untouched, and the MQTT connection is the same one throughout.
"""

from __future__ import annotations

import json
import signal

import pytest

from helpers import MjpegCamera, wait_for
from mqtt_broker import Broker
from test_copy_recording import _run  # the real command in its own process, with its settings file
from test_hass import Watcher

CLIENT = "sd-reload-hass"
FPS = 5


def _camera(name: str, camera: MjpegCamera) -> str:
    return f"  - name: {name}\n    url: http://127.0.0.1:{camera.port}/{name}.mjpg\n"


def _ours(watch: Watcher, name: str) -> list[str]:
    """The topics of `name` in the run's record of what it announced (its discovery configs and states)."""
    return [t for t in json.loads(watch.last("streamdet/discovery") or "[]") if f"streamdet_{name}/" in t
            or t.startswith(f"streamdet/{name}/")]


@pytest.mark.services
def test_a_reload_clears_a_removed_cameras_entities_announces_an_added_one_and_keeps_the_connection(tmp_path,
                                                                                                   model_cache):
    broker = Broker(tmp_path).start()
    cameras = {name: MjpegCamera(fps=FPS) for name in ("stay", "gone", "new")}
    tail = (f"mqtt: {{url: 'mqtt://127.0.0.1:{broker.port}', discovery: true, client_id: {CLIENT}}}\n"
            "source: {read_timeout: 3, open_timeout: 3}\nlogging: {status_interval: 1}\n")
    watch = Watcher(broker.port)
    proc, err = _run([], model_cache, "sources:\n" + _camera("stay", cameras["stay"]) + _camera("gone", cameras["gone"])
                     + tail, tmp_path)
    try:
        wait_for(lambda: watch.last("streamdet/gone/state") == "online"
                 and watch.last("streamdet/stay/state") == "online" and _ours(watch, "gone"), 60,
                 "both cameras announced and online")
        gone, stay = _ours(watch, "gone"), _ours(watch, "stay")
        assert "homeassistant/sensor/streamdet_gone/person_count/config" in gone and "streamdet/gone/available" in gone
        wait_for(lambda: all(watch.last(t) for t in gone + stay), 10, "their retained configs and states")
        stay_before = {t: watch.values(t) for t in stay}
        (tmp_path / "settings.yaml").write_text("sources:\n" + _camera("stay", cameras["stay"])
                                                + _camera("new", cameras["new"]) + tail)
        proc.send_signal(signal.SIGHUP)
        err.wait(lambda line: "reload: added new; removed gone" in line, 60, "the reload's line")
        wait_for(lambda: all(watch.last(t) == "" for t in gone), 10, "gone's configs and states emptied")
        wait_for(lambda: watch.last("streamdet/new/state") == "online"
                 and watch.last("homeassistant/sensor/streamdet_new/person_count/config"), 30, "new announced")
        record = watch.last("streamdet/discovery")
        assert "streamdet_new/" in record and "gone" not in record
        # The camera that stays: its configs not announced again nor cleared; its states as they went on.
        for topic, values in stay_before.items():
            now = watch.values(topic)
            assert now[:len(values)] == values and "" not in now, (topic, now)
            if topic.endswith("/config"):
                assert now == values, (topic, now)
        assert watch.values("streamdet/available") == ["online"]  # no reconnect: no "offline" will, no new "online"
        late = Watcher(broker.port)  # what Home Assistant finds when it starts now: nothing of gone is retained
        try:
            late.client.publish("test/mark", "after", qos=1)
            wait_for(lambda: late.last("test/mark") == "after", 10, "the mark after the retained messages")
            assert not [t for t, _, _ in list(late.msgs) if "gone" in t]
            assert late.last("homeassistant/sensor/streamdet_new/person_count/config")
        finally:
            late.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        watch.close()
        for camera in cameras.values():
            camera.close()
        broker.stop()
    assert proc.returncode == 130 and "Traceback" not in err.text(), err.text()
    connected = [line for line in broker.log.read_text().splitlines() if f" as {CLIENT} " in line]
    assert len(connected) == 1, connected  # one connection for the whole run, across the reload
