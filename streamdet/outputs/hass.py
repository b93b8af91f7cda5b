"""Home Assistant MQTT discovery: each camera a device with its counts, occupancy and state as entities.

At start (the broker reached) the retained discovery configs go out, one per entity, under
`{discovery_prefix}/{component}/streamdet_{camera}/{object}/config`; then, on the output thread,
each state topic `{prefix}/{camera}/...` is published (retained) only when its value changes.
What was announced is kept in a retained manifest, `{prefix}/discovery`: read back at the next start,
so the topics of a camera that left the config are cleared (an empty retained payload removes an
entity in Home Assistant). Everything goes through MqttPublisher's bounded outbox.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from ..config.mqtt import MqttConfig
from ..detections import FrameResult
from ..errors import ConfigError
from ..sources.base import SourceHealth
from .base import Output
from .mqtt import MqttPublisher

log = logging.getLogger("streamdet")

# Counted when a source names no detect.classes: those of these the model knows, else "person".
DEFAULT_CLASSES = ("person", "car")
MANIFEST_WAIT_S = 2.0  # for the retained manifest at start: the broker's SUBACK and one round trip, at most this
_HEALTH_EVERY_S = 1.0  # a camera's connection is looked at this often (cheap, but not every frame)


@dataclass(frozen=True)
class Camera:
    """What one source shows Home Assistant: the classes it counts, its zones and its lines."""

    name: str
    classes: tuple[str, ...]
    zones: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()


def _sw_version() -> str:
    try:
        return version("streamdet")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def default_classes(labels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in DEFAULT_CLASSES if c in labels) or ("person",)


def object_id(text: str) -> str:
    """Home Assistant's ids and topic levels take [A-Za-z0-9_-]; anything else becomes '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def check_devices(names: list[str]) -> None:
    """Two sources whose names differ only where ids take '_' would be one device: a one-line error."""
    nodes = [object_id(n) for n in names]
    twice = sorted({n for n in nodes if nodes.count(n) > 1})
    if twice:
        raise ConfigError(f"mqtt.discovery: two sources become the device streamdet_{twice[0]}; rename one "
                          "(Home Assistant ids take only letters, digits, '_' and '-')")


def check_entities(camera: Camera) -> None:
    """Two zones (or lines) of a camera whose names differ only where ids take '_' would be one entity."""
    for kind, names in (("zones", camera.zones), ("lines", camera.lines)):
        ids = [object_id(n) for n in names]
        twice = sorted({n for n in ids if ids.count(n) > 1})
        if twice:
            raise ConfigError(f"mqtt.discovery: two {kind} of {camera.name} become the entity "
                              f"{kind[:-1]}_{twice[0]}; rename one (Home Assistant ids take only letters, digits, "
                              "'_' and '-')")


def state_topics(camera: Camera, prefix: str) -> dict[str, str]:
    """Every state topic of a camera, by what it holds (also its entity's object id: names cleaned by
    `object_id`, as Home Assistant ignores a discovery topic whose object part holds anything else)."""
    base = f"{prefix}/{camera.name.replace('+', '_').replace('#', '_')}"  # as its events' topic
    topics = {"available": f"{base}/available", "state": f"{base}/state"}
    for c in camera.classes:
        topics[f"{object_id(c)}_count"] = f"{base}/{object_id(c)}/count"
        topics[f"{object_id(c)}_occupied"] = f"{base}/{object_id(c)}/occupied"
    for z in camera.zones:
        topics[f"zone_{object_id(z)}_count"] = f"{base}/zone/{z}/count"
    for line in camera.lines:
        topics[f"line_{object_id(line)}_in"] = f"{base}/line/{line}/in"
        topics[f"line_{object_id(line)}_out"] = f"{base}/line/{line}/out"
    return topics


