"""Fetching a model by name from a real HTTP server on 127.0.0.1.

The official archive cannot be downloaded here, so the server serves a
tarball with the official layout holding the pedestrian graph, and the test
registers that tarball's size and SHA-384 in place of the published ones.
"""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import LoopbackHttpServer, free_port
from media import pedestrian_pb

from streamdet.model import fetch
from streamdet.errors import ModelError
from streamdet.model.detector import load

ARCHIVE = fetch.SSDLITE_MOBILENET_V2


def _tarball(extra: tarfile.TarInfo | None = None, extra_data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(pedestrian_pb(), arcname=ARCHIVE.graph)
        config = b"model { ssd { num_classes: 1 } }\n"
        info = tarfile.TarInfo("ssdlite_mobilenet_v2_coco_2018_05_09/pipeline.config")
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))
        if extra is not None:
            tar.addfile(extra, io.BytesIO(extra_data) if extra_data else None)
    return buf.getvalue()


class Server:
    """Serves files by path; `cut_after` bytes simulates a dropped connection."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.cut_after: int | None = None
        self._http = LoopbackHttpServer(self._serve)
        self.url = f"http://127.0.0.1:{self._http.port}"

    def _serve(self, request) -> None:
        self.requests.append(request.path)
        body = self.files.get(request.path)
        if body is None:
            request.send_error(404)
            return
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if self.cut_after is not None:
            request.wfile.write(body[: self.cut_after])
            request.wfile.flush()
            request.connection.close()
            return
        request.wfile.write(body)

    def close(self):
        self._http.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _register(monkeypatch, data: bytes, **changes) -> fetch.Archive:
    archive = replace(ARCHIVE, size=len(data), sha384=hashlib.sha384(data).hexdigest(), **changes)
    monkeypatch.setitem(fetch.KNOWN, ARCHIVE.name, archive)
    return archive


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()]


def test_fetch_by_name_verifies_converts_and_caches(server, tmp_path, monkeypatch):
    data = _tarball()
    server.files[f"/mirror/{ARCHIVE.file}"] = data
    _register(monkeypatch, data)
    detector = load("ssdlite_mobilenet_v2", cache_dir=tmp_path, base_url=server.url + "/mirror/")
    assert detector.form == "tf"
    assert len(server.requests) == 1
    load("ssdlite_mobilenet_v2", cache_dir=tmp_path, base_url=server.url + "/mirror/")
    assert len(server.requests) == 1, "the second start must come from the cache"
    assert not any(p.name.endswith(".tar.gz") for p in _leftovers(tmp_path))


@pytest.mark.unit
def test_base_url_from_environment(server, tmp_path, monkeypatch):
    data = _tarball()
    server.files[f"/env/{ARCHIVE.file}"] = data
    _register(monkeypatch, data)
    monkeypatch.setenv(fetch.BASE_URL_ENV, server.url + "/env")
    assert fetch.fetch_graph("ssdlite_mobilenet_v2", tmp_path).read_bytes() == pedestrian_pb().read_bytes()


@pytest.mark.unit
def test_fallback_to_second_url(server, tmp_path, monkeypatch):
    data = _tarball()
    server.files[f"/second/{ARCHIVE.file}"] = data
    archive = _register(monkeypatch, data, base_urls=(server.url + "/first/", server.url + "/second/"))
    graph = fetch.fetch_graph(archive.name, tmp_path)
    assert graph.read_bytes() == pedestrian_pb().read_bytes()
    assert server.requests == [f"/first/{ARCHIVE.file}", f"/second/{ARCHIVE.file}"]


@pytest.mark.unit
def test_checksum_mismatch_leaves_nothing(server, tmp_path, monkeypatch):
    data = _tarball()
    server.files[f"/{ARCHIVE.file}"] = data
    archive = _register(monkeypatch, data)
    monkeypatch.setitem(fetch.KNOWN, ARCHIVE.name, replace(archive, sha384="0" * 96))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load("ssdlite_mobilenet_v2", cache_dir=tmp_path, base_url=server.url)
    assert _leftovers(tmp_path) == []


@pytest.mark.unit
def test_connection_dropped_mid_file(server, tmp_path, monkeypatch):
    data = _tarball()
    server.files[f"/{ARCHIVE.file}"] = data
    _register(monkeypatch, data)
    server.cut_after = len(data) // 2
    with pytest.raises(ModelError, match="could not be downloaded") as err:
        fetch.fetch_graph(ARCHIVE.name, tmp_path, server.url)
    assert "check that the mirror" in str(err.value) and "connection cut" in str(err.value)
    assert _leftovers(tmp_path) == []
    server.cut_after = None  # the next run starts clean and succeeds
    assert fetch.fetch_graph(ARCHIVE.name, tmp_path, server.url).is_file()


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "device"])
def test_unsafe_archive_members_are_refused(kind, server, tmp_path, monkeypatch):
    if kind == "dotdot":
        info, body = tarfile.TarInfo("ssdlite_mobilenet_v2_coco_2018_05_09/../../evil.txt"), b"x"
    elif kind == "absolute":
        info, body = tarfile.TarInfo("/tmp/evil.txt"), b"x"
    elif kind == "symlink":
        info, body = tarfile.TarInfo("ssdlite_mobilenet_v2_coco_2018_05_09/link"), b""
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        info, body = tarfile.TarInfo("ssdlite_mobilenet_v2_coco_2018_05_09/dev"), b""
        info.type = tarfile.CHRTYPE
    info.size = len(body)
    data = _tarball(info, body)
    server.files[f"/{ARCHIVE.file}"] = data
    _register(monkeypatch, data)
    with pytest.raises(ModelError, match="refusing"):
        fetch.fetch_graph(ARCHIVE.name, tmp_path, server.url)
    assert _leftovers(tmp_path) == []
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.unit
def test_nothing_listening_says_how_to_work_offline(tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}/models/"
    monkeypatch.delenv(fetch.BASE_URL_ENV, raising=False)
    _register(monkeypatch, b"x", base_urls=(dead,))
    with pytest.raises(ModelError, match=r"could not be downloaded.*streamdet model convert.*set STREAMDET_MODEL_BASE_URL"):
        fetch.fetch_graph(ARCHIVE.name, tmp_path)


@pytest.mark.unit
@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_mirror_that_fails_is_named_not_advised_again(how, tmp_path, monkeypatch):
    mirror = f"http://127.0.0.1:{free_port()}/m"
    if how == "environment":
        monkeypatch.setenv(fetch.BASE_URL_ENV, mirror)
    with pytest.raises(ModelError) as info:
        fetch.fetch_graph(ARCHIVE.name, tmp_path, mirror if how == "argument" else None)
    message = str(info.value)
    name = "model.base_url" if how == "argument" else "STREAMDET_MODEL_BASE_URL"
    assert f"check that the mirror ({name} = {mirror}) is reachable and serves {ARCHIVE.file}" in message
    assert "set STREAMDET_MODEL_BASE_URL" not in message


@pytest.mark.unit
def test_a_mirror_that_accepts_and_never_answers_times_out_and_says_so(tmp_path, monkeypatch, caplog):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    monkeypatch.setattr(fetch, "TIMEOUT_S", 1)
    caplog.set_level(logging.INFO, logger="streamdet.fetch")
    mirror = f"http://127.0.0.1:{silent.getsockname()[1]}/m"
    t0 = time.monotonic()
    try:
        with pytest.raises(ModelError, match="no answer within 1 s"):
            fetch.fetch_graph(ARCHIVE.name, tmp_path, mirror)
    finally:
        silent.close()
    assert time.monotonic() - t0 < 5
    assert any(f"downloading {mirror}/{ARCHIVE.file} (waiting at most 1 s" in m for m in caplog.messages)
    assert _leftovers(tmp_path) == []


@pytest.mark.unit
def test_cli_fetch_refuses_a_file_that_is_not_the_published_one(server, tmp_path):
    from clirun import assert_one_line_error, cli_env, streamdet

    server.files[f"/m/{ARCHIVE.file}"] = b"a short page that is not the archive"
    proc = streamdet("model", "fetch", "--cache-dir", str(tmp_path), "--base-url", server.url + "/m", env=cli_env(tmp_path))
    assert_one_line_error(proc, f"{server.url}/m/{ARCHIVE.file}", f"expected {ARCHIVE.size}", "check that the mirror")
    assert _leftovers(tmp_path) == []


@pytest.mark.unit
def test_a_local_folder_works_as_the_mirror(tmp_path):
    data = _tarball()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / ARCHIVE.file).write_bytes(data)
    archive = replace(ARCHIVE, size=len(data), sha384=hashlib.sha384(data).hexdigest())
    graph = fetch.fetch_graph(archive.name, tmp_path / "cache", str(mirror), archive=archive)
    assert graph.read_bytes() == pedestrian_pb().read_bytes()
