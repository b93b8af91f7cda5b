"""The users file and `streamdet user add|remove|passwd`: through the real command (in-process, the password on
stdin as a script gives it), the file it writes (JSON, mode 0600, scrypt hashes) and its one-line refusals."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from clirun import ENTRY_POINT, streamdet

from streamdet.config.users import check_password, hash_password, load_users
from streamdet.config.web import WebConfig
from streamdet.errors import ConfigError

PASSWORD = "correct horse battery"


def _user(*args: str, password: str | None = PASSWORD, monkeypatch, cwd=None) -> subprocess.CompletedProcess:
    monkeypatch.setattr(sys, "stdin", io.StringIO("" if password is None else password + "\n"))
    return streamdet("user", *args, env={}, cwd=cwd)


@pytest.mark.unit
def test_add_passwd_remove_write_the_file_with_hashes_and_mode_0600(tmp_path, monkeypatch):
    users = tmp_path / "users.json"
    done = _user("add", "alice", "--role", "admin", "--file", str(users), monkeypatch=monkeypatch)
    assert done.returncode == 0, done.stderr
    assert "added alice (admin, every camera)" in done.stderr
    assert stat.S_IMODE(os.stat(users).st_mode) == 0o600
    done = _user("add", "vera", "--cameras", "door, porch", "--file", str(users), monkeypatch=monkeypatch)
    assert done.returncode == 0 and "viewer, cameras: door, porch" in done.stderr
    text = users.read_text()
    assert PASSWORD not in text
    saved = json.loads(text)["users"]
    assert saved["vera"]["role"] == "viewer" and saved["vera"]["cameras"] == ["door", "porch"]
    assert "cameras" not in saved["alice"]
    first = saved["alice"]["hash"]
    assert first.startswith("scrypt$16384$8$1$") and check_password(PASSWORD, first)
    assert not check_password(PASSWORD + "x", first)

    done = _user("passwd", "alice", "--file", str(users), password="another password", monkeypatch=monkeypatch)
    assert done.returncode == 0, done.stderr
    changed = load_users(users)["alice"]
    assert changed.role == "admin" and changed.hash != first and check_password("another password", changed.hash)
    assert stat.S_IMODE(os.stat(users).st_mode) == 0o600

    done = _user("remove", "vera", "--file", str(users), password=None, monkeypatch=monkeypatch)
    assert done.returncode == 0 and set(load_users(users)) == {"alice"}
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]  # no temporary file left behind


@pytest.mark.unit
@pytest.mark.parametrize("args, password, message", [
    (("add", "bob"), "", "user: the password is empty; nothing changed"),
    (("add", "bob"), "short", "user: the password has 5 characters; give at least 8; nothing changed"),
    (("add", "alice"), PASSWORD, "user 'alice' is in "),
    (("remove", "carol"), None, "no user 'carol' in "),
    (("passwd", "carol"), PASSWORD, "no user 'carol' in "),
    (("add", "bad name"), PASSWORD, "user: user name 'bad name': use 1 to 64 letters, digits and . _ @ -"),
    (("add", "root", "--role", "admin", "--cameras", "door"), PASSWORD,
     "user: user root: an admin sees every camera; give cameras to a viewer only"),
    (("passwd", "alice", "--role", "viewer"), PASSWORD, "user passwd: --role and --cameras are for add"),
])
def test_refusals_are_one_line_and_change_nothing(tmp_path, monkeypatch, args, password, message):
    users = tmp_path / "users.json"
    assert _user("add", "alice", "--role", "admin", "--file", str(users), monkeypatch=monkeypatch).returncode == 0
    before = users.read_bytes()
    done = _user(*args, "--file", str(users), password=password, monkeypatch=monkeypatch)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert users.read_bytes() == before


@pytest.mark.unit
def test_the_file_comes_from_the_config_and_a_missing_one_is_named(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("web:\n  users: site-users.json\n")
    done = _user("add", "alice", "--role", "admin", monkeypatch=monkeypatch, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert set(load_users(tmp_path / "site-users.json")) == {"alice"}
    (tmp_path / "config.yaml").write_text("web:\n  listen: '8080'\n")
    done = _user("add", "bob", monkeypatch=monkeypatch, cwd=tmp_path)
    assert done.returncode == 2 and "no users file: give --file PATH, or set web.users" in done.stderr
    with pytest.raises(ConfigError, match=r"users file 'nowhere.json' \(web.users\): no such file; create it with: "
                                          r"streamdet user add NAME --role admin --file nowhere.json"):
        load_users("nowhere.json")


@pytest.mark.unit
@pytest.mark.parametrize("text, message", [
    ("{", "line 1: not valid JSON"),
    ('{"people": {}}', 'give {"users": {NAME'),
    ('{"users": {"x": {"role": "boss", "hash": "scrypt$"}}}', "role 'boss' is not one of admin, viewer"),
    ('{"users": {"x": {"role": "viewer"}}}', "user x: no password hash (set one with streamdet user passwd x)"),
    ('{"users": {"x": {"role": "viewer", "hash": "scrypt$", "password": "p"}}}', "give role, hash and optionally"),
])
def test_a_broken_users_file_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "users.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"users file '{path}'") as raised:
        load_users(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.unit
def test_a_real_process_reads_the_password_from_a_pipe(tmp_path):
    users = tmp_path / "users.json"
    done = subprocess.run([str(ENTRY_POINT), "user", "add", "alice", "--role", "admin", "--file", str(users)],
                          input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert check_password(PASSWORD, load_users(users)["alice"].hash)
    done = subprocess.run([str(ENTRY_POINT), "user", "--help"], capture_output=True, text=True, timeout=60)
    assert "--password" not in done.stdout and "without echo" in done.stdout and "mode 0600" in done.stdout


@pytest.mark.unit
def test_the_check_takes_as_long_for_any_wrong_password_and_the_cost_is_stated():
    stored = hash_password(PASSWORD)
    t0 = time.perf_counter()
    assert check_password(PASSWORD, stored)
    cost = time.perf_counter() - t0
    assert 0.005 < cost < 5  # scrypt N=2**14: tens of milliseconds here, never nothing
    assert not check_password("", stored) and not check_password(PASSWORD, "scrypt$broken")


@pytest.mark.unit
def test_users_guard_a_listener_beyond_loopback_and_the_settings_are_checked():
    WebConfig(listen="0.0.0.0:8080", users="users.json", tls_cert="cert.pem", tls_key="key.pem")
    WebConfig(listen="0.0.0.0:8080", users="users.json", allow_insecure=True)  # a TLS proxy in front
    with pytest.raises(ValueError, match="set web.token \\(or STREAMDET_WEB_TOKEN\\) or web.users \\(logins\\)"):
        WebConfig(listen="0.0.0.0:8080")
    with pytest.raises(ValueError, match="session_idle must be a positive number of minutes"):
        WebConfig(session_idle=0)
    with pytest.raises(ValueError, match="metrics_token .* must be at least 8 characters"):
        WebConfig(listen="8080", metrics_token="short")


@pytest.mark.unit
def test_a_run_with_a_missing_users_file_stops_before_any_camera_opens(tmp_path):
    from media import clip

    config = tmp_path / "site.yaml"
    config.write_text(f"web:\n  users: {tmp_path / 'users.json'}\n")
    done = streamdet("run", "--config", str(config), "--source", str(clip("carphone_pristine")),
                     "--serve", "127.0.0.1:0", "--no-show", env={})
    assert done.returncode == 2
    assert done.stderr == (f"streamdet: error: users file '{tmp_path / 'users.json'}' (web.users): no such file; "
                           f"create it with: streamdet user add NAME --role admin --file {tmp_path / 'users.json'}\n")
