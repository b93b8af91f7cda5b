"""The web view's review routes: the events page and its API, the snapshots and clips the events name, a
source's recordings page and API, its segments and their detections files.

A file is served only when the run's own lookups (streamdet.web.review) name it: a requested name is
matched against those, never joined to a folder. Clips and segments are long routes (a <video> plays them
while they download).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from .access import access_of, named_camera
from .responses import HEADERS, REVIEW_CSP, file_response, json_response, query_of, segment_listing, source_id
from .review import EventStore, ListSegments, detections_of
from .route import Route


class ReviewRoutes:
    """What the run has left behind: ended tracks, their pictures and clips, the recordings."""

    def __init__(self, names: list[str], store: EventStore, recordings: dict[str, ListSegments]):
        self._index = {name: i for i, name in enumerate(names)}
        self._store = store
        self._recordings = recordings
        pages = importlib.resources.files(__package__)
        head = pages.joinpath("review-head.html").read_text()
        self._events_page = (head.replace("$title", "streamdet events") + pages.joinpath("events.html").read_text()).encode()
        self._recordings_page = (head.replace("$title", "streamdet recordings")
                                 + pages.joinpath("recordings.html").read_text()).encode()

    def add_source(self, source_id: int, name: str) -> None:
        """A camera added by a reload; a removed one stays: its recordings are still listed."""
        self._index[name] = source_id

    def routes(self) -> list[Route]:
        return [Route("/events", self._events_handler, shows="nothing"),
                Route("/api/events", self._events_json, shows="cameras"),
                Route("/snapshots/{file}", self._snapshot_file, camera=self._camera_of("snapshot")),
                Route("/clips/{file}", self._clip_file, long=True, camera=self._camera_of("clip")),
                Route("/recordings/{name}", self._recordings_handler, camera=named_camera),
                Route("/api/recordings/{name}", self._recordings_json, camera=named_camera),
                Route("/recordings/{name}/{file}", self._segment_file, long=True, camera=named_camera),
                Route("/api/recordings/{name}/{file}", self._detections_file, camera=named_camera)]

    def _camera_of(self, kind: str):
        """The camera whose event named the snapshot or clip a request asks for (None: no event did)."""
        return lambda request: self._store.camera_of(kind, request.match_info["file"])

    async def _events_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._events_page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": REVIEW_CSP})

    async def _events_json(self, request: web.Request) -> web.Response:
        query, access = query_of(request), access_of(request)
        if query.source is not None and not access.may_see(query.source):
            raise web.HTTPForbidden(text=f"{query.source!r} is not one of your cameras\n", headers=HEADERS)
        found = self._store.find(dataclasses.replace(query, cameras=access.cameras))
        more = None
        if len(found) == query.limit:
            params = {k: v for k, v in request.query.items() if k not in ("cursor", "token")}
            params["cursor"] = str(found[-1].id)
            more = "/api/events?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
        return json_response({"events": [e.to_dict() for e in found], "next": more})

    async def _snapshot_file(self, request: web.Request) -> web.StreamResponse:
        return file_response(self._store.still_written(self._store.snapshot(request.match_info["file"])))

    async def _clip_file(self, request: web.Request) -> web.StreamResponse:
        return file_response(self._store.still_written(self._store.clip(request.match_info["file"])))

    def _segments(self, request: web.Request) -> list[tuple[Path, float]]:
        source_id(request, self._index)  # 404 for a name that is no source of this run
        listing = self._recordings.get(request.match_info["name"])
        return listing() if listing is not None else []

    async def _recordings_handler(self, request: web.Request) -> web.Response:
        source_id(request, self._index)
        return web.Response(body=self._recordings_page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": REVIEW_CSP})

    async def _recordings_json(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return json_response({"source": name, "recording": name in self._recordings,
                              "segments": segment_listing(name, self._segments(request))})

    async def _segment_file(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["file"]
        return file_response(next((path for path, _ in self._segments(request) if path.name == wanted), None))

    async def _detections_file(self, request: web.Request) -> web.StreamResponse:
        """A segment's detections file: only beside a segment in the camera's record, never any other .jsonl."""
        wanted = request.match_info["file"]
        beside = (detections_of(path) for path, _ in self._segments(request))
        found = next((path for path in beside if path is not None and path.name == wanted), None)
        response = file_response(found)
        response.content_type = "application/jsonl"
        return response
