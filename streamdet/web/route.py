"""A route as a route table (streamdet.web.live_routes, streamdet.web.review_routes) hands it to the server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The camera a request of a route shows, from its path or from the file it names; None when it names none of
# the run's (the handler answers 404).
CameraOf = Callable[[web.Request], "str | None"]


@dataclass(frozen=True)
class Route:
    """A route. `long`: a request that may last as long as its viewer watches (an MJPEG stream, or a clip
    or segment that a <video> plays while it downloads); these take the viewers' places (web.max_clients), so
    they never crowd out the page, JSON and /healthz, which share the short requests' places. `admin`: only
    those with the admin's rights may use it (it changes the run, or shows every camera). `public`: served to
    anybody, with no token or login: it holds nothing of the cameras or the run (the pages' scripts and styles).
    Every other route says what it shows, so that the server knows whom to show it (streamdet.web.access):
    `camera`, the one camera a request shows, which the server serves only to those who may see it; or
    `shows`: "cameras", several, the handler giving each asker only those it may see (`access_of`), or
    "nothing" of any camera (a page's frame, who is logged in). `metrics`: web.metrics_token reads it too.
    A GET route answers HEAD too."""

    path: str
    handler: Handler
    long: bool = False
    method: Literal["GET", "POST", "PUT", "DELETE"] = "GET"
    admin: bool = False
    public: bool = False
    camera: CameraOf | None = None
    shows: Literal["", "cameras", "nothing"] = ""
    metrics: bool = False

    @property
    def decided(self) -> bool:
        """Whether it says who may use it: public, admin-only, one camera's, or shown to each as it may see."""
        return self.public or self.admin or self.camera is not None or bool(self.shows)
