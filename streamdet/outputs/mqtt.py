"""Events to an MQTT broker (paho-mqtt 2.x) without ever stalling the video pipeline.

paho's network thread (loop_start) does all socket work and reconnects with backoff.
While the broker is away, events wait in our own bounded deque (newest kept); paho's
own queue is bounded too, so a broker that is up but not reading cannot eat memory.
"""
from __future__ import annotations

import collections
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from ..config.mqtt import MqttConfig
from ..detections import FrameResult
from ..errors import StreamdetError
from ..urls import check_url, mask_url, scheme_of
from .base import Output

log = logging.getLogger("streamdet")

_KEEPALIVE = 30  # seconds; a silently dead broker is noticed after about 1.5x this
_INFLIGHT = 20   # paho's default in-flight window; its queue may hold one outbox beyond that
_CREDENTIALS = (134, 135)  # "Bad user name or password", "Not authorized" (v3 CONNACK 4 and 5)


class MqttError(StreamdetError):
    """A one-line, user-facing message that never contains the password."""


def _parse(s: MqttConfig) -> tuple[str, int, str | None, str | None, bool]:
    where = mask_url(s.url)
    # The scheme is not echoed: for "user:pass@host" urlsplit takes "user" as the scheme.
    if scheme_of(s.url) not in ("mqtt", "mqtts"):
        raise MqttError(f"mqtt: URL must start with mqtt:// or mqtts://, got {where}")
    try:
        check_url(s.url)  # host, port, brackets, and a password's raw / ? # @
    except ValueError as exc:
        raise MqttError(f"mqtt: {exc}") from None
    u = urlsplit(s.url)
    port = u.port
    if u.path not in ("", "/") or u.query or u.fragment:
        raise MqttError(f"mqtt: unexpected path in {where} (percent-encode '/', '?', '#' in a password)")
    user, password = (unquote(x) if x is not None else None for x in (u.username, u.password))
    return u.hostname, port or (8883 if u.scheme == "mqtts" else 1883), user, password, u.scheme == "mqtts"


def _unique_client_id() -> str:
    """streamdet-<host name>-<random>. Not the pid: in containers every streamdet is pid 1, and a broker
    drops the older connection of two with one id, so two of them would kick each other off for ever."""
    return f"streamdet-{socket.gethostname()[:40]}-{secrets.token_hex(4)}"


