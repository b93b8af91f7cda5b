"""Telling source kinds apart by how they are written, keeping credentials out of sight, listen and server addresses."""

from __future__ import annotations

import ipaddress
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


def parse_listen(text: str) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT` as (host, port); 127.0.0.1 when no host is given."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]:|([^:\[\]]*):)?(\d{1,5})", text.strip())
    if not match or int(match.group(3)) > 65535:
        raise ValueError(f"listen {text!r} is not PORT or HOST:PORT (for example 8080 or 0.0.0.0:8080)")
    host = match.group(1) or match.group(2) or "127.0.0.1"
    return host, int(match.group(3))


def parse_server(url: str) -> tuple[str, str, int]:
    """A KServe v2 gRPC server's `grpc://HOST:PORT` or `grpcs://HOST:PORT` as (scheme, host, port)."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if scheme_of(url) not in ("grpc", "grpcs") or parts is None or not parts.hostname or port is None:
        raise ValueError(f"server {shown!r}: write grpc://HOST:PORT (or grpcs://HOST:PORT for TLS), "
                         "the KServe v2 gRPC port of OpenVINO Model Server, Triton or KServe")
    if parts.path.strip("/") or parts.query or parts.username or parts.password:
        raise ValueError(f"server {shown!r}: give only grpc[s]://HOST:PORT; the model is inference.server_model, "
                         "a token inference.server_token or STREAMDET_SERVER_TOKEN")
    return scheme_of(url), parts.hostname, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
