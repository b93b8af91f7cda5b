"""A run's assembly: the plan's checks refuse before anything opens, the open step closes what it opened
when a later check fails, who draws is decided in one place, and the plate's figures travel on the result."""

from __future__ import annotations

import dataclasses
import socket
import time

import numpy as np
import pytest

from streamdet.assembly.assemble import assemble, open_run
from streamdet.config.events import ZoneConfig
from streamdet.config.sections import Config, WebConfig
from streamdet.detections import Detections, FrameResult, OverlayStatus
from streamdet.errors import ConfigError, ModelError, OutputError
from streamdet.assembly.plan import plan_run
from streamdet.sources import Frame, Source, SourceInfo
from streamdet.web.listener import bind_listener
from streamdet.assembly.wiring import Drawing, who_draws


class WatchedSource(Source):
    """A source that counts how often it was opened and closed; it has no frames."""

    def __init__(self, name: str, width: int = 64, height: int = 48):
        self.name = name
        self.size = (width, height)
        self.opened = self.closed = 0

    def open(self) -> SourceInfo:
        self.opened += 1
        return SourceInfo(*self.size, 25.0, 0, live=False)

    def read(self) -> Frame | None:
        return None

    def close(self) -> None:
        self.closed += 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def busy_web():
    """Web settings on a port that is taken: binding it is the first thing a run opens, and it fails, so a
    check the plan missed shows as this port's error (and no model is loaded)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield WebConfig(listen=f"127.0.0.1:{taken.getsockname()[1]}")


@pytest.mark.unit
def test_a_wrong_class_is_refused_before_the_port_is_bound_or_a_source_opened(busy_web):
    config = Config(web=busy_web)
    config.detect.classes = ["unicorn"]
    source = WatchedSource("door")
    with pytest.raises(ModelError, match="class 'unicorn' is not in the label file"):
        assemble(config, sources=[source])
    assert source.opened == 0


@pytest.mark.unit
def test_two_outputs_on_one_path_are_refused_before_the_port_is_bound_or_a_source_opened(tmp_path, busy_web):
    config = Config(web=busy_web)
    config.output.json = config.output.events = str(tmp_path / "out.jsonl")
    source = WatchedSource("door")
    with pytest.raises(OutputError, match="out.jsonl' is given twice"):
        assemble(config, sources=[source])
    assert source.opened == 0 and not (tmp_path / "out.jsonl").exists()


@pytest.mark.unit
def test_the_busy_port_comes_before_any_source_opens(busy_web):
    source = WatchedSource("door")
    with pytest.raises(ConfigError, match="cannot listen there: the port is in use"):
        assemble(Config(web=busy_web), sources=[source])
    assert source.opened == 0 and source.closed == 1


@pytest.mark.unit
def test_the_plan_names_sources_and_resolves_tracking_and_filters_without_opening_anything():
    config = Config()
    config.track.enabled = True
    config.detect.threshold, config.track.low = 0.5, 0.2
    sources = [WatchedSource("clip"), WatchedSource("clip")]
    plan = plan_run(config, sources=sources)
    assert plan.names == ["clip~1", "clip~2"]     # two generated names that clash are told apart
    assert plan.tracking == (True, True)
    assert [f.threshold for f in plan.filters] == [0.2, 0.2]  # a tracker needs boxes down to track.low
    assert not plan.gated and not plan.clips and plan.mqtt is None and not plan.window
    assert [s.opened for s in sources] == [0, 0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.window = True


@pytest.mark.unit
def test_a_zone_outside_the_frame_closes_the_opened_listener_and_source_before_the_model_loads():
    port = _free_port()
    config = Config(web=WebConfig(listen=f"127.0.0.1:{port}"))
    config.events.zones = [ZoneConfig("porch", [[0, 0], [700, 0], [0, 10]])]
    source = WatchedSource("door", 640, 480)
    plan = plan_run(config, sources=[source])
    assert plan.tracking == (True,)  # zones need tracks
    with pytest.raises(ConfigError, match=r"zone 'porch': point \[700, 0\] is outside the 640x480 frame"):
        open_run(plan)
    assert source.opened == 1 and source.closed == 1
    bind_listener(config.web).close()  # the port is free again: the listener was closed


@pytest.mark.parametrize("draw, clips, pictures, web_view, drawing", [
    ("yes", False, False, False, Drawing.STAGE),     # asked for: the stage draws, whoever looks
    ("yes", False, False, True, Drawing.STAGE),      # and the web view shows what the stage drew
    ("auto", True, False, True, Drawing.STAGE),      # a clip shows what the recording would
    ("auto", False, True, True, Drawing.STAGE),      # a recording, images or the window show pictures
    ("auto", False, False, True, Drawing.WEB_VIEW),  # only the web view shows them: it draws what is watched
    ("auto", False, False, False, Drawing.NOBODY),   # nothing shows pictures
    ("no", True, True, True, Drawing.NOBODY),        # never, whatever shows pictures
])
@pytest.mark.unit
def test_who_draws(draw, clips, pictures, web_view, drawing):
    assert who_draws(draw, clips, pictures, web_view) is drawing


@pytest.mark.unit
def test_the_plate_travels_on_the_result_and_single_images_have_none():
    frame = Frame(image=np.zeros((4, 4, 3), np.uint8), index=0, pts_ms=None, captured=time.monotonic())
    result = FrameResult(source="door", frame=frame, detections=Detections.empty(), latency_ms=12.5, fps=24.9)
    assert result.plate == OverlayStatus(fps=24.9, latency_ms=12.5)
    assert dataclasses.replace(result, fps=None).plate == OverlayStatus(fps=None, latency_ms=12.5)
    assert dataclasses.replace(result, still=True).plate is None
