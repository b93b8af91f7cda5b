"""Where frames are inferred: the local compiled model or a KServe v2 server, chosen from the settings.

`open_backend` is the one place that chooses; the pipeline asks the backend
for its engine (`backend.engine(on_done)`) and knows nothing of either kind,
so anything wrapping an engine wraps both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..config.sections import InferenceConfig, ModelConfig
from .base import Completed
from .local import InferenceEngine
from ..model.detector import Detector, load_from
from .base import Engine
from ..measures.figures import InferenceInfo
from ..urls import mask_url

# Requests in flight to a server when inference.nireq is 0: enough to cover the round trip on a LAN and
# keep a server's streams busy: on loopback 4 gave nearly three times 1, and 8 no more than noise (docs/servers.md).
REMOTE_NIREQ = 4


@dataclass
class Backend:
    """What the run infers on: `engine(on_done)` makes the scheduler's engine; `close()` lets it go."""

    nireq: int
    engine: Callable[[Callable[[Completed], None]], Engine]
    info: InferenceInfo
    detector: Detector | None = None        # the local model; None on a server
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Engines stop waiting (for a server that is away), then the connection closes; idempotent."""
        while self._closers:
            self._closers.pop()()


def requests_in_flight(inference: InferenceConfig, detector: Detector | None) -> int:
    """inference.nireq, or when it is 0 ("automatic") what suits the backend. The one place this is decided."""
    if inference.nireq:
        return inference.nireq
    if detector is None:
        return REMOTE_NIREQ
    # With exactly the optimal number of requests the device idles while
    # Python turns a finished request round (read out, take and resize the
    # next frame): on 2 cores one more took the pipeline from 0.80 to 0.90
    # of raw throughput on decoded frames. Under LATENCY a second request
    # would only make each frame wait for the other.
    return detector.optimal_nireq + (1 if detector.hint == "THROUGHPUT" else 0)


def open_backend(model: ModelConfig, inference: InferenceConfig, labels: tuple[str, ...],
                 detector: Detector | None = None) -> Backend:
    """A ready local detector (`detector`, or the model loaded and compiled), or a checked server.

    The threshold and classes are the scheduler's, per source (each job carries its filter): the backend
    takes none.
    """
    if inference.server and detector is None:
        return _remote(inference, labels)
    detector = detector or load_from(model, inference, labels)
    nireq = requests_in_flight(inference, detector)
    return Backend(nireq=nireq,
                   engine=lambda on_done: InferenceEngine(detector, nireq, on_done), info=detector.info(nireq),
                   detector=detector)


def _remote(inference: InferenceConfig, labels: tuple[str, ...]) -> Backend:
    from .remote import RemoteEngine, connect  # tritonclient loads only with a server configured

    server = connect(inference, labels)  # nothing local is loaded, converted or downloaded
    nireq = requests_in_flight(inference, None)
    info = InferenceInfo(model=inference.server_model, devices=[f"server {mask_url(inference.server)}"],
                         precision="set by the server", weights="unknown", requests=nireq)
    backend = Backend(nireq=nireq, engine=lambda on_done: None, info=info)
    backend._closers.append(server.close)

    def engine(on_done: Callable[[Completed], None]) -> Engine:
        made = RemoteEngine(server, nireq, on_done)
        backend._closers.append(made.close)  # closed before the connection (closers run last first)
        return made

    backend.engine = engine
    return backend
