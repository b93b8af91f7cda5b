"""Inference on a real KServe v2 gRPC server on loopback (issue #14).

The server is KServe's own Python model server code (the `kserve` package: its
v2 InferenceServicer and DataPlane) serving the pedestrian SSDLite IR that
`streamdet model export-server` writes, compiled by OpenVINO on the CPU as
OpenVINO Model Server compiles what it serves (tests/kserve_server.py).
OVMS itself does not install from PyPI; of the two real servers that do,
kserve installs beside streamdet's own pins (numpy 2, openvino 2026), while
nvidia-pytriton pins numpy below 2 and would need a second environment. Its
servicer also hands the model the request's gRPC metadata, and its gRPC
server can be wired here to loopback only, with TLS and a token check.

Each server is a subprocess on a free loopback port, waited for by polling
its health (server live, model ready), and killed and restarted on the same
port for the outage test.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clirun import assert_one_line_error, cli_env, streamdet
from helpers import MjpegCamera, decode, free_port, read_jsonl, run_alongside, wait_for, write_clip
from media import clip

from streamdet.bench.remote import run_remote_bench
from streamdet.config.sections import Config
from streamdet.model.export import export_server
from streamdet.model.detector import load
from streamdet.pipeline import Pipeline
from streamdet.model.readout import TF_COUNT, TF_OUTPUTS
from streamdet.detections import iou

TF_ROLES = (*TF_OUTPUTS, TF_COUNT)

SERVER_SCRIPT = Path(__file__).parent / "kserve_server.py"
TOKEN = "s3cret-Token-0f-the-test"


class Server:
    """tests/kserve_server.py as a subprocess; `start` returns once its health says the models are ready."""

    def __init__(self, models: dict[str, Path], tls: tuple[Path, Path] | None = None, token: str | None = None):
        self.models, self.tls, self.token = models, tls, token
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.url = f"{'grpcs' if tls else 'grpc'}://127.0.0.1:{self.port}"

    def start(self) -> float:
        args = [sys.executable, str(SERVER_SCRIPT), "--port", str(self.port)]
        for name, xml in self.models.items():
            args += ["--model", f"{name}={xml}"]
        if self.tls:
            args += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        if self.token:
            args += ["--token", self.token]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(self._ready, 60, f"the KServe server on port {self.port}", poll=0.1)
        return time.monotonic()

    def _ready(self) -> bool:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        if self.proc.poll() is not None:
            raise AssertionError(f"the KServe server exited: {self.proc.stderr.read()}")
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.port}", ssl=bool(self.tls),
                                                  root_certificates=str(self.tls[0]) if self.tls else None)
        headers = {"authorization": f"Bearer {self.token}"} if self.token else None
        try:
            return client.is_server_live(headers=headers, client_timeout=1) and all(
                client.is_model_ready(name, headers=headers, client_timeout=1) for name in self.models)
        except InferenceServerException:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: its connections stay open and nothing answers, as with a hung server."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> float:
        self.proc.send_signal(signal.SIGCONT)
        return time.monotonic()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if self.proc is not None:
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def repository(tmp_path_factory, pedestrian_xml) -> Path:
    """A model repository as OVMS reads it: ped/1/model.xml from export-server, and an unrelated classifier."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    root = tmp_path_factory.mktemp("models")
    export_server(str(pedestrian_xml), root, "ped")
    # The TF Object Detection API graph as Triton's TF backend serves it: input image_tensor (u8 RGB), outputs by
    # their TF names, and none of streamdet's preprocessing.
    plain = ov.Core().read_model(pedestrian_xml)
    roles = {port.get_node().get_friendly_name(): next(n.split(":")[0] for n in sorted(port.get_names())
                                                       if n.split(":")[0] in TF_ROLES) for port in plain.outputs}
    for op in plain.get_ops():  # only the input and the outputs keep names (see streamdet.export)
        for port in op.outputs():
            port.get_tensor().set_names(set())
    plain.inputs[0].get_tensor().set_names({"image_tensor"})
    for port in plain.outputs:
        port.get_tensor().set_names({roles[port.get_node().get_friendly_name()]})
    ov.save_model(plain, str(root / "plain" / "1" / "model.xml"), compress_to_fp16=False)
    image = ops.parameter([1, 3, 224, 224], np.float32, name="pixels")
    logits = ops.reduce_mean(image, ops.constant(np.array([2, 3], np.int64)), False)
    logits.output(0).set_names({"logits"})
    (root / "classifier" / "1").mkdir(parents=True)
    ov.save_model(ov.Model([ops.result(logits)], [image], "classifier"), str(root / "classifier" / "1" / "model.xml"))
    return root


