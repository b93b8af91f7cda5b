"""HTTPS for the web view (web.tls_cert, web.tls_key) with a certificate openssl makes in the test: the page,
JSON and an MJPEG stream over TLS to a client trusting just that certificate; plain HTTP to the HTTPS port
turned away without harm; a certificate that is missing or not the key's refused at start in one line;
and the rule that logins are not sent in clear beyond loopback.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import fed, free_port, wait_for
from media import clip
from test_web_server import TOKEN, _result, _status

from streamdet.config.sections import WebConfig
from streamdet.errors import ConfigError
from streamdet.web import WebView, bind_listener
from streamdet.web.listener import link_url
from streamdet.web.tls import HANDSHAKE_S, server_context


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as docs/service.md says to make one."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return _certificate(tmp_path_factory.mktemp("tls"), "site")


@pytest.fixture
def served(pair):
    cert, key = pair
    web = WebConfig(listen="127.0.0.1:0", tls_cert=str(cert), tls_key=str(key))
    view = WebView(bind_listener(web), web, ["door"], _status({"door": "online"}), None, tls=server_context(web))
    client = ssl.create_default_context(cafile=str(cert))  # trusts this certificate and nothing else
    yield view, client
    view.close()


def _get(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        return response.status, response.read()


@pytest.mark.unit
def test_the_page_and_json_over_https_and_plain_http_turned_away_harmlessly(served, caplog):
    view, client = served
    url = view.server.url
    assert url.startswith("https://127.0.0.1:")
    code, body = _get(url, client)
    assert code == 200 and b"<title>streamdet</title>" in body
    code, body = _get(url + "api/stats", client)
    assert code == 200 and json.loads(body)["sources"][0]["name"] == "door"
    caplog.set_level(logging.DEBUG, logger="streamdet")
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    plain = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        plain.append(sock)
    for sock in plain:  # closed by the server at once: no answer in clear, no wait for a handshake
        assert b"HTTP/1.1" not in _until_closed(sock)
    assert _get(url + "healthz", client)[0] == 200  # the server goes on
    # Their places come back once the handshake's time is up (asyncio tells the protocol nothing of them).
    wait_for(lambda: view.server.connections == 0, HANDSHAKE_S + 5, "the plain connections' places back")
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG or r.exc_info], caplog.text
    assert caplog.text.count("TLS handshake") == 3 and "Traceback" not in caplog.text  # one debug line each
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # nor fools one that does not trust it
        _get(url, ssl.create_default_context())


def _until_closed(sock: socket.socket) -> bytes:
    """What the server sent before closing the connection (a TLS alert at most); fails if it never closes."""
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return got


@pytest.mark.unit
def test_an_mjpeg_stream_over_https(served):
    view, client = served
    host, port = "127.0.0.1", int(view.server.url.rsplit(":", 1)[1].rstrip("/"))
    raw = socket.create_connection((host, port), timeout=10)
    sock = client.wrap_socket(raw, server_hostname=host)
    assert sock.version() in ("TLSv1.2", "TLSv1.3")
    sock.sendall(b"GET /stream/door.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = bytearray()
    try:
        with fed(lambda i: view.write(_result(0, i)), 0.02):  # a 50 fps source
            deadline = time.monotonic() + 20
            while data.count(b"Content-Type: image/jpeg") < 5 and time.monotonic() < deadline:
                data += sock.recv(65536)
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 200") and b"multipart/x-mixed-replace" in data.split(b"\r\n\r\n")[0]
    assert data.count(b"Content-Type: image/jpeg") >= 5 and data.count(b"\xff\xd8") >= 5


@pytest.mark.unit
def test_links_say_https_and_tls_1_2_is_the_least(pair):
    cert, key = pair
    web = WebConfig(listen="localhost:0", tls_cert=str(cert), tls_key=str(key))
    sock = bind_listener(web)
    try:
        assert link_url(web, sock) == f"https://localhost:{sock.getsockname()[1]}/"
    finally:
        sock.close()
    assert server_context(web).minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.unit
def test_missing_unreadable_foreign_and_mismatched_files_are_one_line_each(pair, tmp_path):
    cert, key = pair
    _, other_key = _certificate(tmp_path, "other")
    cases = [
        ({"tls_cert": str(tmp_path / "none.crt"), "tls_key": str(key)}, "web.tls_cert '%s': no such file"
         % (tmp_path / "none.crt")),
        ({"tls_cert": str(cert), "tls_key": str(cert)}, "holds no PEM private key"),
        ({"tls_cert": str(key), "tls_key": str(key)}, "holds no PEM certificate"),
        ({"tls_cert": str(cert), "tls_key": str(other_key)}, "is not the key of web.tls_cert"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigError) as caught:
            server_context(WebConfig(listen="127.0.0.1:0", **settings))
        assert message in str(caught.value) and "\n" not in str(caught.value)
    locked = tmp_path / "locked.key"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-out", str(locked), "-aes256", "-passout", "pass:secret1"],
                   check=True, capture_output=True, timeout=30)
    with pytest.raises(ConfigError, match="protected by a passphrase"):
        server_context(WebConfig(listen="127.0.0.1:0", tls_cert=str(cert), tls_key=str(locked)))


@pytest.mark.unit
@pytest.mark.parametrize("which, fragments", [
    ("mismatch", ["web.tls_key", "is not the key of web.tls_cert"]),
    ("missing", ["web.tls_cert", "no such file"]),
])
def test_a_run_with_a_bad_certificate_stops_at_start_in_one_line(pair, tmp_path, model_cache, which, fragments):
    cert, key = pair
    if which == "mismatch":
        key = _certificate(tmp_path, "other")[1]
    else:
        cert = tmp_path / "gone.crt"
    (tmp_path / "settings.yaml").write_text(f"web: {{tls_cert: '{cert}', tls_key: '{key}'}}\n")
    started = time.monotonic()
    proc = streamdet("run", "--config", "settings.yaml", "--source", str(clip("carphone_pristine")),
                     "--serve", str(free_port()), env=cli_env(model_cache), cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert time.monotonic() - started < 10  # before the sources open and the model loads


@pytest.mark.unit
def test_logins_beyond_loopback_need_tls_or_an_explicit_allow_insecure(pair):
    cert, key = map(str, pair)
    with pytest.raises(ValueError, match="passwords would travel in clear"):
        WebConfig(listen="0.0.0.0:8080", token=TOKEN, users="users.yaml")
    WebConfig(listen="0.0.0.0:8080", token=TOKEN, users="users.yaml", tls_cert=cert, tls_key=key)
    WebConfig(listen="0.0.0.0:8080", token=TOKEN, users="users.yaml", allow_insecure=True)  # a TLS proxy in front
    WebConfig(listen="127.0.0.1:8080", users="users.yaml")  # loopback: nothing travels
    WebConfig(listen="0.0.0.0:8080", token=TOKEN)  # no logins: the token rule alone
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        WebConfig(listen="127.0.0.1:8080", tls_cert=cert)