class MqttPublisher:
    """Connects with `start()`; `publish()` only ever queues; `close()` says offline and disconnects."""

    connect_timeout = 5.0  # seconds for the first connection at start

    def __init__(self, settings: MqttConfig):
        self._s, self._where = settings, mask_url(settings.url)
        self._host, self._port, user, password, tls = _parse(settings)
        self._avail = f"{settings.prefix}/available"
        self._lock = threading.Lock()  # a leaf lock: never held while calling into paho
        self._outbox: collections.deque[tuple[str, str, bool]] = collections.deque(maxlen=settings.outbox)
        # Topic -> its newest retained payload, sent again on every reconnect: a broker restarted without
        # persistence (mosquitto's default) has lost them. As many as the topics the run retains (a fixed set).
        self._retained: dict[str, str] = {}
        self._was_online = False
        self._online = False  # CONNACKed and the outbox flushed: publish() may go straight to paho
        self._dropped = self._sent = self._q0 = 0
        self._avail_mids: set[int] = set()  # availability acks are not events: not counted as sent
        self._lost_at: float | None = None
        self._refused: mqtt.ReasonCode | None = None
        self._first = threading.Event()
        self._started = self._closed = False
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=settings.client_id or _unique_client_id())
        if user is not None:
            c.username_pw_set(user, password)
        if tls:
            try:
                c.tls_set(ca_certs=settings.ca_file)
            except (OSError, ValueError) as e:
                raise MqttError(f"mqtt: cannot use CA file {settings.ca_file!r} ({e})") from None
        c.will_set(self._avail, "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=0.5, max_delay=10)
        c.max_queued_messages_set(settings.outbox + _INFLIGHT)  # counts QoS>0 only; QoS 0: _send
        c.connect_timeout = self.connect_timeout
        c.on_connect, c.on_disconnect, c.on_publish = self._on_connect, self._on_disconnect, self._on_publish
        self._client = c

    def __repr__(self) -> str:
        return f"<MqttPublisher {self._where} connected={self._online} sent={self._sent} dropped={self._dropped}>"

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def connected(self) -> bool:
        return self._online

    @property
    def queued(self) -> int:
        """Messages waiting in the outbox for the broker (it is bounded: past it the oldest are dropped)."""
        with self._lock:
            return len(self._outbox)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        s, c = self._s, self._client
        deadline = time.monotonic() + self.connect_timeout
        while True:  # the first TCP/TLS connect runs here so that a failure can say why
            try:  # one attempt may itself take connect_timeout (paho's socket timeout)
                c.connect(self._host, self._port, keepalive=_KEEPALIVE)
                err = None
            except OSError as e:
                err = e.strerror or str(e) or type(e).__name__
                if isinstance(e, ssl.SSLError):  # a bad certificate will not get better
                    break
            left = deadline - time.monotonic()
            if err is None or not s.required or left <= 0:
                break
            time.sleep(min(0.5, left))  # a broker that is still starting gets the whole timeout
        if err is None:
            c.loop_start()
            if self._first.wait(max(0.0, deadline - time.monotonic())) and self._refused is None:
                return
            r = self._refused
            err = (f"no answer to CONNECT within {self.connect_timeout:g} s" if r is None else
                   f"the broker refused the {'credentials' if r.value in _CREDENTIALS else 'connection'}: {r}")
        elif s.required:
            raise MqttError(f"mqtt: cannot reach {self._where} ({err}); "
                            "mqtt.required: false starts without it and keeps trying")
        else:
            c.connect_async(self._host, self._port, keepalive=_KEEPALIVE)
            c.loop_start()
        if s.required:
            self._stop()  # or paho would keep retrying behind the caller's back
            raise MqttError(f"mqtt: cannot connect to {self._where} ({err})")
        self._lost_at = time.monotonic()
        log.warning("mqtt: cannot connect to %s (%s); keeping up to %d events and retrying in the background",
                    self._where, err, s.outbox)

    def publish(self, source: str, event: dict) -> None:
        if self._closed:
            return
        # '+' or '#' in a topic makes paho raise, perhaps later on its own thread.
        topic = f"{self._s.prefix}/{source.replace('+', '_').replace('#', '_')}/events"
        self.publish_to(topic, json.dumps(event, separators=(",", ":"), default=str))

    def publish_to(self, topic: str, payload: str, retain: bool = False) -> None:
        """A message on any topic (no wildcards), through the same outbox and bounds as events."""
        if self._closed:
            return
        with self._lock:
            if retain:
                self._retained[topic] = payload
            if not self._online:  # also while on_connect is still flushing, to keep the order
                self._queue(topic, payload, retain)
                return
        self._send(topic, payload, retain)

    def _queue(self, topic: str, payload: str, retain: bool) -> None:  # caller holds the lock
        if len(self._outbox) == self._outbox.maxlen:
            self._dropped += 1
        self._outbox.append((topic, payload, retain))

    def _send(self, topic: str, payload: str, retain: bool = False) -> None:
        qos = self._s.qos
        if qos == 0:  # paho does not bound QoS 0 packets: count those it has not written yet
            with self._lock:
                full = self._q0 >= self._s.outbox + _INFLIGHT
                self._q0 += not full
                self._dropped += full
            if full:
                return
        rc = self._client.publish(topic, payload, qos=qos, retain=retain).rc
        if rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            with self._lock:
                self._dropped += 1
        elif rc == mqtt.MQTT_ERR_NO_CONN and qos == 0:  # paho keeps QoS>0 for resending, not QoS 0
            with self._lock:
                self._q0 -= 1
                self._queue(topic, payload, retain)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            if self._first.is_set() and self._refused != reason:
                log.warning("mqtt: %s refused the connection: %s; retrying", self._where, reason)
            self._refused = reason
            self._first.set()
            return
        self._refused = None
        info = client.publish(self._avail, "online", qos=1, retain=True)
        with self._lock:
            self._avail_mids.add(info.mid)  # before its ack: acks are handled on this thread
            self._q0 = 0  # paho forgot unwritten QoS 0 packets when it reconnected
            flushed, dropped = len(self._outbox), self._dropped
            again = list(self._retained.items()) if self._was_online else []
            self._was_online = True
        for topic, payload in again:  # before the outbox, which may hold newer values of the same topics
            self._send(topic, payload, retain=True)
        while True:  # one at a time, so publish() never waits for the whole flush
            with self._lock:
                if not self._outbox:
                    self._online = True
                    break
                topic, payload, retain = self._outbox.popleft()
            self._send(topic, payload, retain)
        if self._lost_at is None:
            log.info("mqtt: connected to %s", self._where)
        else:
            log.info("mqtt: connected to %s after %.1f s away; sent %d waiting events, %d dropped so far%s",
                     self._where, time.monotonic() - self._lost_at, flushed, dropped,
                     f"; {len(again)} retained messages sent again" if again else "")
        self._lost_at = None
        self._first.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        with self._lock:
            was, self._online = self._online, False
        if was and not self._closed:
            self._lost_at = time.monotonic()
            why = "" if reason.value == 128 else f" ({reason})"  # 128: "Unspecified error"
            log.warning("mqtt: lost connection to %s%s; keeping up to %d events and reconnecting",
                        self._where, why, self._s.outbox)

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self._lock:  # fine under paho's mutex: our lock is a leaf
            if mid in self._avail_mids:
                self._avail_mids.discard(mid)
                return
            if self._s.qos == 0:
                self._q0 = max(0, self._q0 - 1)
            self._sent += not reason.is_failure

    def read_retained(self, topic: str, timeout: float = 2.0) -> tuple[bool, str | None]:
        """What the broker keeps retained on `topic`: (True, payload or None for nothing), or (False, None) when
        that could not be learnt (not connected, no answer within `timeout`). Subscribes and at once unsubscribes:
        the broker sends the retained message before it handles the UNSUBSCRIBE, so the UNSUBACK is the end of it."""
        if not self._online:
            return False, None
        got: list[str] = []
        acked: set[int] = set()  # UNSUBACKs seen: one may come before unsubscribe() has returned its mid
        answered = threading.Condition()
        c = self._client

        def on_message(client, userdata, message) -> None:
            got.append(message.payload.decode("utf-8", "replace"))

        def on_unsubscribe(client, userdata, mid, reasons, properties) -> None:
            with answered:
                acked.add(mid)
                answered.notify()

        c.message_callback_add(topic, on_message)
        c.on_unsubscribe = on_unsubscribe
        try:
            if c.subscribe(topic, qos=1)[0] != mqtt.MQTT_ERR_SUCCESS:
                return False, None
            rc, mid = c.unsubscribe(topic)
            with answered:
                if rc != mqtt.MQTT_ERR_SUCCESS or not answered.wait_for(lambda: mid in acked, timeout):
                    return False, None
            return True, (got[-1] if got and got[-1] else None)
        finally:
            c.message_callback_remove(topic)
            c.on_unsubscribe = None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            online, lost = self._online, len(self._outbox)
        if online:
            info = self._client.publish(self._avail, "offline", qos=1, retain=True)
            with self._lock:
                self._avail_mids.add(info.mid)
            try:  # PUBACKs come in order, so this also waits for the events sent before
                info.wait_for_publish(2.0)
                acked = info.is_published()
            except (RuntimeError, ValueError):
                acked = False
            with self._lock:  # its ack may have beaten the add above and been counted as sent
                if acked and info.mid in self._avail_mids:
                    self._avail_mids.discard(info.mid)
                    self._sent -= 1
        elif lost:
            log.warning("mqtt: closing while %s is unreachable; %d waiting events discarded", self._where, lost)
        self._stop()

    def _stop(self) -> None:
        self._client.disconnect()  # a clean DISCONNECT: the broker drops the will
        self._client.loop_stop()
        with self._lock:
            self._online = False


class MqttOutput(Output):
    """Every event of its sources, published on `{prefix}/{source}/events`."""

    takes_events = True

    def __init__(self, publisher: MqttPublisher):
        self.publisher = publisher
        self.label = f"mqtt {publisher._where}"

    def write(self, result: FrameResult) -> None:
        for event in result.events:
            self.publisher.publish(result.source, event.to_dict())

    def close(self) -> None:
        self.publisher.close()
