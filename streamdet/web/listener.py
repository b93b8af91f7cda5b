"""The web view's listening socket: bound before anything slow starts (a busy port fails in a moment), and
the address it serves at, known before the server starts; the address links to it name."""

from __future__ import annotations

import errno
import ipaddress
import socket

from ..config.web import WebConfig
from ..errors import ConfigError
from ..urls import parse_listen


def bind_listener(web: WebConfig) -> socket.socket:
    """The listening socket for `web.listen`, bound before anything slow starts, so a busy port fails in a moment."""
    host, port = parse_listen(web.listen)
    where = f"web.listen {web.listen}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"{where}: cannot resolve {host!r} ({exc.strerror}); give an address of this machine, "
                          "such as 127.0.0.1 or 0.0.0.0") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = {
            errno.EADDRINUSE: "the port is in use (another streamdet?): pick another port or stop that program",
            errno.EACCES: "ports below 1024 need root: pick a port of 1024 or more",
            errno.EADDRNOTAVAIL: "this machine has no such address: use 127.0.0.1, 0.0.0.0 or one of its own",
        }.get(exc.errno, exc.strerror or str(exc))
        raise ConfigError(f"{where}: cannot listen there: {hint}") from None
    sock.setblocking(False)
    return sock


def listener_url(sock: socket.socket, https: bool = False) -> str:
    """Where a bound listener serves: known before the web view starts, so what is built before it (the
    clips stage, for its events' links) is given the address rather than asking for it later."""
    host, port = sock.getsockname()[:2]
    return f"{'https' if https else 'http'}://{f'[{host}]' if ':' in host else host}:{port}/"


def link_url(web: WebConfig, sock: socket.socket) -> str | None:
    """Where links in events and MQTT messages point: `web.public_url`, else the host `web.listen` names with
    the port bound. None for a wildcard listener (0.0.0.0, ::): no address of this machine is known to be
    one others reach it at (its host name often resolves only here, or names a container), and a link
    that does not open is worse than none."""
    if web.public_url:
        return web.public_url
    host, _ = parse_listen(web.listen)
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return None
    except ValueError:
        pass  # a host name, as given: the one the user reaches this machine by
    port = sock.getsockname()[1]
    return f"{'https' if web.tls_cert else 'http'}://{f'[{host}]' if ':' in host else host}:{port}/"
