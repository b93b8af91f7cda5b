"""The web view's settings (`web:`): where it listens, who may watch, and how much it may serve."""

from __future__ import annotations

from dataclasses import dataclass

from ..urls import check_public_url, is_loopback, parse_listen
from .fields import check_fields

MAX_WEB_CLIENTS = 1024  # each is a coroutine and a socket; past this a proxy or a CDN should serve them


@dataclass
class WebConfig:
    listen: str = ""
    token: str | None = None  # or STREAMDET_WEB_TOKEN, read by the loader
    fps: float = 10.0
    max_width: int = 1280
    quality: int = 80
    max_clients: int = 32
    client_timeout: float = 10.0
    metrics: bool = True  # Prometheus /metrics on the web view's listener (same token)
    public_url: str | None = None  # where others open the web view: the base of links in events and MQTT
    users: str = ""  # a users file (streamdet user add): logins with roles; "" = none
    tls_cert: str = ""  # PEM certificate (chain) for HTTPS; "" = plain HTTP (set with tls_key)
    tls_key: str = ""   # its private key (PEM, no passphrase)
    allow_insecure: bool = False  # allow logins in clear beyond loopback (a TLS proxy in front does the HTTPS)
    session_idle: float = 60.0  # minutes a login lasts without a request (the page asks every second)
    metrics_token: str | None = None  # or STREAMDET_METRICS_TOKEN: reads /metrics only (Prometheus)

    def __post_init__(self) -> None:
        check_fields(self)
        self.public_url = check_public_url(self.public_url) if self.public_url else None
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: give both (the certificate and its key) or neither")
        if self.listen:
            host, port = parse_listen(self.listen)
            if not is_loopback(host) and self.users and not self.tls_cert and not self.allow_insecure:
                raise ValueError(f"listen {self.listen!r} is reachable from other machines, with logins (web.users) "
                                 "and without TLS: passwords would travel in clear; set web.tls_cert and web.tls_key, "
                                 "or web.allow_insecure: true when a TLS proxy in front serves HTTPS")
            if not is_loopback(host) and not self.token and not self.users:
                raise ValueError(f"listen {self.listen!r} is reachable from other machines: set web.token "
                                 "(or STREAMDET_WEB_TOKEN) or web.users (logins) so only those let in can watch, or "
                                 "listen on 127.0.0.1")
            # Only with the web view on: a token left in the environment must not stop a run that serves nothing.
            if self.token is not None and len(self.token) < 8:
                raise ValueError("token (web.token or STREAMDET_WEB_TOKEN) must be at least 8 characters "
                                 "(it is all that guards the cameras)")
            if self.metrics_token is not None and len(self.metrics_token) < 8:
                raise ValueError("metrics_token (web.metrics_token or STREAMDET_METRICS_TOKEN) must be at least "
                                 "8 characters")
        if not 0 < self.fps <= 60:
            raise ValueError("fps must be more than 0 and at most 60")
        if not 16 <= self.max_width <= 7680:
            raise ValueError("max_width must be between 16 and 7680 pixels")
        if not 1 <= self.quality <= 100:
            raise ValueError("quality must be between 1 and 100")
        if not 1 <= self.max_clients <= MAX_WEB_CLIENTS:
            raise ValueError(f"max_clients must be between 1 and {MAX_WEB_CLIENTS}")
        if not 0 < self.session_idle <= 43200:
            raise ValueError("session_idle must be a positive number of minutes (at most 43200, 30 days)")
        if not 0 < self.client_timeout <= 3600:
            raise ValueError("client_timeout must be a positive number of seconds (at most 3600)")
