"""The login routes: the login page, logging in and out, and who is logged in (`/api/me`, which the page
asks for its user's role and the CSRF token its changes carry).

The session is a random cookie value (HttpOnly: no script reads it; SameSite=Strict: no other site's page
sends it; Secure over TLS), held in memory (streamdet.web.logins). Logging in is limited per client address
and checked off the loop; a name nobody has is checked against a dummy hash, so it takes as long as a wrong
password. Login is public, so it checks itself that a browser's request comes from this site's page.
"""

from __future__ import annotations

import importlib.resources
import json

from aiohttp import web

from .access import SESSION_COOKIE, access_of, same_origin
from .logins import Busy, Logins
from .responses import HEADERS, LOGIN_CSP, json_response
from .route import Route

_FORM = "application/x-www-form-urlencoded"


class LoginRoutes:
    """`/login`, `/logout` and `/api/me`; without logins (`logins` None) only `/api/me`, whose asker is then
    the admin (the token's holder, or anybody on a loopback view without a token)."""

    def __init__(self, logins: Logins | None):
        self._logins = logins
        self._page = importlib.resources.files(__package__).joinpath("login.html").read_bytes()

    def routes(self) -> list[Route]:
        me = Route("/api/me", self._me, shows="nothing")
        if self._logins is None:
            return [me]
        return [me, Route("/login", self._login_page, public=True),
                Route("/login", self._login, method="POST", public=True),
                Route("/logout", self._logout, method="POST", shows="nothing")]

    async def _login_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8",
                            headers={**HEADERS, "Content-Security-Policy": LOGIN_CSP})

    async def _login(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            return _error(403, "a login from another site's page")
        address = request.remote or ""
        wait = self._logins.failed.retry_after(address)
        if wait > 0:
            response = _error(429, f"too many failed logins from {address}; try again in {wait:.0f} s")
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        name, password = await _credentials(request)
        if not name or not password:
            return _error(400, "give a user name and a password")
        try:
            user = await self._logins.check(name, password)
        except Busy as exc:
            return _error(503, f"{exc}; try again in a moment")
        if user is None:
            self._logins.failed.failed(address)
            return _error(401, "wrong user name or password")
        self._logins.failed.succeeded(address)
        session = self._logins.sessions.open(user)
        if request.content_type == _FORM:  # the form sent without its script: back to the page
            response = web.Response(status=303, headers={**HEADERS, "Location": "/"})
        else:
            response = json_response({"name": user.name, "role": user.role})
        response.set_cookie(SESSION_COOKIE, session.id, path="/", httponly=True, samesite="Strict",
                            secure=request.secure)
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        self._logins.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
        response = json_response({"name": None})
        response.del_cookie(SESSION_COOKIE, path="/", samesite="Strict", secure=request.secure, httponly=True)
        return response

    async def _me(self, request: web.Request) -> web.Response:
        access = access_of(request)
        return json_response({"name": access.name, "role": access.role,
                              "cameras": sorted(access.cameras) if access.cameras is not None else None,
                              "csrf": access.csrf, "logins": self._logins is not None})


async def _credentials(request: web.Request) -> tuple[str, str]:
    """The name and password of a login, from a form or JSON; empty strings when not given."""
    try:
        if request.content_type == _FORM:
            form = await request.post()
            given = {key: form.get(key) for key in ("name", "password")}
        else:
            given = json.loads(await request.text())
    except (ValueError, UnicodeDecodeError):
        return "", ""
    if not isinstance(given, dict):
        return "", ""
    name, password = given.get("name"), given.get("password")
    return (name if isinstance(name, str) else ""), (password if isinstance(password, str) else "")


def _error(status: int, why: str) -> web.Response:
    response = json_response({"error": why})
    response.set_status(status)
    return response
