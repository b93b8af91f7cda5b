"""The users file (`web.users`): who may log in to the web view, with a salted password hash, a role and
optionally the cameras they may see; read and checked (one line naming the file for anything wrong), and
written atomically with mode 0600 by `streamdet user`.

JSON rather than YAML: the file is written by `streamdet user` and read by streamdet, and JSON has no
implicit types (YAML would read a camera named `no` as false, or `0755` as a number); it stays plain
enough to read, or to edit a user's cameras by hand.

Passwords are hashed with scrypt from `hashlib` (no new dependency), N=2**14, r=8, p=1 (16 MiB, RFC 7914's
setting for interactive logins), a 16-byte random salt and a 32-byte key; the parameters are stored in each
hash, so raising them later leaves older hashes checkable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from ..files import replace_whole

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # scrypt takes any length; a megabyte posted as a password is only a cost
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_MAXMEM = 64 * 1024 * 1024


@dataclass(frozen=True)
class User:
    """One login: `cameras` None sees every camera (an admin always does)."""

    name: str
    role: Role
    hash: str
    cameras: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        entry: dict = {"role": self.role}
        if self.cameras is not None:
            entry["cameras"] = list(self.cameras)
        entry["hash"] = self.hash
        return entry


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$key` (salt and key in base64)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_MAXMEM, dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)])


def check_password(password: str, stored: str) -> bool:
    """Whether `password` gives `stored`; the comparison takes the same time wherever the keys differ."""
    try:
        kind, n, r, p, salt, key = stored.split("$")
        expected = base64.b64decode(key, validate=True)
        given = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=int(n), r=int(r),
                               p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return kind == "scrypt" and hmac.compare_digest(given, expected)


def weak_password(password: str) -> str | None:
    """Why `password` is refused, or None."""
    if not password:
        return "the password is empty"
    if len(password) < MIN_PASSWORD:
        return f"the password has {len(password)} characters; give at least {MIN_PASSWORD}"
    if len(password) > MAX_PASSWORD:
        return f"the password is longer than {MAX_PASSWORD} characters"
    return None


def make_user(name: str, role: str, password_hash: str, cameras: list[str] | tuple[str, ...] | None) -> User:
    """A user checked: a name of letters, digits and . _ @ -, a known role, cameras only for a viewer."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"user name {name!r}: use 1 to 64 letters, digits and . _ @ -")
    if role not in ROLES:
        raise ValueError(f"user {name}: role {role!r} is not one of {', '.join(ROLES)}")
    if cameras is not None:
        if role == "admin":
            raise ValueError(f"user {name}: an admin sees every camera; give cameras to a viewer only")
        if not cameras or not all(isinstance(c, str) and c for c in cameras):
            raise ValueError(f"user {name}: cameras must be a list of camera names (leave it out for all)")
    if not isinstance(password_hash, str) or not password_hash.startswith("scrypt$"):
        raise ValueError(f"user {name}: no password hash (set one with streamdet user passwd {name})")
    return User(name=name, role=role, hash=password_hash, cameras=tuple(cameras) if cameras is not None else None)


def load_users(path: str | os.PathLike) -> dict[str, User]:
    """The users of the file at `path`; ConfigError (one line naming it) if it is missing or wrong."""
    where = f"users file '{path}' (web.users)"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; create it with: streamdet user add NAME --role admin "
                          f"--file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise ConfigError(f"{where}: give {{\"users\": {{NAME: {{\"role\": ..., \"hash\": ...}}}}}} "
                          "(streamdet user add writes it)")
    users = {}
    for name, entry in data["users"].items():
        if not isinstance(entry, dict) or set(entry) - {"role", "cameras", "hash"}:
            raise ConfigError(f"{where}: user {name!r}: give role, hash and optionally cameras, nothing else")
        try:
            users[name] = make_user(name, entry.get("role", ""), entry.get("hash"), entry.get("cameras"))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return users


def save_users(path: str | os.PathLike, users: dict[str, User]) -> None:
    """Write the file whole: a temporary file (mode 0600: it holds the hashes) renamed over the old one, so a
    reader sees the old or the new file, never half of one."""
    path = Path(path)
    text = json.dumps({"users": {name: users[name].to_dict() for name in sorted(users)}}, indent=2) + "\n"
    replace_whole(path, text.encode())  # 0600: it holds the hashes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
