"""A real MQTT broker for the tests: Debian's mosquitto on 127.0.0.1 (tests/apt-packages.txt), and a subscriber."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from helpers import free_port, wait_for

AUTH_USER, AUTH_PW = "user", "hunter2-R1ght"


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Broker:
    def __init__(self, workdir: Path, port: int | None = None, auth: bool = False, persist: bool = False,
                 tls: bool = False):
        self.dir, self.port, self.proc = workdir, port or free_port(), None
        lines = [f"listener {self.port} 127.0.0.1", "user root", "log_dest stderr"]
        if tls:  # files made by the tls_files fixture
            lines += [f"cafile {workdir}/ca.pem", f"certfile {workdir}/server.pem", f"keyfile {workdir}/server.key"]
        if auth:
            pw = workdir / "passwd"
            subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), AUTH_USER, AUTH_PW], check=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        if persist:  # saved only on SIGUSR1 or exit (autosave_interval 0)
            lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 0"]
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = workdir / f"mosquitto-{self.port}.log"

    def start(self) -> "Broker":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=out, stderr=out)
        wait_for(lambda: self.proc.poll() is not None or port_open(self.port), 10, "mosquitto to listen")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        wait_for(lambda: self.proc.poll() is not None, 10, "mosquitto to die")

    def save_db(self) -> None:
        db = self.dir / "mosquitto.db"
        self.proc.send_signal(signal.SIGUSR1)
        wait_for(db.exists, 10, "mosquitto.db")  # written to .new then renamed: complete once there

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Subscriber:
    """A paho client on streamdet/#, collecting (topic, payload, retain)."""

    def __init__(self, port, client_id=None, clean=True, user=None, password=None):
        self.msgs: list[tuple[str, str, bool]] = []
        self.subscribed = threading.Event()
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=client_id or f"test-sub-{uuid.uuid4().hex[:8]}", clean_session=clean)
        if user:
            c.username_pw_set(user, password)
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe("streamdet/#", qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = lambda cl, ud, m: self.msgs.append((m.topic, m.payload.decode(), bool(m.retain)))
        c.reconnect_delay_set(0.1, 0.5)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        wait_for(self.subscribed.is_set, 10, "SUBACK")

    def events(self, source="door"):
        return [json.loads(p) for t, p, _ in list(self.msgs) if t == f"streamdet/{source}/events"]

    def avail(self):
        return [(p, r) for t, p, r in list(self.msgs) if t == "streamdet/available"]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
