"""HTTPS for the web view: the server's TLS context from `web.tls_cert` and `web.tls_key`, made at start
(before any source opens), so a missing, unreadable or mismatched file is one line naming it, in a moment."""

from __future__ import annotations

import ssl

from ..config.web import WebConfig
from ..errors import ConfigError

# A PEM certificate chain or key is a few kilobytes; a bigger file is the wrong one, and is not read whole.
_MOST_BYTES = 1 << 20
# How long a client may take over the TLS handshake: as long as it has for its first request's headers.
HANDSHAKE_S = 5.0


def server_context(web: WebConfig) -> ssl.SSLContext | None:
    """The context the web view serves HTTPS (and so WSS) with; None without `web.tls_cert` (plain HTTP)."""
    if not web.tls_cert:
        return None
    _pem(f"web.tls_cert '{web.tls_cert}'", web.tls_cert, b"-----BEGIN CERTIFICATE-----", "certificate")
    _pem(f"web.tls_key '{web.tls_key}'", web.tls_key, b"PRIVATE KEY-----", "private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    asked = []

    def passphrase() -> bytes:
        # Without this, OpenSSL would ask for it on the terminal, which a service does not have.
        asked.append(True)
        return b""

    try:
        context.load_cert_chain(web.tls_cert, web.tls_key, password=passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"web.tls_key '{web.tls_key}' is not the key of web.tls_cert '{web.tls_cert}': "
                              "give the key the certificate was made for") from None
        if asked:
            raise ConfigError(f"web.tls_key '{web.tls_key}' is protected by a passphrase, which a service cannot "
                              "type: write it without one (openssl pkey -in KEY -out NEWKEY) and keep it readable "
                              "only by streamdet's user") from None
        raise ConfigError(f"web.tls_cert '{web.tls_cert}' and web.tls_key '{web.tls_key}' are not a usable "
                          f"certificate and key ({exc.reason or exc.strerror or exc})") from None
    except OSError as exc:  # changed between the check above and now
        raise ConfigError(f"web.tls_cert '{web.tls_cert}' or web.tls_key '{web.tls_key}': "
                          f"cannot be read ({exc.strerror or exc})") from None
    return context


def _pem(where: str, path: str, marker: bytes, what: str) -> None:
    """A readable file with `marker` in it, or one line saying which file is wrong and how."""
    try:
        with open(path, "rb") as file:
            text = file.read(_MOST_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{where}: cannot be read (permission denied): streamdet's user needs to read it") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    if marker not in text:
        raise ConfigError(f"{where}: holds no PEM {what}; docs/service.md says how to make one with openssl")
