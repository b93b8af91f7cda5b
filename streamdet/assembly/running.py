"""A run's parts while it goes: what `wire` made, grown by the cameras a reload adds and with the ones it
removes taken out, on the output loop's thread alone (streamdet.assembly.reload brings the changes there).

Source ids stay stable: they index the lanes, `outputs_of`, the stages' per-source lists, the meter, the web
view's frames. A camera added takes the next id; a removed camera's id is retired, never used again (its
lane stays, finished, so the summary still has its figures). A camera added joins what is shared: the
`output.json` / `output.events` files it names that the run writes already, MQTT and Home Assistant (when it
tracks), the window and the web view; its own files (recording, clips, snapshots, a detections or events
file of its own) are new, but for those the run wrote for the same camera before (a changed camera): its
detections and events go on in the same files, its recording in a new file beside the old one
(streamdet.assembly.plan.plan_added; `files` is the run's record of what it wrote for whom). A stage the
camera needs that the run did not have (tracking, events, clips, the drawing) is made and put in its place.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..measures.meters import RunMeter
from ..motion import MotionGate, ReuseDetections
from ..outputs import Output, WindowOutput
from ..outputs.jsonl import JsonlOutput
from ..scene import Scene
from ..scheduler import Lane, lanes_for
from ..sources import SourceInfo
from ..config.sections import SourcePlan
from ..drawing import Annotator
from ..detections import FrameResult
from ..stages import Annotate, Stage
from .changes import camera_key, camera_label
from .plan import RunPlan
from .wiring import (Drawing, Wired, _Joined, _open_outputs, clip_stage, hass_camera, in_order, live_taps,
                     served_files, track_stages, who_draws)

# The files a camera writes under one name for the whole run (segments with {start} get new names of their own).
_FILE_KINDS = ("video", "image", "jsonl", "events", "sidecar")

@dataclass(frozen=True)
class NewCamera:
    """A camera a reload adds, planned and opened on the reloading thread (streamdet.assembly.reload)."""

    plan: RunPlan   # of its own: its source at index 0 (streamdet.assembly.plan.plan_added)
    joins: tuple[str, ...]  # the shared files it writes to as well (paths the run writes already)
    info: SourceInfo
    scene: Scene
    key: str        # how the settings know it (streamdet.assembly.changes.camera_key)
    settings: SourcePlan  # as the settings give it (shared files not taken out): what later reloads compare with


class DrawSome(Annotate):
    """The draw stage a reload adds to a run that drew nothing in a stage (the web view drew for itself, or
    nobody): it draws the frames of the cameras added that need it (event clips, an annotated recording) and
    leaves the others' as they were; the web view does not draw a frame drawn here again."""

    def __init__(self, annotator: Annotator):
        super().__init__(annotator)
        self.sources: set[int] = set()

    def __call__(self, result: FrameResult) -> FrameResult:
        if result.source_id not in self.sources:
            return result
        self.paint(result.frame.image, result)
        return dataclasses.replace(result, drawn=True)