def discovery_configs(camera: Camera, prefix: str, discovery_prefix: str) -> dict[str, dict]:
    """Config topic -> payload for each of a camera's entities (see docs/events.md for the list)."""
    node = f"streamdet_{object_id(camera.name)}"
    topics = state_topics(camera, prefix)
    run = {"topic": f"{prefix}/available", "payload_available": "online", "payload_not_available": "offline"}
    device = {"identifiers": [node], "name": camera.name, "manufacturer": "streamdet",
              "model": "streamdet camera", "sw_version": _sw_version()}

    def entity(component: str, key: str, name: str, follows_camera: bool = True, **extra) -> tuple[str, dict]:
        availability = [run]
        if follows_camera:  # the camera's own state sensor stays available to say "offline"
            availability = [run, {**run, "topic": topics["available"]}]
        payload = {"name": name, "unique_id": f"{node}_{key}", "object_id": f"{node}_{key}",
                   "state_topic": topics[key], "availability": availability, "availability_mode": "all",
                   "device": device, **extra}
        return f"{discovery_prefix}/{component}/{node}/{key}/config", payload

    made = [entity("sensor", "state", "State", follows_camera=False, device_class="enum",
                   options=["online", "offline"], icon="mdi:cctv")]
    for c in camera.classes:
        key = object_id(c)
        made.append(entity("sensor", f"{key}_count", f"{c} count", state_class="measurement",
                           unit_of_measurement="objects", icon="mdi:counter"))
        made.append(entity("binary_sensor", f"{key}_occupied", f"{c} occupied", payload_on="ON", payload_off="OFF",
                           device_class="occupancy"))
    for z in camera.zones:
        made.append(entity("sensor", f"zone_{object_id(z)}_count", f"Zone {z} count", state_class="measurement",
                           unit_of_measurement="objects", icon="mdi:counter"))
    for line in camera.lines:  # counts of this run: they start at 0 again with each run
        for way in ("in", "out"):
            made.append(entity("sensor", f"line_{object_id(line)}_{way}", f"Line {line} {way}", state_class="total_increasing",
                               unit_of_measurement="crossings", icon="mdi:transit-transfer"))
    return dict(made)


