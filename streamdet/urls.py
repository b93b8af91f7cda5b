"""Telling source kinds apart by how they are written, keeping credentials out of sight, listen and server addresses."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, unquote, urlsplit

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(spec: str) -> str | None:
    """The URL scheme in lower case, or None for a path or camera index."""
    match = _SCHEME.match(spec)
    return match.group(1).lower() if match else None


def is_camera_spec(spec: str) -> bool:
    return spec.isdigit() or spec.startswith("/dev/video")


# Query and path parameters whose values are shown; every other value is masked,
# since cameras name their secrets freely (loginpas=, pw=, passwd=, code=).
_HARMLESS_PARAMS = frozenset({
    "channel", "ch", "subtype", "stream", "streamtype", "profile", "res", "resolution", "width", "height",
    "fps", "framerate", "codec", "videocodec", "transport", "tcp", "unicast", "quality", "camera", "cam",
})
_PASSWORD_HINT = "percent-encode / ? # @ in the password (e.g. %2F for /, %40 for @)"


def _split(url: str) -> tuple[str, str | None, str, str, bool]:
    """(scheme://, userinfo or None, host[:port], path?query#fragment, stray '@' after the host).

    The userinfo ends at the last '@' before the host. An '@' after the first
    '/', '?' or '#' means a password holding one of those raw: then all up to
    the last '@' of the URL counts as userinfo, so no part of it is ever shown.
    """
    match = _SCHEME.match(url)
    head = match.group(0) if match else ""
    rest = url[len(head):]
    end = len(re.match(r"[^/?#]*", rest).group(0))
    authority, tail = rest[:end], rest[end:]
    if "@" in tail:
        userinfo, _, after = rest.rpartition("@")
        end = len(re.match(r"[^/?#]*", after).group(0))
        return head, userinfo, after[:end], after[end:], True
    if "@" in authority:
        userinfo, _, hostport = authority.rpartition("@")
        return head, userinfo, hostport, tail, False
    return head, None, authority, tail, False


def _mask_params(text: str) -> str:
    """`a=1&b=2` with every value whose name is not known to be harmless replaced by ***."""
    items = []
    for item in text.split("&"):
        name, sep, value = item.partition("=")
        harmless = unquote(name).lower() in _HARMLESS_PARAMS
        items.append(item if harmless or (sep and not value) or not item else (f"{name}=***" if sep else "***"))
    return "&".join(items)


def _mask_tail(tail: str) -> str:
    rest, hash_, fragment = tail.partition("#")
    path, question, query = rest.partition("?")
    # Some cameras take their credentials in the path (/user=admin&password=x&channel=1.sdp).
    path = "/".join(_mask_params(part) if "=" in part else part for part in path.split("/"))
    return path + question + _mask_params(query) + (hash_ + "***" if fragment else hash_)


def mask_url(url: str) -> str:
    """The URL as it may be shown: user, password and every query value not known to be harmless as ***.

    The one masker of the project (sources, MQTT, servers); it never fails and
    never shows any part of the userinfo, however the URL is written.
    """
    head, userinfo, hostport, tail, _ = _split(url)
    if not head and userinfo is None:
        return url  # a file, folder or camera index
    shown_user = "" if userinfo is None else ("***:***@" if ":" in userinfo else "***@")
    return head + shown_user + hostport + _mask_tail(tail)


def check_url(url: str) -> None:
    """ValueError, naming the problem and never the userinfo, for a URL no client can use as written."""
    shown = mask_url(url)
    head, _, hostport, _, stray = _split(url)
    example = f"{head or 'rtsp://'}host:port" + ("" if head.lower().startswith("mqtt") else "/path")
    if stray:
        raise ValueError(f"'{shown}': an '@' after the host (a password holding / ? # cuts the URL short); "
                         f"{_PASSWORD_HINT}, and write any other '@' as %40")
    if hostport.startswith("["):
        close = hostport.find("]")
        host, port = hostport[1:close], hostport[close + 1:]
        if close < 0 or (port and not port.startswith(":")):
            raise ValueError(f"'{shown}': write an IPv6 host in brackets, as {example.replace('host', '[::1]')}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{shown}': [{host}] is not an IPv6 address") from None
        port = port[1:]
    else:
        if "[" in hostport or "]" in hostport:
            raise ValueError(f"'{shown}': write an IPv6 host in brackets, as {example.replace('host', '[::1]')}")
        host, _, port = hostport.partition(":")
    if not host:
        raise ValueError(f"'{shown}': the URL has no host; write it as {example}")
    if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
        raise ValueError(f"'{shown}': the port must be a number from 1 to 65535 (and {_PASSWORD_HINT})")


# Names a path takes for the folder it is in or the one above (`clips/{name}` with `..` is `clips/..`).
NOT_NAMES = ("", ".", "..")


def usable_name(name: str, instead: str) -> str:
    """`name`, or `instead` when a path would take it for a folder (see NOT_NAMES)."""
    return instead if name in NOT_NAMES else name


def safe_name(url: str) -> str:
    """A file-safe name from host, port and path, with no credentials: 192.168.1.20_554_stream1."""
    parts = urlsplit(mask_url(url))  # masked: some cameras take their credentials in the path
    host = parts.hostname or "camera"
    port = f"_{parts.port}" if parts.port else ""
    path = re.sub(r"[^A-Za-z0-9]+", "_", parts.path).strip("_")
    return usable_name(re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{host}{port}" + (f"_{path}" if path else "")), "camera")


def link(base: str, *segments: str) -> str:
    """`base` (ending in '/') and the path segments, each percent-encoded whole: a name holding '/', '?',
    '#' or '%' stays one segment of the path, not a query, a fragment or an escape."""
    return base + "/".join(quote(s, safe="") for s in segments)


def check_public_url(url: str) -> str:
    """web.public_url checked (http(s)://HOST[:PORT][/PATH], no credentials, query or fragment), ending in '/'."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  a port that is no number raises here
    except ValueError:
        parts = None
    if parts is None or scheme_of(url) not in ("http", "https") or not parts.hostname:
        raise ValueError(f"public_url {shown!r}: write the address others open this web view at, as "
                         "http(s)://HOST[:PORT][/PATH], e.g. http://camera-box.lan:8080/")
    if "@" in parts.netloc:
        raise ValueError(f"public_url {shown!r}: no user or password in it (links with it go into events files "
                         "and MQTT messages; the web view's token is web.token)")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"public_url {shown!r}: no query or fragment; links are made by adding paths to it")
    return url if url.endswith("/") else url + "/"


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
