"""Home Assistant MQTT discovery for real: the retained configs and states a run leaves on a real broker
(mosquitto on 127.0.0.1), a person counted 0 -> 1 -> 0 on a real clip, cameras going offline when the run
stops and when an RTSP camera is lost, and the entities of a camera removed from the config cleared."""

from __future__ import annotations

import json
import re
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import run_alongside, wait_for, write_clip
from media import clip
from mqtt_broker import Broker
from rtsp import RtspServer

from streamdet.config.events import EventsConfig, LineConfig, ZoneConfig
from streamdet.config.mqtt import MqttConfig
from streamdet.config.sections import Config, SourceEntry
from streamdet.outputs.hass import Camera, _stale, discovery_configs, state_topics
from streamdet.pipeline import Pipeline

KEYS = {"name", "unique_id", "state_topic", "availability", "availability_mode", "device"}


# --- the payloads, without a broker ------------------------------------------------------------
@pytest.mark.unit
def test_configs_name_every_entity_with_its_topics_availability_and_device():
    camera = Camera("door.1", ("person", "traffic light"), zones=("porch",), lines=("gate",))
    configs = discovery_configs(camera, "sd", "ha")
    node = "ha/{}/streamdet_door_1/{}/config"
    assert set(configs) == {node.format("sensor", "state"), node.format("sensor", "person_count"),
                            node.format("binary_sensor", "person_occupied"),
                            node.format("sensor", "traffic_light_count"),
                            node.format("binary_sensor", "traffic_light_occupied"),
                            node.format("sensor", "zone_porch_count"), node.format("sensor", "line_gate_in"),
                            node.format("sensor", "line_gate_out")}
    for payload in configs.values():
        assert KEYS <= set(payload) and payload["availability_mode"] == "all"
        assert payload["device"]["identifiers"] == ["streamdet_door_1"] and payload["device"]["name"] == "door.1"
        assert payload["availability"][0] == {"topic": "sd/available", "payload_available": "online",
                                              "payload_not_available": "offline"}
    person = configs[node.format("sensor", "person_count")]
    assert person["state_topic"] == "sd/door.1/person/count" and person["state_class"] == "measurement"
    assert person["unit_of_measurement"] == "objects" and person["unique_id"] == "streamdet_door_1_person_count"
    assert [a["topic"] for a in person["availability"]] == ["sd/available", "sd/door.1/available"]
    occupied = configs[node.format("binary_sensor", "person_occupied")]
    assert (occupied["payload_on"], occupied["payload_off"], occupied["device_class"]) == ("ON", "OFF", "occupancy")
    assert occupied["state_topic"] == "sd/door.1/person/occupied"
    assert configs[node.format("sensor", "zone_porch_count")]["state_topic"] == "sd/door.1/zone/porch/count"
    assert configs[node.format("sensor", "line_gate_out")]["state_topic"] == "sd/door.1/line/gate/out"
    state = configs[node.format("sensor", "state")]  # says "offline" itself: only the run's availability
    assert state["state_topic"] == "sd/door.1/state" and len(state["availability"]) == 1
    assert len({p["unique_id"] for p in configs.values()}) == len(configs)


@pytest.mark.unit
def test_a_damaged_or_foreign_manifest_clears_only_our_topics_no_longer_announced():
    settings = MqttConfig(url="mqtt://127.0.0.1", prefix="sd", discovery_prefix="ha")
    ours = set(discovery_configs(Camera("a", ("person",)), "sd", "ha"))
    gone = sorted(discovery_configs(Camera("b", ("person",)), "sd", "ha")) + ["sd/b/person/count"]
    manifest = json.dumps(sorted(ours) + gone + ["ha/light/kitchen/config", "other/x", "sd/#"])
    assert _stale(manifest, ours, settings) == gone
    assert _stale("not json", ours, settings) == [] and _stale('{"a": 1}', ours, settings) == []
    assert _stale(None, ours, settings) == []


@pytest.mark.unit
@pytest.mark.parametrize("prefix", ["", "home/+", "ha/#", "/ha", "ha/", "ha//x", "home assistant"])
def test_a_discovery_prefix_that_is_no_topic_prefix_is_refused(prefix):
    with pytest.raises(ValueError, match="discovery_prefix must be a topic"):
        MqttConfig(discovery_prefix=prefix)


