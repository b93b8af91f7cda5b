"""The web view's responses that are not pages: JSON (no NaN), files this run wrote (with Range), the
review API's query, the 404 for a source that is not the run's; the headers every response carries and the
pages' Content-Security-Policy."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from .review import DEFAULT_LIMIT, MAX_LIMIT, Query, detections_of, parse_time, servable

HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a ?token= in the page's address stays out of other sites' logs
}
# Scripts and styles only from the server's own routes (streamdet.web.static): no inline code runs. The live
# players feed their <video> through Media Source Extensions, whose media is a blob: URL the page made itself.
PAGE_CSP = ("default-src 'none'; img-src 'self'; media-src blob:; connect-src 'self'; script-src 'self'; "
            "style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The review pages play clips and recordings in <video>: media-src too. Their code is files as well.
REVIEW_CSP = ("default-src 'none'; img-src 'self'; media-src 'self'; connect-src 'self'; script-src 'self'; "
              "style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The login page posts its form to its own address when its script does not run.
LOGIN_CSP = PAGE_CSP.replace("form-action 'none'", "form-action 'self'")


def source_id(request: web.Request, index: dict[str, int]) -> int:
    """The run's source named in the route (its place in the run); 404 for a name that is none of them."""
    name = request.match_info["name"]
    if name not in index:
        raise web.HTTPNotFound(text=f"no source named {name!r} in this run; see /api/sources\n", headers=HEADERS)
    return index[name]


def query_of(request: web.Request) -> Query:
    """/api/events' parameters; a bad one is a 400 naming it. A key given twice is refused, whatever it is:
    taking one of its values would answer another question than was asked (and `next` would ask yet another)."""
    q = request.query
    try:
        twice = next((key for key in q if len(q.getall(key)) > 1), None)
        if twice is not None:
            raise ValueError(f"{twice} is given {len(q.getall(twice))} times; give each parameter once")
        limit = int(q.get("limit", DEFAULT_LIMIT))
        cursor = int(q["cursor"]) if q.get("cursor") else None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be from 1 to {MAX_LIMIT}")
        return Query(source=q.get("source") or None, label=q.get("label") or None, zone=q.get("zone") or None,
                     after=parse_time(q["after"], "after") if q.get("after") else None,
                     before=parse_time(q["before"], "before") if q.get("before") else None,
                     cursor=cursor, limit=limit)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"bad query: {exc}\n", headers=HEADERS) from None


def file_response(path: Path | None) -> web.StreamResponse:
    """A file this run wrote, with Range and a Content-Type from its extension; 404 for anything else."""
    path = servable(path)
    if path is None:
        raise web.HTTPNotFound(text="no such file in this run\n", headers=HEADERS)
    return web.FileResponse(path, headers={"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                                           "Cache-Control": "private, max-age=60"})


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_response(value, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(finite(value), allow_nan=False), content_type="application/json",
                        headers=HEADERS, status=status)


def finite(value):
    """JSON has no NaN or infinity: a rate nobody could measure is null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def segment_listing(camera: str, segments: list[tuple[Path, float]]) -> list[dict]:
    """A camera's segments for the recordings page, newest first: name, start, size, where to get it and
    its detections file (a copy recording's), if it has one."""
    base = f"/recordings/{quote(camera, safe='')}/"
    listed = []
    for path, start in reversed(segments):
        try:
            size = path.stat().st_size
        except OSError:
            continue  # expired between the listing and now
        found = detections_of(path)
        listed.append({"name": path.name, "start": iso(start), "size": size, "url": base + quote(path.name, safe=""),
                       "detections": f"/api{base}{quote(found.name, safe='')}" if found else None})
    return listed