@pytest.fixture(scope="module")
def server(repository):
    server = Server({"ped": repository / "ped/1/model.xml", "classifier": repository / "classifier/1/model.xml",
                     "plain": repository / "plain/1/model.xml"})
    server.start()
    yield server
    server.stop()


def _config(server_url: str, *sources: str) -> Config:
    config = Config()
    config.sources = list(sources)
    config.inference.server = server_url
    config.inference.server_model = "ped"
    config.display.show = "no"
    config.logging.quiet = True
    return config


def _boxes(results) -> dict[tuple[str, int], list]:
    return {(r.source, r.frame.index): (r.detections.class_ids.tolist(), r.detections.xyxy, r.detections.scores)
            for r in results}


def test_detections_through_the_server_equal_local_inference(tmp_path, server, pedestrian_xml):
    """Two real clips (one man in a car; the first 60 frames of cyclists) through the server and locally:
    the same boxes, classes and counts on every frame."""
    bikes = write_clip(decode(clip("bikes"), 60), tmp_path / "bikes60.mp4")
    sources = (str(clip("carphone_pristine")), str(bikes))
    config = _config(server.url, *sources)
    config.detect.threshold = 0.3
    with Pipeline(config) as pipeline:
        assert pipeline.detector is None  # nothing local was loaded
        remote = _boxes(list(pipeline.results()))
    with Pipeline(config, detector=load(pedestrian_xml, threshold=0.3)) as pipeline:
        local = _boxes(list(pipeline.results()))
    assert len(remote) == len(local) == 180
    boxes = 0
    for key, (classes, xyxy, scores) in local.items():
        r_classes, r_xyxy, r_scores = remote[key]
        assert r_classes == classes, key
        assert abs(r_xyxy - xyxy).max(initial=0) < 0.5 and abs(r_scores - scores).max(initial=0) < 1e-3, key
        boxes += len(classes)
    assert boxes > 100  # the comparison covered real detections (131 here), not empty frames


def test_a_served_tf_graph_gets_rgb_frames(server, pedestrian_xml, caplog):
    """The plain TF OD API graph (input image_tensor, RGB) on the server: frames go as RGB, so its detections
    are local inference's (fed BGR, they agreed on 0.23 of the detections)."""
    config = _config(server.url, str(clip("carphone_pristine")))
    config.inference.server_model = "plain"
    config.detect.threshold = 0.3
    with caplog.at_level(logging.INFO, logger="streamdet"):
        with Pipeline(config) as pipeline:
            remote = _boxes(list(pipeline.results()))
    assert any("input image_tensor" in r.getMessage() and "sending RGB" in r.getMessage() for r in caplog.records)
    with Pipeline(config, detector=load(pedestrian_xml, threshold=0.3)) as pipeline:
        local = _boxes(list(pipeline.results()))
    agreeing = total = 0
    for key, (classes, xyxy, scores) in local.items():
        r_classes, r_xyxy, r_scores = remote[key]
        overlap = iou(xyxy, r_xyxy) if len(classes) and len(r_classes) else np.zeros((len(classes), len(r_classes)))
        for i in range(len(classes)):
            j = int(np.argmax(overlap[i])) if overlap.shape[1] else -1
            agreeing += j >= 0 and overlap[i, j] >= 0.9 and r_classes[j] == classes[i] and abs(r_scores[j] - scores[i]) < 0.05
        total += max(len(classes), len(r_classes))
    assert total > 100 and agreeing / total >= 0.98, (agreeing, total)


