"""Shared pytest fixtures. Keep each area's fixtures in its own block."""

from __future__ import annotations

from pathlib import Path

import streamdet  # noqa: F401  first: keeps OpenVINO's telemetry off for test modules that import openvino

import numpy as np
import pytest

from helpers import decode
from media import clip, pedestrian_pb


# --- Model layer (tests/test_model.py, test_devices.py, test_fetch.py) -------------------------
# Converting the pedestrian graph takes a second or two: do it once per session and share the
# cache. Tests that must watch a conversion happen use their own empty cache instead.


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    from streamdet.model.ir import resolve_ir

    cache = tmp_path_factory.mktemp("model-cache")
    resolve_ir(pedestrian_pb(), cache)
    return cache


@pytest.fixture(scope="session")
def pedestrian_xml(model_cache) -> Path:
    """The pedestrian graph as TF-form IR (FP16 weights), already in `model_cache`."""
    from streamdet.model.ir import resolve_ir

    return resolve_ir(pedestrian_pb(), model_cache)


@pytest.fixture(scope="session")
def pedestrian_detector(pedestrian_xml):
    """The pedestrian IR compiled once with load's defaults, for tests that only run it (through a Pipeline
    or `detect`); tests about what loading does compile their own."""
    from streamdet.model.detector import load

    return load(pedestrian_xml)


@pytest.fixture(scope="session")
def carphone_frames() -> list[np.ndarray]:
    """The first 40 frames of carphone (176x144): one man in a car, filling the middle and right."""
    frames = decode(clip("carphone_pristine"), 40)
    assert len(frames) == 40, "carphone_pristine.mp4 could not be read"
    return frames


# --- end of model layer fixtures ---------------------------------------------------------------


# --- Browser (tests/test_web*.py, test_recording.py, test_copy_recording.py) ---------------------
# Debian's chromium, driven headless by Playwright, launched once per session; each test opens its
# own page, which has a context of its own (no cookies or cache shared between tests).

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: install the packages in tests/apt-packages.txt (the CI script does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield browser
        finally:
            browser.close()


# --- end of browser fixtures ---------------------------------------------------------------------