class HassOutput(Output):
    """The state topics of the cameras it serves, published when they change; `announce` makes one."""

    takes_events = True  # the tracks that end with their source bring the counts back to 0

    def __init__(self, publisher: MqttPublisher, settings: MqttConfig, cameras: dict[int, Camera],
                 health: dict[int, Callable[[], SourceHealth | None]]):
        self.label = "home assistant discovery"
        self._publisher, self._cameras, self._health = publisher, cameras, health
        self._settings = settings
        self._topics = {i: state_topics(c, settings.prefix) for i, c in cameras.items()}
        # Per camera, from its events (also those of the tracks that end with their source, which no frame's
        # scene shows): label -> tracks in view, zone -> tracks inside, line -> crossings each way.
        self._tracks: dict[int, dict[str, set[int]]] = {i: {} for i in cameras}
        self._inside: dict[int, dict[str, set[int]]] = {i: {z: set() for z in c.zones} for i, c in cameras.items()}
        self._crossed: dict[int, dict[str, dict[str, int]]] = {
            i: {line: {"in": 0, "out": 0} for line in c.lines} for i, c in cameras.items()}
        self._last: dict[str, str] = {}  # topic -> what it holds now: only changes are published
        self._next_health = 0.0
        # Cameras found without their stream: a frame read before the loss, written after, does not say online.
        self._away: set[int] = set()

    @classmethod
    def announce(cls, publisher: MqttPublisher, settings: MqttConfig, cameras: dict[int, Camera],
                 health: dict[int, Callable[[], SourceHealth | None]]) -> HassOutput:
        """Clears what an earlier run announced and this one does not, publishes the configs and first states."""
        check_devices([c.name for c in cameras.values()])
        for camera in cameras.values():
            check_entities(camera)
        output = cls(publisher, settings, cameras, health)
        configs: dict[str, dict] = {}
        for camera in cameras.values():
            configs.update(discovery_configs(camera, settings.prefix, settings.discovery_prefix))
        ours = sorted(configs) + sorted(t for topics in output._topics.values() for t in topics.values())
        manifest = f"{settings.prefix}/discovery"
        known, before = publisher.read_retained(manifest, MANIFEST_WAIT_S)
        if known:
            for topic in _stale(before, set(ours), settings):
                publisher.publish_to(topic, "", retain=True)
        else:
            log.warning("mqtt.discovery: could not read %s from the broker; entities of sources no longer "
                        "configured are not cleared this time", manifest)
        for topic, payload in configs.items():
            publisher.publish_to(topic, json.dumps(payload, separators=(",", ":")), retain=True)
        if known:  # an unread record is kept: it still lists what an older run announced
            publisher.publish_to(manifest, json.dumps(ours), retain=True)
        for i in cameras:
            output._set(i, "state", "online")
            output._set(i, "available", "online")
            output._counts(i)
        log.info("mqtt.discovery: %d Home Assistant entities for %d camera(s) under %s/", len(configs), len(cameras),
                 settings.discovery_prefix)
        return output

    def add_camera(self, i: int, camera: Camera, health: Callable[[], SourceHealth | None]) -> None:
        """A camera added by a reload (its names checked with its plan): announced, and the record of what this
        run announced kept whole."""
        self._cameras[i], self._health[i] = camera, health
        self._topics[i] = state_topics(camera, self._settings.prefix)
        self._tracks[i] = {}
        self._inside[i] = {z: set() for z in camera.zones}
        self._crossed[i] = {line: {"in": 0, "out": 0} for line in camera.lines}
        for topic, payload in discovery_configs(camera, self._settings.prefix, self._settings.discovery_prefix).items():
            self._publisher.publish_to(topic, json.dumps(payload, separators=(",", ":")), retain=True)
        self._record()
        self._set(i, "state", "online")
        self._set(i, "available", "online")
        self._counts(i)

    def remove_camera(self, i: int) -> None:
        """A camera removed by a reload: its entities and their states cleared from the broker (Home Assistant
        drops the entities), and from the record of what this run announced."""
        camera = self._cameras.pop(i, None)
        if camera is None:
            return
        self._health.pop(i)
        self._away.discard(i)
        cleared = [*discovery_configs(camera, self._settings.prefix, self._settings.discovery_prefix),
                   *self._topics.pop(i).values()]
        for topic in cleared:
            self._last.pop(topic, None)
            self._publisher.publish_to(topic, "", retain=True)
        for held in (self._tracks, self._inside, self._crossed):
            held.pop(i)
        self._record()

    def _record(self) -> None:
        """What this run announces now, where the next run finds what to clear (see `announce`)."""
        prefix, discovery = self._settings.prefix, self._settings.discovery_prefix
        configs = {t for c in self._cameras.values() for t in discovery_configs(c, prefix, discovery)}
        ours = sorted(configs) + sorted(t for topics in self._topics.values() for t in topics.values())
        self._publisher.publish_to(f"{prefix}/discovery", json.dumps(ours), retain=True)

    def write(self, result: FrameResult) -> None:
        i = result.source_id
        if i not in self._cameras:
            return
        in_view, inside, crossed = self._tracks[i], self._inside[i], self._crossed[i]
        for event in result.events:
            if event.kind == "start":
                in_view.setdefault(event.label, set()).add(event.track)
            elif event.kind == "end":
                in_view.get(event.label, set()).discard(event.track)
            elif event.kind == "zone_enter" and event.zone in inside:
                inside[event.zone].add(event.track)
            elif event.kind == "zone_exit" and event.zone in inside:
                inside[event.zone].discard(event.track)
            elif event.kind == "line_cross" and event.line in crossed:
                crossed[event.line][event.direction] += 1
        if result.events:
            self._counts(i)
        self._check_health()
        if i not in self._away:
            self._set(i, "available", "online")
            self._set(i, "state", "online")

    def flush(self) -> None:
        self._check_health()  # the pipeline is idle: perhaps because a camera is away

    def close(self) -> None:
        """The run stops: every camera goes offline (before the publisher closes; the assembly joins it first)."""
        for i in self._cameras:
            self._set(i, "available", "offline")
            self._set(i, "state", "offline")

    def _counts(self, i: int) -> None:
        camera, in_view = self._cameras[i], self._tracks[i]
        for c in camera.classes:
            n = len(in_view.get(c, ()))
            self._set(i, f"{object_id(c)}_count", str(n))
            self._set(i, f"{object_id(c)}_occupied", "ON" if n else "OFF")
        for z, tracks in self._inside[i].items():
            self._set(i, f"zone_{object_id(z)}_count", str(len(tracks)))
        for line, ways in self._crossed[i].items():
            for way, n in ways.items():
                self._set(i, f"line_{object_id(line)}_{way}", str(n))

    def _check_health(self) -> None:
        now = time.monotonic()
        if now < self._next_health:
            return
        self._next_health = now + _HEALTH_EVERY_S
        for i, health in self._health.items():
            h = health()
            if h is not None and not h.connected:
                self._away.add(i)
                self._set(i, "available", "offline")
                self._set(i, "state", "offline")
            else:
                self._away.discard(i)  # its next frame says online

    def _set(self, i: int, key: str, value: str) -> None:
        topic = self._topics[i][key]
        if self._last.get(topic) != value:
            self._last[topic] = value
            self._publisher.publish_to(topic, value, retain=True)


def _stale(manifest: str | None, ours: set[str], settings: MqttConfig) -> list[str]:
    """Topics an earlier run announced that this one does not; only ours (a damaged record clears nothing else)."""
    try:
        before = json.loads(manifest) if manifest else []
    except ValueError:
        before = []
    if not isinstance(before, list):
        return []
    mine = (f"{settings.discovery_prefix}/sensor/streamdet_", f"{settings.discovery_prefix}/binary_sensor/streamdet_",
            f"{settings.prefix}/")
    return [t for t in before if isinstance(t, str) and t not in ours and t.startswith(mine) and "+" not in t
            and "#" not in t]
