"""Where frames are inferred: the local compiled model or a KServe v2 server, chosen from the settings.

`open_backend` is the one place that chooses; the pipeline asks the backend
for its engine (`backend.engine(on_done)`) and knows nothing of either kind,
so anything wrapping an engine wraps both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..config.sections import DetectConfig, InferenceConfig, ModelConfig
from ..model.readout import DetectFilter
from .local import Completed, InferenceEngine
from ..model.labels import load_labels
from ..model.detector import Detector, load_from
from ..scheduler import Engine
from ..stats import InferenceInfo
from ..urls import mask_url

# Requests in flight to a server when inference.nireq is 0: enough to cover the round trip on a LAN and
# keep a server's streams busy: on loopback 4 gave nearly three times 1, and 8 no more than noise (see README).
REMOTE_NIREQ = 4


@dataclass
class Backend:
    """What the run infers on: `engine(on_done)` makes the scheduler's engine; `close()` lets it go."""

    nireq: int
    labels: tuple[str, ...]
    engine: Callable[[Callable[[Completed], None]], Engine]
    info: InferenceInfo
    detector: Detector | None = None        # the local model; None on a server
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Engines stop waiting (for a server that is away), then the connection closes; idempotent."""
        while self._closers:
            self._closers.pop()()


def open_backend(model: ModelConfig, inference: InferenceConfig, detect: DetectConfig,
                 detector: Detector | None = None) -> Backend:
    """A ready local detector (`detector`, or the model loaded and compiled), or a checked server."""
    if inference.server and detector is None:
        return _remote(model, inference, detect)
    detector = detector or load_from(model, inference, detect)
    return Backend(nireq=detector.nireq, labels=detector.labels,
                   engine=lambda on_done: InferenceEngine(detector, detector.nireq, on_done), info=detector.info(),
                   detector=detector)


def _remote(model: ModelConfig, inference: InferenceConfig, detect: DetectConfig) -> Backend:
    from .remote import RemoteEngine, connect  # tritonclient loads only with a server configured

    labels = load_labels(model.labels)
    keep = DetectFilter.of(detect.threshold, labels, detect.classes)
    server = connect(inference, labels, keep)  # nothing local is loaded, converted or downloaded
    nireq = inference.nireq or REMOTE_NIREQ
    info = InferenceInfo(model=inference.server_model, devices=[f"server {mask_url(inference.server)}"],
                         precision="set by the server", weights="unknown", requests=nireq)
    backend = Backend(nireq=nireq, labels=labels, engine=lambda on_done: None, info=info)
    backend._closers.append(server.close)

    def engine(on_done: Callable[[Completed], None]) -> Engine:
        made = RemoteEngine(server, nireq, on_done)
        backend._closers.append(made.close)  # closed before the connection (closers run last first)
        return made

    backend.engine = engine
    return backend
