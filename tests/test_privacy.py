"""streamdet sends nothing anywhere: converting a model leaves no telemetry id and opens no connection."""

from __future__ import annotations

import subprocess
import sys

import pytest

from media import pedestrian_pb

# Runs streamdet's CLI after installing an audit hook that writes down every
# network look-up and connection the process (and any process it forks) attempts,
# whatever library makes it.
WATCHED = """
import json, os, sys
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto", "http.client.connect"):
        # Written at once: telemetry is sent from forked processes, whose memory the parent never sees.
        with open(sys.argv[1], "a") as f:
            f.write(json.dumps([os.getpid(), event, repr(args)[:200]]) + "\\n")
sys.addaudithook(hook)
from streamdet.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("user", ["new", "opted_in"])
def test_converting_a_model_writes_no_telemetry_id_and_connects_nowhere(user, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
           "PATH": "/usr/bin:/bin", "STREAMDET_CACHE_DIR": str(tmp_path / "cache")}
    if user == "opted_in":
        # Someone who said yes to OpenVINO's telemetry, on a machine that says it is not CI: still nothing is sent.
        (home / "intel").mkdir()
        (home / "intel" / "openvino_telemetry").write_text("1")
        env["CI"] = "false"
    before = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    calls_file, out = tmp_path / "calls.jsonl", tmp_path / "model.xml"
    proc = subprocess.run([sys.executable, "-c", WATCHED, str(calls_file), "model", "convert", str(pedestrian_pb()),
                           "-o", str(out)], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.with_suffix(".bin").is_file()
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    assert calls == [], "network calls were attempted"
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == before, "files were written to the home folder"