@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_server_killed_or_frozen_and_back_mid_run(outage, server, capsys, caplog):
    """A camera (MJPEG, 25 fps) and a looping file through the server; the server is killed and started
    again on its port, or frozen (SIGSTOP: connections stay open, nothing answers, so only the request
    timeout can tell) and thawed. The run survives and recovers on its own; the camera's frames during the
    outage are dropped and counted (read == processed + dropped), the file loses none (every frame, in
    order, none twice, although a thawed server answers requests that were already given up on)."""
    camera = MjpegCamera(fps=25)
    config = _config(server.url, str(clip("carphone_pristine")), f"http://127.0.0.1:{camera.port}/video.mjpg")
    config.source.loop = True
    config.inference.server_timeout = 1.0
    seen: dict[int, list[tuple[int, float]]] = {0: [], 1: []}
    marks: dict[str, float] = {}
    try:
        with Pipeline(config) as pipeline:
            def chaos(pipeline):
                wait_for(lambda: min(len(v) for v in seen.values()) >= 20, 60, "results before the outage")
                (server.kill if outage == "killed" else server.freeze)()
                marks["down"] = time.monotonic()
                dropped = pipeline.status().sources[1].dropped
                # Frozen: two seconds of camera frames, so the 1 s request timeout has certainly passed.
                lost = 25 if outage == "killed" else 50
                wait_for(lambda: pipeline.status().sources[1].dropped >= dropped + lost, 30, "camera frames dropped")
                marks["done before restart"] = sum(len(v) for v in seen.values())
                marks["up"] = (server.start if outage == "killed" else server.thaw)()
                wait_for(lambda: any(t > marks["up"] for v in seen.values() for _, t in v), 30, "a result after")
                marks["first"] = min(t for v in seen.values() for _, t in v if t > marks["up"])
                counts = {k: len(v) for k, v in seen.items()}
                wait_for(lambda: all(len(seen[k]) >= counts[k] + 20 for k in seen), 60, "results after the restart")

            run_alongside(pipeline, chaos, on_result=lambda r: seen[r.source_id].append((r.frame.index,
                                                                                         time.monotonic())))
            summary = pipeline.summary()
    finally:
        camera.close()
        if outage == "frozen":
            server.thaw()  # never leave the module's server stopped
    file, cam = summary.sources
    assert file.frames_read == file.frames_processed and file.frames_dropped == 0
    assert [i for i, _ in seen[0]] == list(range(len(seen[0]))), "a file frame was lost or repeated"
    assert cam.frames_read == cam.frames_processed + cam.frames_dropped and cam.frames_dropped >= 25
    recovery = marks["first"] - marks["up"]
    with capsys.disabled():
        print(f"\n  server {outage}, back -> first result: {recovery * 1000:.0f} ms; outage "
              f"{marks['up'] - marks['down']:.1f} s; camera dropped {cam.frames_dropped} of {cam.frames_read}")
    assert recovery < 5.0
    # Noticed as what it is (a refused connection, or a request past inference.server_timeout), and named.
    said = [r.getMessage() for r in caplog.records if r.name.startswith("streamdet")]
    away = [line for line in said if "unreachable" in line]
    assert away and server.url in away[0], said
    assert ("DEADLINE_EXCEEDED" if outage == "frozen" else "UNAVAILABLE") in away[0], away[0]
    assert any("is back after" in line for line in said), said


def test_bad_server_settings_are_one_line_errors_without_a_local_model(tmp_path, server):
    """A wrong model name, a model of neither form, nothing listening: one line each, at once, and the
    local model (the default ssdlite_mobilenet_v2) is neither downloaded nor converted."""
    cache = tmp_path / "cache"
    source = str(clip("carphone_pristine"))
    cases = [
        (("--server", server.url, "--server-model", "nope"), ("model 'nope'", "--server-model", server.url)),
        (("--server", server.url, "--server-model", "classifier"),
         ("model 'classifier'", "logits", "not an SSD detector's", "export-server")),
        (("--server", f"grpc://127.0.0.1:{free_port()}"), ("not reachable", "127.0.0.1")),
        (("--server", "http://127.0.0.1:9000"), ("grpc://HOST:PORT",)),
    ]
    for args, fragments in cases:
        t0 = time.monotonic()
        proc = streamdet("run", "--source", source, *args, "--no-show", env=cli_env(cache), timeout=60)
        assert_one_line_error(proc, *fragments)
        assert time.monotonic() - t0 < 10, args
    assert not cache.exists() or not any(cache.rglob("*.xml")), "a remote run loaded a local model"


