"""The pages' scripts and styles, served from the server's own routes (`/static/{file}`) so that no page needs
inline code, which the Content-Security-Policy then refuses everywhere (an injected script has nowhere to run).

Only the files shipped in `streamdet/web/static/` exist, read once when the server starts; a name is looked up
among them, never joined to a path."""

from __future__ import annotations

import importlib.resources
import mimetypes

from aiohttp import web

from .responses import HEADERS
from .route import Route

_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


class StaticFiles:
    """The files of streamdet/web/static/, in memory, each with its Content-Type."""

    def __init__(self) -> None:
        folder = importlib.resources.files(__package__).joinpath("static")
        self._files = {entry.name: (entry.read_bytes(), _TYPES.get("." + entry.name.rpartition(".")[2],
                                                                    mimetypes.guess_type(entry.name)[0]
                                                                    or "application/octet-stream"))
                       for entry in folder.iterdir() if entry.is_file() and not entry.name.startswith(".")}

    def routes(self) -> list[Route]:
        return [Route("/static/{file}", self._handler, public=True)]

    async def _handler(self, request: web.Request) -> web.Response:
        found = self._files.get(request.match_info["file"])
        if found is None:
            raise web.HTTPNotFound(text="no such file\n", headers=HEADERS)
        body, content_type = found
        # The files change only with streamdet itself; the page's address is what a new version changes.
        return web.Response(body=body, headers={**HEADERS, "Content-Type": content_type,
                                                "Cache-Control": "private, max-age=300"})
