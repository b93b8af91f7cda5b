"""Telling source kinds apart by how they are written, and keeping credentials out of sight."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SECRET_KEYS = re.compile(r"pass|pwd|token|key|secret|auth|sig", re.IGNORECASE)


def scheme_of(spec: str) -> str | None:
    """The URL scheme in lower case, or None for a path or camera index."""
    match = _SCHEME.match(spec)
    return match.group(1).lower() if match else None


def is_camera_spec(spec: str) -> bool:
    return spec.isdigit() or spec.startswith("/dev/video")


def is_live_spec(spec: str) -> bool:
    return is_camera_spec(spec) or scheme_of(spec) in NETWORK_SCHEMES


def mask_url(url: str) -> str:
    """The URL with user, password and secret-looking query values replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = ("***:***" if ":" in userinfo else "***") + "@" + host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def safe_name(url: str) -> str:
    """A file-safe name from host, port and path, with no credentials: 192.168.1.20_554_stream1."""
    parts = urlsplit(url)
    host = parts.hostname or "camera"
    port = f"_{parts.port}" if parts.port else ""
    path = re.sub(r"[^A-Za-z0-9]+", "_", parts.path).strip("_")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{host}{port}" + (f"_{path}" if path else ""))
