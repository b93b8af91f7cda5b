"""Who may see what, decided in one place: who is asking (the machine token, a login's session, or anybody
when the web view is open) becomes an `Access` (a role and the cameras it may see), which the server's gate
holds against the route asked for and the handlers that list cameras filter by.

- The machine token (web.token: Prometheus, scripts) has the admin's rights; web.metrics_token reads the
  routes marked `metrics` only. Without web.users and web.token (loopback only), everybody is an admin.
- With web.users, every route but the public ones needs a session (or a token): a browser asking for a page
  is sent to /login, anything else gets 401.
- A route's camera (`Route.camera`) is served only to those who may see it (403); admin-only routes (and
  routes that say nothing of what they show) only to admins (403).
- State-changing requests (POST, PUT, DELETE) made with a session carry its CSRF token (X-CSRF-Token); one
  made without a token from another site's page (an Origin not this host) is refused, logins or none.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from ..config.users import Role
from ..config.web import WebConfig
from .logins import Logins
from .responses import HEADERS, json_response
from .route import Route

SESSION_COOKIE = "streamdet_session"
_CHANGES = ("POST", "PUT", "DELETE", "PATCH")


@dataclass(frozen=True)
class Access:
    """What the asker may see: `cameras` None is every camera; `name` the login (None: a token, or nobody)."""

    role: Role
    cameras: frozenset[str] | None = None
    name: str | None = None
    csrf: str | None = None     # the session's CSRF token, for the page (GET /api/me)

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, camera: str) -> bool:
        return self.cameras is None or camera in self.cameras


ADMIN = Access("admin")
NOBODY = Access("viewer", frozenset())  # on public routes: sees no camera
# Where the gate leaves the asker's Access on the request (a typed key where aiohttp has them, from 3.12).
_ACCESS = web.RequestKey("streamdet.access", Access) if hasattr(web, "RequestKey") else "streamdet.access"


def access_of(request: web.Request) -> Access:
    """The asker's Access, as the gate found it (a KeyError if the gate never saw the request: fail closed)."""
    return request[_ACCESS]


def named_camera(request: web.Request) -> str:
    """The camera a route names in its path (`{name}`)."""
    return request.match_info["name"]


def same_origin(request: web.Request) -> bool:
    """False when a browser says the request comes from a page of another site (Origin, Sec-Fetch-Site)."""
    origin = request.headers.get("Origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
        return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


class Gate:
    """The decision for each request: the asker's Access left on it, or the answer that refuses it."""

    def __init__(self, web_config: WebConfig, logins: Logins | None):
        self._web = web_config
        self._logins = logins

    def admit(self, request: web.Request, route: Route | None) -> web.Response | None:
        """None to go on (access_of(request) then says who asks), else the refusal to send."""
        if route is not None and route.public:
            request[_ACCESS] = NOBODY
            return None
        access = self._who(request, route)
        if isinstance(access, web.Response):
            return access
        request[_ACCESS] = access
        if route is not None and (route.admin or not route.decided) and not access.admin:
            return _refused("this needs an admin's login")
        if route is not None and route.camera is not None:
            camera = route.camera(request)
            if camera is None and access.cameras is not None:  # no camera's: nothing a restricted asker may have
                return web.Response(status=404, text="no such file or source in this run\n", headers=HEADERS)
            if camera is not None and not access.may_see(camera):
                return _refused(f"{camera!r} is not one of your cameras")
        return None

    def _who(self, request: web.Request, route: Route | None) -> Access | web.Response:
        given = _token(request).encode()
        if self._web.token and hmac.compare_digest(given, self._web.token.encode()):
            return ADMIN
        if (self._web.metrics_token and route is not None and route.metrics
                and hmac.compare_digest(given, self._web.metrics_token.encode())):
            return ADMIN
        if self._logins is not None:
            return self._session(request)
        if self._web.token:
            return self._unknown(request, "a token is needed: send 'Authorization: Bearer TOKEN' or ?token=TOKEN")
        if request.method in _CHANGES and not same_origin(request):
            return _refused("a request from another site's page")
        return ADMIN

    def _session(self, request: web.Request) -> Access | web.Response:
        session = self._logins.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        user = self._logins.user_of(session) if session is not None else None
        if user is None:
            if session is not None:
                self._logins.sessions.close(session.id)
            return self._unknown(request, "log in at /login, or send 'Authorization: Bearer TOKEN'")
        if request.method in _CHANGES and not hmac.compare_digest(request.headers.get("X-CSRF-Token", "").encode(),
                                                                   session.csrf.encode()):
            return _refused("the X-CSRF-Token header is missing or wrong (GET /api/me gives it)")
        cameras = frozenset(user.cameras) if user.cameras is not None and user.role != "admin" else None
        return Access(user.role, cameras, user.name, session.csrf)

    def _unknown(self, request: web.Request, why: str) -> web.Response:
        """401; a browser asking for a page (with logins) is sent to the login page instead."""
        if (self._logins is not None and request.method in ("GET", "HEAD")
                and "text/html" in request.headers.get("Accept", "")):
            return web.Response(status=303, headers={**HEADERS, "Location": "/login"})
        headers = {**HEADERS, "WWW-Authenticate": 'Bearer realm="streamdet"'}
        if self._logins is None:
            return web.Response(status=401, text=why + "\n", headers=headers)
        response = json_response({"error": why}, status=401)
        response.headers["WWW-Authenticate"] = headers["WWW-Authenticate"]
        return response


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.query.get("token", "")


def _refused(why: str) -> web.Response:
    return json_response({"error": why}, status=403)