class Running:
    """The parts `Pipeline` drives, per source id; changed only on the output loop's thread."""

    def __init__(self, plan: RunPlan, wired: Wired, infos: tuple[SourceInfo, ...], scenes: tuple[Scene, ...],
                 meter: RunMeter, link_url: str | None, motion: MotionGate):
        self.plan, self.meter, self.link_url, self.motion = plan, meter, link_url, motion
        self.lanes = wired.lanes  # the very list the status reads, so it sees a camera added
        self.plans, self.sources = list(plan.plans), list(plan.sources)
        self.tracking, self.infos, self.scenes = list(plan.tracking), list(infos), list(scenes)
        self.outputs = list(wired.outputs)
        self.outputs_of = [list(o) for o in wired.outputs_of]
        self.own = [list(o) for o in wired.own_outputs]
        self.stages: list[Stage] = list(wired.stages)
        self.events, self.clips = wired.events, wired.clips
        self.keys = {camera_key(p): i for i, p in enumerate(plan.plans)}  # the cameras that run now
        self.added: list = []  # the sources added by reloads, closed with the run
        # Every file the run wrote under one name (resolved path) -> the cameras it wrote it for (key -> label).
        self.files: dict[str, dict[str, str]] = {}
        self._record_files(plan, [camera_key(p) for p in plan.plans])

    def _record_files(self, plan: RunPlan, keys: list[str]) -> None:
        for target in plan.targets:
            if target.kind in _FILE_KINDS and "{start}" not in target.path and target.path != "-":
                for i in target.sources:
                    self.files.setdefault(os.path.realpath(target.path), {})[keys[i]] = camera_label(plan.plans[i])

    def ours(self, key: str) -> frozenset[str]:
        """The files the run wrote for the camera known as `key`, from before a change or a removal."""
        return frozenset(path for path, cameras in self.files.items() if key in cameras)

    def others(self, key: str) -> dict[str, str]:
        """The files the run wrote for other cameras than `key`, each with who it wrote it for."""
        return {path: ", ".join(cameras.values()) for path, cameras in self.files.items() if key not in cameras}

    def joinable(self, leaving: list[int]) -> set[str]:
        """The detections and events files that stay open once the cameras `leaving` are gone (a camera's file of
        its own closes with it), which a camera added may share."""
        closing = {id(o) for i in leaving for o in self.own[i]}
        return {o.path for o in self.outputs
                if isinstance(o, JsonlOutput) and not o.closed and id(o) not in closing}

    def names(self) -> set[str]:
        return {self.lanes[i].source.name for i in self.keys.values()}

    # ------------------------------------------------------------- removing

    def retire(self, source_id: int) -> None:
        """A camera removed: its frames are through and it ended (`Pipeline._end_source`: its tracks' end
        events written, its own outputs closed whole). Nothing goes to its outputs any more; Home Assistant
        clears its entities, the web view stops serving it live."""
        lane = self.lanes[source_id]
        lane.removed = True
        self.keys = {k: i for k, i in self.keys.items() if i != source_id}
        for output in self.outputs_of[source_id]:
            if hasattr(output, "remove_camera"):
                output.remove_camera(source_id)
            if hasattr(output, "remove_source"):
                output.remove_source(lane.source.name)
            if isinstance(output, JsonlOutput):
                output.flush()  # its lines are out before a camera that goes on in the file writes after them
        self.outputs_of[source_id] = []

    # --------------------------------------------------------------- adding

    def add(self, camera: NewCamera, nireq: int, start_lane: Callable[[Lane], None]) -> int:
        """A camera added: its outputs made, the stages and the motion gate extended, shared outputs joined,
        then its lane started (`start_lane`: the scheduler's `add_lane`). Its id is returned."""
        sub, source = camera.plan, camera.plan.sources[0]
        plan = dataclasses.replace(sub.plans[0], index=len(self.lanes))
        source_id = plan.index
        joined = _Joined(1)
        _open_outputs(sub, [camera.info], joined)
        shared = self._shared(camera, sub.tracking[0])
        self._extend_stages(camera, sub, source_id, any(o.shows_pictures for o in joined.all))
        self.meter.add_source()
        lane = lanes_for(sub.sources, [camera.info], [plan.source.policy], sub.filters, nireq,
                         self.meter.timers["decode"], [plan.detect.fps])[0]
        lane.id = source_id
        given = dataclasses.replace(camera.settings, index=source_id)
        for kind, lists in (("plans", given), ("sources", source), ("tracking", sub.tracking[0]),
                            ("infos", camera.info), ("scenes", camera.scene)):
            getattr(self, kind).append(lists)
        self.outputs += joined.all
        self.outputs_of.append(joined.of[0] + shared)
        self.own.append(joined.own[0])
        for own in self.own:  # a file one camera wrote alone is shared now: it closes with the run, not the camera
            own[:] = [o for o in own if not any(o is s for s in shared)]
        self.added.append(source)
        self._record_files(sub, [camera.key])
        for output in shared:
            if hasattr(output, "add_camera"):
                output.add_camera(source_id, hass_camera(sub, 0), source.health)
            if hasattr(output, "add_source"):
                output.add_source(source_id, source.name, *served_files(joined.all),
                                  live_taps([source], [camera.info]).get(0), camera.info.fps)
        self.keys[camera.key] = source_id
        start_lane(lane)
        return source_id

    def _shared(self, camera: NewCamera, tracks: bool) -> list[Output]:
        """The outputs of the run the camera joins, in the order the wiring joins them (files, Home Assistant,
        MQTT, the window, the web view)."""
        kinds: tuple[type, ...] = (WindowOutput,)
        if self.plan.mqtt is not None and tracks:
            from ..outputs.hass import HassOutput
            from ..outputs.mqtt import MqttOutput

            kinds += (HassOutput, MqttOutput)
        if self.plan.config.web.listen:
            from ..web import WebView

            kinds += (WebView,)
        return [o for o in self.outputs
                if (isinstance(o, JsonlOutput) and not o.closed and o.path in camera.joins) or isinstance(o, kinds)]

    def _extend_stages(self, camera: NewCamera, sub: RunPlan, source_id: int, shows_pictures: bool) -> None:
        """The stages and the motion gate take the new id; one the run did not have is made for the ids before it
        (where it does nothing: no camera before needed it) and put in its place. `shows_pictures`: an output of
        the camera's own shows its frames (an annotated recording)."""
        self.motion.add(sub.plans[0].detect)
        if sub.plans[0].detect.motion and not any(isinstance(s, ReuseDetections) for s in self.stages):
            self._insert(ReuseDetections())
        if self.events is None and sub.tracking[0]:
            track, self.events = track_stages(self._so_far(), self.scenes, self.infos)
            self._insert(track)
            self._insert(self.events)
        if self.events is not None:
            self.events.extend(track_stages(sub, [camera.scene], [camera.info])[1])
        if self.clips is None and sub.plans[0].events.clips:
            self.clips = clip_stage(self._so_far(), self.infos, self.link_url)
            self._insert(self.clips)
        if self.clips is not None:
            self.clips.extend(clip_stage(sub, [camera.info], self.link_url))
        self._draw(source_id, bool(sub.plans[0].events.clips), shows_pictures)

    def _draw(self, source_id: int, clips: bool, shows_pictures: bool) -> None:
        """A camera whose clips or recording show the drawing, added to a run without a stage drawing every frame:
        its frames are drawn (`DrawSome`), as a run started with it would draw them (`who_draws`)."""
        config = self.plan.config
        if who_draws(config.overlay.draw, clips, shows_pictures, bool(config.web.listen)) is not Drawing.STAGE:
            return
        stage = next((s for s in self.stages if isinstance(s, Annotate)), None)
        if stage is None:
            stage = DrawSome(Annotator(config.overlay))
            self._insert(stage)
        if isinstance(stage, DrawSome):  # a run's own draw stage draws every frame already
            stage.sources.add(source_id)

    def _so_far(self) -> RunPlan:
        """The run's plan with every id so far (removed ones too): what a stage made now is made for."""
        return dataclasses.replace(self.plan, plans=tuple(self.plans), sources=tuple(self.sources),
                                   tracking=tuple(self.tracking), targets=())

    def _insert(self, stage: Stage) -> None:
        """A stage the run did not have, in its place (wiring.STAGE_ORDER)."""
        self.stages[:] = in_order([*self.stages, stage])
