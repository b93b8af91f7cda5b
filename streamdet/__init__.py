"""streamdet: real-time object detection on video with OpenVINO.

The API names are imported on first use so `streamdet --help` and the model
commands start without loading the whole pipeline.
"""

from importlib import import_module

from .privacy import telemetry_off

telemetry_off()  # before any module of ours imports openvino

_EXPORTS = {
    "Config": "config.sections",
    "load_config": "config.loader",
    "Detections": "detections",
    "FrameResult": "detections",
    "StreamdetError": "errors",
    "Detector": "model.detector",
    "load": "model.detector",
    "Pipeline": "pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'streamdet' has no attribute {name!r}")