def test_export_server_refuses_to_replace_a_version(repository, model_cache, pedestrian_xml):
    """The server's model is an output like any other: an existing version is kept unless --overwrite."""
    xml = repository / "ped/1/model.xml"
    before = xml.read_bytes(), xml.with_suffix(".bin").read_bytes()
    proc = streamdet("model", "export-server", str(pedestrian_xml), "-o", str(repository), "--name", "ped",
                     env=cli_env(model_cache))
    assert_one_line_error(proc, str(xml), "--overwrite")
    assert (xml.read_bytes(), xml.with_suffix(".bin").read_bytes()) == before


def test_two_capture_nodes_share_one_server(tmp_path, server, model_cache):
    """Two streamdet processes send their frames to one server at once; both complete every frame."""
    env = cli_env(model_cache)
    procs = [subprocess.Popen([sys.executable, "-m", "streamdet", "run", "--server", server.url, "--server-model",
                               "ped", "--source", str(clip("carphone_pristine")),
                               "--json", str(tmp_path / f"{i}.jsonl"),
                               "--no-show"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    for i in range(2):
        records = read_jsonl(tmp_path / f"{i}.jsonl")
        assert [r["frame"] for r in records] == list(range(120))
        assert sum(len(r["detections"]) for r in records) >= 100


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_tls_and_bearer_token(tmp_path, repository, model_cache):
    """A grpcs:// server that wants a bearer token: with its CA and the token (from STREAMDET_SERVER_TOKEN) the
    run completes and the token is printed nowhere; with another CA, or without the token, one line each."""
    cert, key = _certificate(tmp_path, "server")
    other_ca, _ = _certificate(tmp_path, "other")
    server = Server({"ped": repository / "ped/1/model.xml"}, tls=(cert, key), token=TOKEN)
    server.start()
    try:
        source = str(clip("carphone_pristine"))

        def run(ca: Path, **env: str) -> subprocess.CompletedProcess:
            config = tmp_path / "site.yaml"
            config.write_text(f"inference:\n  server: {server.url}\n  server_model: ped\n  server_ca: {ca}\n")
            return streamdet("run", "--config", str(config), "--source", source, "--json", str(tmp_path / "out.jsonl"),
                             "--overwrite", "--no-show", "--log-level", "debug", env=cli_env(model_cache, **env))

        good = run(cert, STREAMDET_SERVER_TOKEN=TOKEN)
        assert good.returncode == 0, good.stderr
        assert len(read_jsonl(tmp_path / "out.jsonl")) == 120
        assert TOKEN not in good.stderr + good.stdout
        wrong_ca = run(other_ca, STREAMDET_SERVER_TOKEN=TOKEN)
        assert_one_line_error(wrong_ca, "not reachable", server.url, "server_ca")
        assert "CERTIFICATE_VERIFY_FAILED" in wrong_ca.stderr or "handshake" in wrong_ca.stderr.lower()
        no_token = run(cert)
        assert_one_line_error(no_token, "UNAUTHENTICATED", "server_token")
        for proc in (wrong_ca, no_token):
            assert TOKEN not in proc.stderr + proc.stdout
    finally:
        server.stop()


def test_bench_compares_the_server_with_local_inference(server, model_cache, pedestrian_xml):
    """The figures `streamdet bench --server` prints, from a short run (the command asks for 250 frames or
    more, which takes half a minute here); the command itself checks the server before loading anything."""
    config = _config(server.url)
    result = run_remote_bench(str(pedestrian_xml), clip("carphone_pristine"), config.inference, frames=60, rounds=1)
    assert set(result.fps) == {"local raw", "remote raw", "local pipeline", "remote pipeline"}
    assert all(v > 0 for v in [*result.fps.values(), *result.latency_ms.values()])
    assert set(result.remote_to_local) == {"raw", "pipeline"}
    assert "remote pipeline" in result.format() and server.url in result.format()
    json.loads(result.to_json())
    nowhere = f"grpc://127.0.0.1:{free_port()}"
    proc = streamdet("bench", "--model", str(pedestrian_xml), "--clip", str(clip("carphone_pristine")),
                     "--server", nowhere, env=cli_env(model_cache), timeout=60)
    assert_one_line_error(proc, "not reachable", nowhere)
