"""A route as a route table (streamdet.web.live_routes, streamdet.web.review_routes) hands it to the server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """A route. `long`: a request that may last as long as its viewer watches (an MJPEG stream, or a clip
    or segment that a <video> plays while it downloads); these take the viewers' places (web.max_clients), so
    they never crowd out the page, JSON and /healthz, which share the short requests' places. `admin`: only
    those with the admin's rights may use it (it changes the run, or shows every camera). `public`: served to
    anybody, with no token or login: it holds nothing of the cameras or the run (the pages' scripts and styles).
    A GET route answers HEAD too."""

    path: str
    handler: Handler
    long: bool = False
    method: Literal["GET", "POST", "PUT", "DELETE"] = "GET"
    admin: bool = False
    public: bool = False
