"""The web view's admin routes: `POST /api/reload` reads the settings file again and applies it (see
streamdet.assembly.reload), answering with what changed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from .responses import HEADERS, json_response
from .route import Route

if TYPE_CHECKING:
    from ..assembly.changes import Reload


class AdminRoutes:
    """Routes that change the run; each is `admin=True` (only the admin's rights may use it)."""

    def __init__(self, reload: Callable[[], Reload] | None):
        """`reload`: reads the settings again and applies them, waiting for the outcome; None for a run started
        without a settings file."""
        self._reload = reload

    def routes(self) -> list[Route]:
        return [Route("/api/reload", self._reload_handler, method="POST", admin=True)]

    async def _reload_handler(self, request: web.Request) -> web.Response:
        if self._reload is None:
            raise web.HTTPNotFound(text="this run was started without a settings file (--config or ./config.yaml): "
                                        "there is nothing to read again\n", headers=HEADERS)
        # Off the loop: reading the file and opening a new camera take time, and the apply waits for the output loop.
        done = await asyncio.get_running_loop().run_in_executor(None, self._reload)
        return json_response(done.to_dict(), status=409 if done.error is not None else 200)