@pytest.mark.unit
def test_a_bad_discovery_prefix_in_the_config_is_one_line_before_anything_opens(tmp_path):
    settings = tmp_path / "c.yaml"
    settings.write_text("mqtt:\n  url: mqtt://127.0.0.1:1\n  discovery: true\n  discovery_prefix: 'ha/#'\n")
    proc = streamdet("run", "--config", str(settings), "-s", str(clip("carphone_pristine")), "--mqtt-discovery",
                     env=cli_env(tmp_path))
    assert_one_line_error(proc, "discovery_prefix must be a topic")


# --- a real broker -----------------------------------------------------------------------------
class Watcher:
    """A paho client on every topic, keeping (topic, payload, retain) in arrival order."""

    def __init__(self, port: int):
        self.msgs: list[tuple[str, str, bool]] = []
        subscribed = threading.Event()
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"w-{uuid.uuid4().hex[:8]}")
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe("#", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = lambda cl, ud, m: self.msgs.append((m.topic, m.payload.decode(), bool(m.retain)))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        wait_for(subscribed.is_set, 10, "SUBACK")

    def values(self, topic: str) -> list[str]:
        return [p for t, p, _ in list(self.msgs) if t == topic]

    def last(self, topic: str) -> str | None:
        values = self.values(topic)
        return values[-1] if values else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def watchers(broker):
    made: list[Watcher] = []

    def make() -> Watcher:
        made.append(Watcher(broker.port))
        return made[-1]
    yield make
    for w in made:
        w.close()


@pytest.fixture(scope="module")
def detector(pedestrian_detector):
    return pedestrian_detector


def _config(broker, sources) -> Config:
    config = Config(sources=sources)
    config.display.show = "no"
    config.logging.quiet = True
    config.mqtt.url = f"mqtt://127.0.0.1:{broker.port}"
    config.mqtt.discovery = True
    return config


def _run(config, detector):
    with Pipeline(config, detector=detector) as pipeline:
        pipeline.run()


@pytest.mark.services
def test_a_run_announces_its_camera_counts_the_man_0_1_0_and_goes_offline(broker, watchers, detector):
    """carphone: one man at the wheel for the whole clip. His track starts after a few frames (count 1) and ends
    with the clip (0); a zone over the whole picture holds him, a line across the top is never crossed."""
    config = _config(broker, [SourceEntry(url=str(clip("carphone_pristine")), name="car")])
    config.events = EventsConfig(zones=[ZoneConfig("all", [[0, 0], [1, 0], [1, 1], [0, 1]])],
                                 lines=[LineConfig("top", [[0, 0.05], [1, 0.05]])])
    watch = watchers()
    _run(config, detector)
    topics = state_topics(Camera("car", ("person",), ("all",), ("top",)), "streamdet")
    wait_for(lambda: watch.last(topics["available"]) == "offline", 10, "the camera offline at the end")
    assert watch.values(topics["person_count"]) == ["0", "1", "0"]
    assert watch.values(topics["person_occupied"]) == ["OFF", "ON", "OFF"]
    assert watch.values(topics["zone_all_count"]) == ["0", "1", "0"]
    assert watch.values(topics["line_top_in"]) == ["0"] and watch.values(topics["line_top_out"]) == ["0"]
    assert watch.values(topics["state"]) == ["online", "offline"]
    # What Home Assistant finds when it starts later: the configs and the last states, retained.
    late = watchers()
    config_topic = "homeassistant/sensor/streamdet_car/person_count/config"
    wait_for(lambda: watch.last("streamdet/available") == "offline" and late.last(config_topic), 10, "retained")
    payload = json.loads(late.last(config_topic))
    assert KEYS <= set(payload) and payload["state_topic"] == topics["person_count"]
    assert payload["device"]["identifiers"] == ["streamdet_car"]
    assert late.last(topics["person_count"]) == "0" and late.last(topics["available"]) == "offline"
    announced = json.loads(late.last("streamdet/discovery"))
    assert config_topic in announced and topics["person_count"] in announced
    assert all(retained for t, _, retained in late.msgs)


@pytest.mark.services
def test_a_camera_removed_from_the_config_has_its_entities_cleared_at_the_next_start(broker, watchers, detector,
                                                                                       carphone_frames, tmp_path):
    short = str(write_clip(carphone_frames[:5], tmp_path / "short.mp4"))
    _run(_config(broker, [SourceEntry(url=short, name="front"), SourceEntry(url=short, name="back")]), detector)
    watch = watchers()  # subscribes after the first run: what it gets is retained
    wait_for(lambda: watch.last("streamdet/discovery"), 10, "the retained manifest")
    back = [t for t in json.loads(watch.last("streamdet/discovery")) if "back" in t]
    assert {"homeassistant/sensor/streamdet_back/state/config", "homeassistant/sensor/streamdet_back/person_count/config",
            "homeassistant/binary_sensor/streamdet_back/person_occupied/config", "streamdet/back/available",
            "streamdet/back/person/count"} <= set(back)
    wait_for(lambda: all(watch.last(t) for t in back), 10, "back's retained topics")
    _run(_config(broker, [SourceEntry(url=short, name="front")]), detector)
    wait_for(lambda: all(watch.last(t) == "" for t in back), 10, "back's topics cleared")
    front = "homeassistant/sensor/streamdet_front/state/config"
    assert watch.values(front)[-1] != "" and "back" not in watch.last("streamdet/discovery")
    late = watchers()  # an empty retained payload removes the retained message: nothing of back is left
    wait_for(lambda: late.last(front), 10, "retained configs of front")
    assert not [t for t, _, _ in list(late.msgs) if "back" in t]


@pytest.mark.services
def test_a_lost_rtsp_camera_goes_offline_while_the_run_goes_on_and_online_when_back(broker, watchers, detector):
    """Killed (a camera losing power): its entities go unavailable while the run goes on; back, available again."""
    watch = watchers()
    available = "streamdet/cam/available"

    def lose_the_camera(pipeline) -> None:
        wait_for(lambda: watch.last(available) == "online" and pipeline.status().sources[0].frames_processed, 30,
                 "frames from the camera")
        servers[0].kill()
        wait_for(lambda: watch.last(available) == "offline", 15, "the camera offline")
        assert watch.last("streamdet/cam/state") == "offline" and watch.last("streamdet/available") == "online"
        servers.append(RtspServer(clip("bikes"), port=servers[0].port, repeat=20).start())
        wait_for(lambda: watch.last(available) == "online", 30, "the camera back online")
        assert watch.values(available) == ["online", "offline", "online"]

    servers = [RtspServer(clip("bikes"), repeat=20).start()]
    config = _config(broker, [SourceEntry(url=servers[0].url(), name="cam")])
    config.source.read_timeout = 1.0
    config.source.reconnect_initial = 0.25
    try:
        with Pipeline(config, detector=detector) as pipeline:
            run_alongside(pipeline, lose_the_camera)
    finally:
        for server in servers:
            server.close()


@pytest.mark.services
def test_a_broker_restarted_without_its_retained_messages_gets_the_entities_and_states_again(broker, watchers,
                                                                                           detector):
    """mosquitto keeps retained messages in memory only, unless told otherwise: restarted, it has lost the
    configs and states, and Home Assistant would find no entities until the next run. They go out again."""
    config = _config(broker, [SourceEntry(url=str(clip("carphone_pristine")), name="car")])
    config.source.loop = True
    config_topic, state = "homeassistant/sensor/streamdet_car/person_count/config", "streamdet/car/state"

    def restart_the_broker(pipeline) -> None:
        first = watchers()
        wait_for(lambda: first.last(config_topic) and first.last(state) == "online", 30, "the entities announced")
        broker.kill()
        broker.start()  # the same port, no persistence: nothing retained is left
        late = watchers()
        wait_for(lambda: late.last(config_topic) and late.last(state) == "online", 30, "the entities announced again")
        payload = json.loads(late.last(config_topic))
        assert payload["state_topic"] == "streamdet/car/person/count" and late.last("streamdet/car/available") == "online"
        assert late.last("streamdet/car/person/count") in ("0", "1")

    with Pipeline(config, detector=detector) as pipeline:
        run_alongside(pipeline, restart_the_broker)


@pytest.mark.unit
def test_two_sources_that_would_be_one_device_are_one_line_before_the_broker_is_reached(tmp_path):
    """a.b and a_b: Home Assistant's ids take no '.', so both would be streamdet_a_b."""
    path = clip("carphone_pristine")
    settings = tmp_path / "c.yaml"
    settings.write_text(f"mqtt:\n  url: mqtt://127.0.0.1:1\n  discovery: true\n"
                        f"sources:\n  - {{url: '{path}', name: a.b}}\n  - {{url: '{path}', name: a_b}}\n")
    proc = streamdet("run", "--config", str(settings), env=cli_env(tmp_path))
    assert_one_line_error(proc, "mqtt.discovery: two sources become the device streamdet_a_b; rename one")


@pytest.mark.unit
def test_discovery_without_a_broker_is_one_line(tmp_path):
    proc = streamdet("run", "-s", str(clip("carphone_pristine")), "--mqtt-discovery", env=cli_env(tmp_path))
    assert_one_line_error(proc, "mqtt.discovery needs a broker: give --mqtt URL or mqtt.url")


@pytest.mark.unit
def test_zones_and_lines_named_with_a_dot_get_entities_home_assistant_takes_and_a_clash_is_one_line(tmp_path):
    """Home Assistant ignores a discovery topic whose object part holds anything but [A-Za-z0-9_-]: a zone
    'front.door' is the entity zone_front_door_count, as a class 'traffic light' is traffic_light_count."""
    configs = discovery_configs(Camera("door", ("person",), ("front.door",), ("gate.1",)), "sd", "ha")
    assert all(re.fullmatch(r"ha/(sensor|binary_sensor)/streamdet_door/[A-Za-z0-9_-]+/config", t) for t in configs), \
        sorted(configs)
    zone = configs["ha/sensor/streamdet_door/zone_front_door_count/config"]
    assert zone["state_topic"] == "sd/door/zone/front.door/count" and zone["name"] == "Zone front.door count"
    assert zone["unique_id"] == "streamdet_door_zone_front_door_count"
    assert configs["ha/sensor/streamdet_door/line_gate_1_out/config"]["state_topic"] == "sd/door/line/gate.1/out"
    path = clip("carphone_pristine")
    settings = tmp_path / "c.yaml"
    settings.write_text(f"mqtt:\n  url: mqtt://127.0.0.1:1\n  discovery: true\nsources:\n  - url: '{path}'\n"
                        "    name: car\n    events:\n      lines:\n        - {name: a.b, points: [[0, 0.1], [1, 0.1]]}\n"
                        "        - {name: a_b, points: [[0, 0.2], [1, 0.2]]}\n")
    proc = streamdet("run", "--config", str(settings), env=cli_env(tmp_path))
    assert_one_line_error(proc, "mqtt.discovery: two lines of car become the entity line_a_b; rename one")


@pytest.mark.services
def test_a_zone_and_a_line_named_with_a_dot_are_announced_and_counted_on_a_real_broker(broker, watchers, detector):
    """carphone's man sits in the zone 'all.of.it' for the whole clip: its entity is announced under an object
    part Home Assistant takes, and its state topic counts him 0 -> 1 -> 0."""
    config = _config(broker, [SourceEntry(url=str(clip("carphone_pristine")), name="car")])
    config.events = EventsConfig(zones=[ZoneConfig("all.of.it", [[0, 0], [1, 0], [1, 1], [0, 1]])],
                                 lines=[LineConfig("top.edge", [[0, 0.05], [1, 0.05]])])
    watch = watchers()
    _run(config, detector)
    wait_for(lambda: watch.last("streamdet/car/available") == "offline", 10, "the camera offline at the end")
    announced = [t for t, p, _ in list(watch.msgs) if t.startswith("homeassistant/") and p]
    assert all(re.fullmatch(r"homeassistant/(sensor|binary_sensor)/streamdet_car/[A-Za-z0-9_-]+/config", t)
               for t in announced), announced
    zone = json.loads(watch.last("homeassistant/sensor/streamdet_car/zone_all_of_it_count/config"))
    assert watch.values(zone["state_topic"]) == ["0", "1", "0"]
    line = json.loads(watch.last("homeassistant/sensor/streamdet_car/line_top_edge_in/config"))
    assert watch.values(line["state_topic"]) == ["0"]


@pytest.mark.services
def test_a_missing_snapshots_folder_is_one_line_before_anything_is_published(broker, watchers, tmp_path,
                                                                               model_cache, pedestrian_xml):
    """Found by the plan: nothing reaches the broker, not even the retained discovery configs or `online`."""
    proc = streamdet("run", "-s", str(clip("carphone_pristine")), "-m", str(pedestrian_xml),
                     "--snapshots", str(tmp_path / "nowhere" / "{name}"), "--mqtt", f"mqtt://127.0.0.1:{broker.port}",
                     "--mqtt-discovery", env=cli_env(model_cache))
    assert_one_line_error(proc, "events.snapshots", "nowhere/carphone_pristine'", "create it first")
    late = watchers()  # on every topic: what is retained comes first, before the mark published after it
    late.client.publish("test/mark", "after", qos=1)
    wait_for(lambda: late.last("test/mark") == "after", 10, "the mark")
    assert [m for m in late.msgs if m[0] != "test/mark"] == [], late.msgs
