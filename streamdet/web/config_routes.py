"""The admin's routes that change the run: the camera API (the `sources:` entries of the config file, read, added,
changed and removed one at a time) and the reload.

Each change is checked whole by the loader (same rules, same messages as the file at start-up), written back
atomically with the previous file kept as config.yaml.bak (streamdet.config.sources_file), then applied by the
run's reload; a change the run refuses is taken back, so the file and the run agree. Changes and reloads go one
at a time (a lock), and each reads the file anew under that lock, so an edit made by hand in between is the base
of the next change, never overwritten by a stale copy (one made while a change is being written is refused: 409).

Credentials never leave the server: answers show each camera's URLs masked (streamdet.urls.mask_url), and a PUT
that sends the masked URL back keeps the stored one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config.sources_file import (FileChanged, SourceNotFound, masked, put_entry, read_entries, read_entry,
                                   remove_entry, undo)
from ..errors import ConfigError
from .responses import HEADERS, finite
from .route import Route

if TYPE_CHECKING:
    from ..assembly.changes import Reload

NO_FILE = "this run has no config file (start it with --config FILE): there is nothing to change or reload"
NOT_RELOADABLE = "written to {file}; this run does not reload, so it takes effect when streamdet starts again"


def answer(status: int, value: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(finite(value), allow_nan=False, default=str),
                        content_type="application/json", headers=HEADERS)


def outcome(reload: Reload) -> dict[str, Any]:
    """A Reload as JSON: its fields and its line."""
    return {**{f.name: getattr(reload, f.name) for f in dataclasses.fields(reload)}, "line": reload.line()}


class ConfigRoutes:
    """`POST /api/reload` and `/api/config/sources[/{name}]`; every one admin-only (Route.admin)."""

    def __init__(self, config_file: Path | None, reload: Callable[[], Reload] | None):
        self._file = config_file
        self._reload = reload
        self._lock = asyncio.Lock()  # made on the server's loop, which serves every request

    def routes(self) -> list[Route]:
        return [Route("/api/reload", self._reload_handler, method="POST", admin=True),
                Route("/api/config/sources", self._list, admin=True),
                Route("/api/config/sources/{name}", self._read, admin=True),
                Route("/api/config/sources/{name}", self._put, method="PUT", admin=True),
                Route("/api/config/sources/{name}", self._delete, method="DELETE", admin=True)]

    async def _run(self, work: Callable[[], Any]) -> Any:
        """File work and the reload block: off the event loop, which serves the live streams meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def _reload_handler(self, request: web.Request) -> web.Response:
        if self._reload is None:
            return answer(404, {"error": NO_FILE if self._file is None else
                                "this run cannot reload (its cameras come from the command line, not the config file)"})
        async with self._lock:
            done = await self._run(self._reload)
        return answer(409 if done.error else 200, outcome(done) if not done.error else {"error": done.line()})

    async def _list(self, request: web.Request) -> web.Response:
        if self._file is None:
            return answer(404, {"error": NO_FILE})
        try:
            entries = await self._run(partial(read_entries, self._file))
        except ConfigError as exc:
            return answer(400, {"error": str(exc)})
        return answer(200, {"file": str(self._file), "sources": [masked(e) for e in entries]})

    async def _read(self, request: web.Request) -> web.Response:
        if self._file is None:
            return answer(404, {"error": NO_FILE})
        try:
            entry = await self._run(partial(read_entry, self._file, request.match_info["name"]))
        except SourceNotFound as exc:
            return answer(404, {"error": str(exc)})
        except ConfigError as exc:
            return answer(400, {"error": str(exc)})
        return answer(200, masked(entry))

    async def _put(self, request: web.Request) -> web.Response:
        if self._file is None:
            return answer(404, {"error": NO_FILE})
        try:
            given = await request.json()
        except ValueError:
            return answer(400, {"error": "the body must be JSON: the camera's keys as in config.yaml (url, "
                                         "detect_url, recording, events, ...)"})
        if not isinstance(given, dict):
            return answer(400, {"error": "the body must be a JSON object of the camera's keys (url, detect_url, ...)"})
        name = request.match_info["name"]
        return await self._change(partial(put_entry, self._file.resolve(), name, given), name)

    async def _delete(self, request: web.Request) -> web.Response:
        if self._file is None:
            return answer(404, {"error": NO_FILE})
        name = request.match_info["name"]
        return await self._change(partial(remove_entry, self._file.resolve(), name), name)

    async def _change(self, edit: Callable[[], Any], name: str) -> web.Response:
        """The file changed by `edit`, then the run by a reload; the file put back if the run refuses it."""
        async with self._lock:
            try:
                change = await self._run(edit)
            except SourceNotFound as exc:
                return answer(404, {"error": str(exc)})
            except FileChanged as exc:
                return answer(409, {"error": str(exc)})
            except ConfigError as exc:
                return answer(400, {"error": str(exc)})
            camera = None if change.removed else masked(await self._run(partial(read_entry, self._file, name)))
            status = 201 if change.created else 200
            if self._reload is None:
                return answer(status, {"camera": camera, "reload": None,
                                       "line": NOT_RELOADABLE.format(file=self._file)})
            done = await self._run(self._reload)
            if done.error:
                await self._run(partial(undo, self._file.resolve(), change))
                return answer(409, {"error": f"{done.line()}; the config file was put back as it was"})
        return answer(status, {"camera": camera, "reload": outcome(done), "line": done.line()})
