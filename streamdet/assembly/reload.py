"""New settings applied to a run that goes: asked from any thread, the slow part there, the change itself on
the output loop's thread between frames, so stages and outputs never see two threads.

On the asking thread (a SIGHUP's worker, the web server's executor), `Reloads.ask`: the settings checked and
compared with the run's (streamdet.assembly.changes), every camera to add planned (streamdet.assembly.plan:
its outputs checked, its names) and opened (a camera that is away is no error: it retries, as at the start),
its zones checked against its picture. Any mistake is one line and nothing changes. Then the request waits
for the loop, which `step`s it each time round: the cameras removed (and those changed) are stopped; once
each one's frames are through it ends as a source that ended does (its tracks' `end` events, its own files
closed whole) and is retired (streamdet.assembly.running); then the new cameras are added, and the asking
thread gets the `Reload`. The sources removed are closed on the asking thread, off the loop.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config.sections import Config, SourcePlan
from ..errors import StreamdetError
from ..model.detector import Detector
from ..scheduler import Scheduler
from ..sources import Source, open_all
from .assemble import _scene
from .changes import Changes, Reload, camera_key, diff, with_kept
from .plan import RunPlan, plan_added
from .running import NewCamera, Running

log = logging.getLogger("streamdet")

RELOAD_TIMEOUT_S = 60.0  # the asking thread's wait for the loop: a removed camera's last frames, then the adding


@dataclass
class _Request:
    changes: Changes
    config: Config                      # the new settings, with the ones that cannot change put back
    removing: list[int]                 # the ids stopped: removed cameras, and changed ones
    cameras: list[NewCamera]
    started: bool = False
    abandoned: bool = False             # the asking thread gave up waiting: the loop closes what it would have
    result: Reload | None = None
    closing: list[Source] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class Reloads:
    """One reload at a time; `ask` from any thread but the loop's, `step` and `cancel` on the loop's."""

    def __init__(self, running: Running, config: Config, labels: tuple[str, ...], detector: Detector | None,
                 nireq: int):
        self._running, self._config, self._labels, self._detector, self._nireq = running, config, labels, detector, nireq
        self._one = threading.Lock()   # one reload at a time
        self._lock = threading.Lock()  # guards `_pending` between the asking thread and the loop
        self._pending: _Request | None = None
        self._closed = False
        self.wake: Callable[[], None] = lambda: None  # the scheduler's wake, once the run goes

    @property
    def config(self) -> Config:
        """The settings the run goes on now."""
        return self._config

    def ask(self, config: Config, timeout: float = RELOAD_TIMEOUT_S) -> Reload:
        """Apply `config` (checked by the loader and `Config.check` already) and wait for the outcome."""
        with self._one:
            if self._pending is not None:  # one the asker gave up waiting for: the loop is still at it
                return Reload(error="the previous reload is still being applied; try again in a moment")
            try:
                changes, request = self._prepare(config)
            except StreamdetError as exc:
                return Reload(error=str(exc))
            if request is None:
                return Reload(kept=changes.kept)
            with self._lock:
                if self._closed:
                    _close(c.plan.sources[0] for c in request.cameras)
                    return Reload(error="the run is ending")
                self._pending = request
            self.wake()
            if not request.done.wait(timeout):
                with self._lock:
                    if not request.done.is_set():
                        request.abandoned = True
                        return Reload(error=f"not applied within {timeout:g} s: the run is busy ending the removed "
                                            "cameras' frames; it goes on and applies it then")
            _close(request.closing)
            return request.result

    def _prepare(self, new: Config) -> tuple[Changes, _Request | None]:
        """Everything the loop need not do: checks, the new cameras planned and opened (no request: no camera
        changes)."""
        running, old = self._running, self._config
        current = [running.plans[i] for i in running.keys.values()]
        changes = diff(current, new.plans(), old, new)
        effective = with_kept(old, new)
        if not changes.cameras:
            self._config = effective
            return changes, None
        removing = [running.keys[key] for key in changes.removed]
        removing += [running.keys[camera_key(p)] for p in changes.changed]
        leaving = {running.lanes[i].source.name for i in removing}
        taken, shared = running.names() - leaving, running.joinable(removing)
        planned: list[tuple[RunPlan, tuple[str, ...], SourcePlan]] = []
        new_files: dict[str, str] = {}  # those of the cameras planned before, in this reload
        try:
            for plan in (*changes.added, *changes.changed):
                key = camera_key(plan)
                sub, joins = plan_added(effective, plan, taken, shared, self._labels, self._detector,
                                        running.ours(key), {**running.others(key), **new_files})
                planned.append((sub, joins, plan))
                taken.add(sub.sources[0].name)
                new_files.update((os.path.realpath(t.path), sub.sources[0].name) for t in sub.targets if t.path != "-")
            infos = open_all([sub.sources[0] for sub, _, _ in planned])
            cameras = [NewCamera(plan=sub, joins=joins, info=info, key=camera_key(given), settings=given,
                                 scene=_scene(sub.plans[0], info, sub.sources[0]))
                       for (sub, joins, given), info in zip(planned, infos)]
        except BaseException:
            _close(sub.sources[0] for sub, _, _ in planned)
            raise
        return changes, _Request(changes=changes, config=effective, removing=removing, cameras=cameras)

    def step(self, scheduler: Scheduler, ended: set[int], end_source: Callable[[int], None]) -> None:
        """On the loop, each time round: the pending reload taken a step further (see the module)."""
        request = self._pending
        if request is None:
            return
        running = self._running
        if not request.started:
            request.started = True
            scheduler.hold(True)  # every camera removed before the new ones come: the run must not end
            for i in request.removing:
                running.lanes[i].source.stop()
        waiting = [i for i in request.removing if not running.lanes[i].removed]
        for i in waiting:
            if i in ended or scheduler.source_done(running.lanes[i]):
                if i not in ended:
                    end_source(i)
                running.retire(i)
        if any(not running.lanes[i].removed for i in request.removing):
            return
        added = [running.lanes[running.add(c, self._nireq, scheduler.add_lane)].source.name for c in request.cameras]
        scheduler.hold(False)
        changed = tuple(added[len(request.changes.added):])
        result = Reload(added=tuple(added[:len(request.changes.added)]), changed=changed,
                        removed=tuple(running.lanes[i].source.name for i in request.removing
                                      if running.lanes[i].source.name not in changed),
                        kept=request.changes.kept)
        self._config = request.config
        self._finish(request, result, [running.lanes[i].source for i in request.removing])

    def _finish(self, request: _Request, result: Reload, closing: list[Source]) -> None:
        with self._lock:
            self._pending = None
            request.result, request.closing = result, closing
            request.done.set()
            abandoned = request.abandoned
        if abandoned:
            log.info("%s", result.line())
            _close(closing)

    def cancel(self) -> None:
        """The run ends: a reload not applied yet never will be; its new cameras are closed again."""
        with self._lock:
            self._closed = True
            request = self._pending
        if request is not None:
            _close(c.plan.sources[0] for c in request.cameras)
            self._finish(request, Reload(error="the run ended before the reload was applied"), [])


def _close(sources) -> None:
    for source in sources:
        source.close()
