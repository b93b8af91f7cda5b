"""Inference on a KServe v2 (Open Inference Protocol) gRPC server: OpenVINO Model Server, Triton, KServe.

`connect` checks the server and its model once, before the run starts;
`RemoteEngine` is the scheduler's engine (the same protocol as the local
InferenceEngine): up to nireq requests in flight with tritonclient's
`async_infer`, so the network round trip overlaps like local async requests.

The server's model takes what the local compiled model takes: the 300x300
8-bit BGR frame (see streamdet.export), sent as raw bytes; a model served as
the TF Object Detection API made it (input image_tensor) gets RGB. Its outputs go
through the same readout as local ones (streamdet.model.readout).

While the server is away, `wait_idle` blocks: cameras' newest-wins inboxes
drop and count frames, files wait. Requests that failed in flight are kept and
resent, in order, once a probe finds the server and the model ready again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..config.sections import InferenceConfig
from ..model.readout import LEGACY_OUTPUT, TF_COUNT, TF_OUTPUTS, to_detections
from ..detections import Detections
from ..errors import ConfigError, StreamdetError
from .base import Completed, Job
from ..model.export import INPUT_NAME as EXPORT_INPUT
from ..model.detector import fit_input
from ..model.ir import INPUT_SIZE
from ..urls import mask_url, parse_server

log = logging.getLogger("streamdet")

# Outages: these codes mean the server (or the way to it) is away or overloaded, not that the request is wrong.
# A server killed mid-request gives UNAVAILABLE (Stream removed, Socket closed), one shutting down CANCELLED, one
# gone silent DEADLINE_EXCEEDED after inference.server_timeout. UNKNOWN and INTERNAL are how servers report their
# own exceptions: those stop the run with the server's message rather than retry a frame it will never take.
_TRANSIENT = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED",
              "StatusCode.CANCELLED"}
_RETRY_FIRST_S = 0.25  # a probe costs one round trip (or a refused connection): cheap enough to start often
_RETRY_MAX_S = 1.0     # so a server that is back is found within this, plus one connection attempt
# A frame that fails this often, each time after a probe found the server ready, is not the outage's fault.
_MAX_FAILURES = 5
_CHANNEL = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    # gRPC's own reconnect backoff grows to 120 s by default: a server back after a long outage would
    # wait that long for the channel to try again, whatever our probes do.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", int(_RETRY_MAX_S * 1000)),
]


def _grpc_client():
    try:
        import tritonclient.grpc as grpcclient  # only runs with a server configured
    except ImportError:
        raise StreamdetError("inference.server needs the KServe client: pip install 'streamdet[remote]'") from None
    return grpcclient


def _detail(exc: BaseException) -> str:
    status = getattr(exc, "status", lambda: None)()
    message = getattr(exc, "message", lambda: None)() or str(exc) or type(exc).__name__
    text = " ".join(str(message).split())[:240]
    return f"{status.removeprefix('StatusCode.')}: {text}" if status else text


@dataclass
class RemoteModel:
    """A server whose model was found ready and of a known form: what requests need."""

    client: object                   # tritonclient.grpc.InferenceServerClient
    shown: str                       # the server URL, masked, for messages
    name: str
    version: str                     # "" = the server's choice
    form: str                        # "tf" or "legacy"
    input_name: str
    input_size: tuple[int, int]      # (width, height), as cv2.resize takes it
    rgb: bool                        # the input takes RGB (the TF OD API's), not streamdet's BGR
    outputs: dict[str, str]          # role -> the server's output name
    labels: tuple[str, ...]
    timeout: float
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def described(self) -> str:
        version = f" version {self.version}" if self.version else ""
        return f"model '{self.name}'{version} on {self.shown}"

    def close(self) -> None:
        self.client.close()


def connect(inference: InferenceConfig, labels: tuple[str, ...]) -> RemoteModel:
    """Reach the server, check that it is live and the model ready and of one of the two forms; one-line errors."""
    shown = mask_url(inference.server)
    if inference.server_ca is not None:
        try:
            with open(inference.server_ca, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"inference.server_ca '{inference.server_ca}': cannot be read ({exc.strerror}); "
                              "give the CA bundle (PEM) that signed the server's certificate") from None
    grpcclient = _grpc_client()
    scheme, host, port = parse_server(inference.server)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    client = grpcclient.InferenceServerClient(target, ssl=scheme == "grpcs", root_certificates=inference.server_ca,
                                              channel_args=_CHANNEL)
    headers = {"authorization": f"Bearer {inference.server_token}"} if inference.server_token else {}
    name, version = inference.server_model, str(inference.server_version or "")
    try:
        return _check(client, shown, name, version, headers, inference.server_timeout, labels)
    except BaseException:
        client.close()
        raise


def _check(client, shown: str, name: str, version: str, headers: dict[str, str], timeout: float,
           labels: tuple[str, ...]) -> RemoteModel:
    from tritonclient.utils import InferenceServerException

    where = f"inference server {shown}"
    try:
        live = client.is_server_live(headers=headers, client_timeout=timeout)
    except InferenceServerException as exc:
        if "UNAUTHENTICATED" in str(exc.status()) or "PERMISSION_DENIED" in str(exc.status()):
            raise StreamdetError(f"{where}: refused streamdet ({_detail(exc)}); check inference.server_token "
                                 "or STREAMDET_SERVER_TOKEN") from None
        raise StreamdetError(f"{where}: not reachable ({_detail(exc)}); check the address, the server, "
                             "and for grpcs:// inference.server_ca") from None
    if not live:
        raise StreamdetError(f"{where}: the server says it is not live; check its log")
    model = f"model '{name}'" + (f" version {version}" if version else "")
    try:
        ready = client.is_model_ready(name, version, headers=headers, client_timeout=timeout)
        metadata = client.get_model_metadata(name, version, headers=headers, client_timeout=timeout) if ready else None
    except InferenceServerException as exc:
        raise StreamdetError(f"{where}: {model} is not available ({_detail(exc)}); check inference.server_model "
                             "(--server-model) against the name the server serves it by") from None
    if not ready:
        raise StreamdetError(f"{where}: {model} is not ready; check inference.server_model (--server-model) "
                             "against the name the server serves it by, and the server's log")
    form, outputs = _form_of(metadata, f"{where}: {model}")  # first: a model that is no detector at all
    input_name, size, rgb = _input_of(metadata, f"{where}: {model}")
    return RemoteModel(client=client, shown=shown, name=name, version=version, form=form, input_name=input_name,
                       input_size=size, rgb=rgb, outputs=outputs, labels=labels, timeout=timeout, headers=headers)


def _tensor(t) -> str:
    return f"{t.name} {t.datatype} [{','.join(str(d) for d in t.shape)}]"


_EXPORT_HINT = ("serve the IR that `streamdet model export-server` writes "
                "(it takes 8-bit BGR frames as streamdet sends them)")


def _input_of(metadata, where: str) -> tuple[str, tuple[int, int], bool]:
    """(name, (width, height), whether it takes RGB) of the model's one 8-bit image input.

    Only the IR export-server writes takes BGR, and says so by its input's name; any other 8-bit image
    input follows the TF Object Detection API (image_tensor: RGB), as Triton or OVMS serve that graph.
    """
    inputs = list(metadata.inputs)
    if len(inputs) != 1:
        raise StreamdetError(f"{where} has {len(inputs)} inputs ({', '.join(map(_tensor, inputs))}); "
                             f"an SSD detector has one image input: {_EXPORT_HINT}")
    port = inputs[0]
    shape = list(port.shape)
    if port.datatype != "UINT8" or len(shape) != 4 or shape[0] not in (1, -1) or shape[3] != 3:
        raise StreamdetError(f"{where}: input {_tensor(port)} is not an 8-bit BGR image [1,H,W,3]; {_EXPORT_HINT}")
    height, width = (d if d > 0 else INPUT_SIZE for d in shape[1:3])
    rgb = port.name != EXPORT_INPUT
    if rgb:
        log.info("%s: input %s is not streamdet's own BGR input (%s); sending RGB frames, as the TF Object "
                 "Detection API's image_tensor takes them", where, _tensor(port), EXPORT_INPUT)
    return port.name, (int(width), int(height)), rgb


def _form_of(metadata, where: str) -> tuple[str, dict[str, str]]:
    by_role: dict[str, str] = {}
    for port in metadata.outputs:
        role = port.name.split(":")[0]  # a plain converted IR names tensors like detection_boxes:0
        if role in (*TF_OUTPUTS, TF_COUNT):
            by_role[role] = port.name
    if all(role in by_role for role in TF_OUTPUTS):
        return "tf", by_role
    outputs = list(metadata.outputs)
    if len(outputs) == 1 and len(outputs[0].shape) == 4 and outputs[0].shape[3] == 7:
        return "legacy", {LEGACY_OUTPUT: outputs[0].name}
    found = ", ".join(map(_tensor, outputs)) or "none"
    raise StreamdetError(f"{where}: outputs [{found}] are not an SSD detector's (detection_boxes, detection_classes, "
                         f"detection_scores, or one DetectionOutput [1,1,N,7]); {_EXPORT_HINT}")


@dataclass
class _Request:
    """One frame on its way to the server; kept until answered, so it can be sent again after an outage."""

    job: Job
    inputs: list = field(repr=False)
    sent: float = 0.0
    failures: int = 0


class RemoteEngine:
    """The scheduler's engine for a server: `wait_idle`, `submit`, `drain`; `on_done` runs on gRPC's threads."""

    def __init__(self, model: RemoteModel, nireq: int, on_done: Callable[[Completed], None]):
        self._grpc = _grpc_client()
        self.model = model
        self._nireq = nireq
        self._on_done = on_done
        self._requested = [self._grpc.InferRequestedOutput(name) for name in model.outputs.values()]
        self._cond = threading.Condition()
        self._in_flight = 0
        self._retry: list[_Request] = []     # failed in flight while the server was away
        self._away = False
        self._away_since = 0.0
        self._reason = ""
        self._delay = _RETRY_FIRST_S          # grows over outages that follow each other without a result between
        self._closed = False
        self._watcher: threading.Thread | None = None

    # ------------------------------------------------------------- Engine protocol

    def wait_idle(self) -> None:
        """Block until a request may go out: one of nireq is free and the server is not away."""
        with self._cond:
            while (self._away or self._in_flight >= self._nireq) and not self._closed:
                self._cond.wait()

    def submit(self, job: Job) -> None:
        width, height = self.model.input_size
        image = fit_input(job.frame.image, self.model.input_size)
        if self.model.rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        tensor = self._grpc.InferInput(self.model.input_name, [1, height, width, 3], "UINT8")
        tensor.set_data_from_numpy(image[np.newaxis])  # raw bytes in the request, never JSON
        with self._cond:
            if self._closed:
                return  # the run is over: nobody takes this frame
            self._in_flight += 1
        self._send(_Request(job, [tensor]))

    def drain(self) -> None:
        """Block until every frame submitted is answered, through any outage (files lose nothing)."""
        with self._cond:
            while (self._in_flight or self._retry or self._away) and not self._closed:
                self._cond.wait()

    def close(self) -> None:
        """Stop waiting for the server; answers still on their way are let go."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._watcher is not None:
            self._watcher.join()

    # ------------------------------------------------------------- requests

    def _send(self, request: _Request) -> None:
        model = self.model
        request.sent = time.perf_counter()
        try:
            model.client.async_infer(model.name, request.inputs,
                                     lambda result, error: self._answered(request, result, error),
                                     model_version=model.version, outputs=self._requested,
                                     client_timeout=model.timeout, headers=model.headers)
        except Exception as exc:  # a closed channel, or a request tritonclient refuses before sending
            self._failed(request, exc)

    def _answered(self, request: _Request, result, error) -> None:
        if error is not None:
            self._failed(request, error)
            return
        job = request.job
        model = self.model
        try:
            outputs = {role: result.as_numpy(name) for role, name in model.outputs.items()}
            missing = [name for role, name in model.outputs.items() if outputs[role] is None]
            if missing:
                raise StreamdetError(f"inference server {model.shown}: the answer has no output {missing[0]}")
            width, height = job.frame.size  # the boxes in the coordinates the frame asks for
            detections = to_detections(model.form, outputs, width, height, job.filter, model.labels)
            completed = Completed(job, detections, (time.perf_counter() - request.sent) * 1000, time.monotonic())
        except BaseException as exc:  # an exception here would vanish inside gRPC's thread
            completed = Completed(job, Detections.empty(), 0.0, time.monotonic(), error=exc)
        with self._cond:
            self._in_flight -= 1
            self._delay = _RETRY_FIRST_S
            self._cond.notify_all()
            if self._closed:
                return
        self._on_done(completed)

    def _failed(self, request: _Request, error: BaseException) -> None:
        status = str(getattr(error, "status", lambda: "")())
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()
            if self._closed:
                return
            request.failures += 1
            if status in _TRANSIENT and request.failures <= _MAX_FAILURES:
                self._retry.append(request)
                if not self._away:
                    self._away, self._away_since, self._reason = True, time.monotonic(), _detail(error)
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._recover, name="server-watch", daemon=True)
                    self._watcher.start()
                return
        kind = "keeps failing" if status in _TRANSIENT else "refused"
        error = StreamdetError(f"inference server {self.model.shown}: model '{self.model.name}' {kind} a frame "
                               f"({_detail(error)})")
        self._on_done(Completed(request.job, Detections.empty(), 0.0, time.monotonic(), error=error))

    # ------------------------------------------------------------- outages

    def _recover(self) -> None:
        """The engine's outage thread (started at the first one, ended by close): probe, then resend."""
        while True:
            with self._cond:
                while not self._away and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                since, reason, delay = self._away_since, self._reason, self._delay
            log.warning("inference server %s unreachable (%s): camera frames are dropped, files wait; retrying",
                        self.model.shown, reason)
            while not self._ready():
                with self._cond:
                    if self._cond.wait_for(lambda: self._closed, delay):
                        return
                delay = min(delay * 2, _RETRY_MAX_S)
            with self._cond:
                self._delay = min(delay * 2, _RETRY_MAX_S)  # reset by the next answer; a flapping server backs off
                pending = sorted(self._retry, key=lambda r: r.job.seq)
                self._retry.clear()
                self._away = False
                self._in_flight += len(pending)
                self._cond.notify_all()
            log.warning("inference server %s is back after %.1f s; %d frame(s) sent again",
                        self.model.shown, time.monotonic() - since, len(pending))
            for request in pending:
                self._send(request)

    def _ready(self) -> bool:
        model = self.model
        try:
            return bool(model.client.is_server_live(headers=model.headers, client_timeout=model.timeout)
                        and model.client.is_model_ready(model.name, model.version, headers=model.headers,
                                                        client_timeout=model.timeout))
        except Exception as exc:  # still away: tritonclient's InferenceServerException, or the channel's own
            log.debug("inference server %s: probe failed (%s)", model.shown, _detail(exc))
            return False
