"""A run put together from the settings in three steps, cheap before slow; `streamdet.pipeline` runs it.

1. plan (streamdet.assembly.plan): the settings, the sources named, the output paths, MQTT's URL, the labels
   and class filters: nothing opens, so a mistake is one line in a moment;
2. open (`open_run`): the web listener bound and its TLS certificate loaded, the sources opened (a busy port or a file that is no video
   is found in a second), zones checked against the frame size, the MQTT broker reached, and only then
   the model loaded (or the server checked);
3. wire (streamdet.assembly.wiring): the lanes, the outputs, the stages after inference, the web view.

Each step's result is frozen; a step that fails closes what the steps before it opened.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.sections import Config, SourcePlan
from ..engines.backend import Backend, open_backend
from ..engines.base import Engine
from ..errors import ConfigError
from ..model.detector import Detector
from ..motion import MotionGate
from .plan import RunPlan, plan_run
from ..measures.meters import RunMeter
from ..scene import Scene
from ..sources import Source, SourceInfo, open_all
from ..measures.figures import RunStatus
from .wiring import Wired, close_outputs, run_status, wire

if TYPE_CHECKING:
    from .changes import Reload, SettingsFile

log = logging.getLogger("streamdet")


@dataclass(frozen=True)
class Opened:
    """What a run opened, in the order it opened it."""

    listener: socket.socket | None  # the web view's; it owns it once made (closing it again does nothing)
    web_url: str | None             # where the web view serves: known once the listener is bound
    link_url: str | None            # the base of links in events and MQTT (web.listener.link_url)
    infos: tuple[SourceInfo, ...]
    scenes: tuple[Scene, ...]       # per source: its zones and lines in the frame's pixels
    backend: Backend                # the local model, loaded, or the server, checked
    tls: ssl.SSLContext | None = None  # the web view's HTTPS (web.tls_cert, web.tls_key); None = plain HTTP


def open_run(plan: RunPlan, detector: Detector | None = None) -> Opened:
    """Open what the plan needs, cheapest first; what was opened is closed again if a step fails."""
    config, listener, tls = plan.config, None, None
    try:
        if config.web.listen:
            from ..web.listener import bind_listener  # streamdet.web (and aiohttp) loads only when it is on
            from ..web.tls import server_context

            listener = bind_listener(config.web)  # a busy port is found before any source opens
            tls = server_context(config.web)  # and so is a certificate that is missing or not the key's
            if config.web.users:
                from ..config.users import load_users

                load_users(config.web.users)  # and a missing or broken users file
        infos = open_all(list(plan.sources))
        # Zones and lines against the frame size: a point outside the picture is found before the model loads.
        scenes = tuple(_scene(p, info, src) for p, info, src in zip(plan.plans, infos, plan.sources))
        if plan.mqtt is not None:
            plan.mqtt.start()  # an unreachable broker is found before the model loads
        # The local model (loaded and compiled here) or a server (checked here; nothing local is loaded).
        backend = open_backend(config.model, config.inference, plan.labels, detector)
    except BaseException:
        close_inputs(plan, listener)
        raise
    log.info("inference: %s", backend.info.line())
    web_url = links = None
    if listener is not None:
        from ..web.listener import link_url, listener_url

        web_url, links = listener_url(listener, tls is not None), link_url(config.web, listener)
        if links is None and plan.clips:
            log.warning("web.listen %s takes every address of this machine, and none is known to be the one others "
                        "reach it at: events carry no clip_url; set web.public_url (e.g. http://camera-box.lan:8080/) "
                        "for links", config.web.listen)
    return Opened(listener=listener, web_url=web_url, link_url=links, infos=tuple(infos), scenes=scenes,
                  backend=backend, tls=tls)


def _scene(plan: SourcePlan, info: SourceInfo, source: Source) -> Scene:
    try:
        return Scene.of(plan.events, info.width, info.height, source.name)
    except ConfigError as exc:
        raise ConfigError(f"{plan.where}: {exc}" if plan.where else str(exc)) from None


def close_inputs(plan: RunPlan, listener: socket.socket | None) -> None:
    """Close the sources, the listener (when the web view never took it) and the MQTT publisher."""
    for source in plan.sources:
        source.close()
    if listener is not None:
        listener.close()
    if plan.mqtt is not None:
        plan.mqtt.close()  # closed with its output already, unless the run failed before that was made


@dataclass(frozen=True)
class Assembly:
    """Everything a run is made of; `Pipeline` drives it and closes it (`close_outputs`, then `close_inputs`)."""

    plan: RunPlan
    opened: Opened
    wired: Wired
    meter: RunMeter
    motion: MotionGate  # every source's, passing every frame for a source without it (a reload may add one with it)

    def make_engine(self, on_done) -> Engine:
        """Inference as the scheduler sees it: the frames the detection rate and the motion gate let through
        (both decided as each frame arrives: streamdet.scheduler)."""
        return self.opened.backend.engine(on_done)

    def status(self) -> RunStatus:
        """Every source's state and rates now; safe to call from any thread while the run goes on."""
        return run_status(self.wired.lanes, self.meter, self.plan.mqtt, self.opened.backend.info)

    def close_outputs(self) -> list[BaseException]:
        """Finalise every output, each even if another fails; the errors, in order."""
        return close_outputs(self.wired.outputs)

    def close_inputs(self) -> None:
        close_inputs(self.plan, self.opened.listener)


def assemble(config: Config, detector: Detector | None = None, sources: list[Source] | None = None,
             settings: SettingsFile | None = None, reload: Callable[[], Reload] | None = None) -> Assembly:
    """Plan, open and wire a run (`sources`: ready-made sources in place of `config.sources`; `settings`: the file
    the settings came from, which the web view's camera API writes back; `reload`: reads the settings again and
    applies them, for the web view's POST /api/reload and camera API)."""
    plan = plan_run(config, detector, sources)
    opened = open_run(plan, detector)
    meter = RunMeter()
    try:
        wired = wire(plan, infos=opened.infos, scenes=opened.scenes, backend=opened.backend,
                     listener=opened.listener, link_url=opened.link_url, meter=meter, tls=opened.tls,
                     reload=reload, config_file=settings.path if settings is not None else None)
    except BaseException:
        opened.backend.close()
        close_inputs(plan, opened.listener)
        raise
    return Assembly(plan=plan, opened=opened, wired=wired, meter=meter, motion=MotionGate([p.detect for p in plan.plans]))
