"""The web view's logins: the users file as it is now, the sessions in memory, failed logins per address, and
password checks off the event loop.

Everything here but the password check runs on the server's loop, so nothing needs a lock; the check runs on
one thread of its own (scrypt takes a tenth of a second and 16 MiB), at most `MAX_CHECKS` waiting or running,
so a crowd of logins is turned away rather than queued without end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..config.users import User, check_password, hash_password, load_users
from ..errors import ConfigError

log = logging.getLogger("streamdet")

MAX_SESSIONS = 1000        # logins held at once; past it the one unused longest is dropped
MAX_ADDRESSES = 10_000     # addresses whose failed logins are remembered; past it the oldest is forgotten
FAILED_LOGINS = 5          # failed logins per address within FAILED_WINDOW_S; the next is refused (429)
FAILED_WINDOW_S = 60.0
MAX_CHECKS = 4             # password checks waiting or running at once
RECHECK_FILE_S = 1.0       # how often the users file is looked at for a change


class Busy(Exception):
    """Too many password checks at once: try again in a moment."""


@dataclass
class Session:
    id: str
    user: str
    hash: str              # the user's password hash at login: a changed password ends the session
    csrf: str              # what the session's state-changing requests carry in X-CSRF-Token
    seen: float


class Sessions:
    """Logins by cookie value, ended after `idle_s` without a request; the least recently used first out."""

    def __init__(self, idle_s: float, most: int = MAX_SESSIONS, clock=time.monotonic):
        self.idle_s = idle_s
        self._most = most
        self._clock = clock
        self._held: OrderedDict[str, Session] = OrderedDict()

    def open(self, user: User) -> Session:
        self._expire()
        session = Session(id=secrets.token_urlsafe(32), user=user.name, hash=user.hash,
                          csrf=secrets.token_urlsafe(32), seen=self._clock())
        self._held[session.id] = session
        while len(self._held) > self._most:
            self._held.popitem(last=False)
        return session

    def get(self, session_id: str) -> Session | None:
        """The session, its idle time started again; None if there is none (or it has expired)."""
        session = self._held.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > self.idle_s:
            del self._held[session_id]
            return None
        session.seen = now
        self._held.move_to_end(session_id)
        return session

    def close(self, session_id: str) -> None:
        self._held.pop(session_id, None)

    def _expire(self) -> None:
        now = self._clock()
        while self._held:
            oldest = next(iter(self._held.values()))
            if now - oldest.seen <= self.idle_s:
                break
            del self._held[oldest.id]


class FailedLogins:
    """Failed logins per client address within a sliding window; bounded in the addresses it remembers."""

    def __init__(self, most: int = FAILED_LOGINS, window_s: float = FAILED_WINDOW_S,
                 addresses: int = MAX_ADDRESSES, clock=time.monotonic):
        self.most = most
        self.window_s = window_s
        self._addresses = addresses
        self._clock = clock
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may now."""
        times = self._failed.get(address)
        if times is None:
            return 0.0
        now = self._clock()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failed[address]
            return 0.0
        return self.window_s - (now - times[0]) if len(times) >= self.most else 0.0

    def failed(self, address: str) -> None:
        times = self._failed.pop(address, None) or deque(maxlen=self.most)
        times.append(self._clock())
        self._failed[address] = times  # to the end: the oldest address is the first forgotten
        while len(self._failed) > self._addresses:
            self._failed.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failed.pop(address, None)


class UsersFile:
    """The users of `web.users`, read again when the file changes (added, removed, a new password), looked at
    at most once a second; a broken file keeps the users read last, and is said once."""

    def __init__(self, path: str, clock=time.monotonic):
        self.path = path
        self._clock = clock
        self._identity = self._stat()
        self.users: dict[str, User] = load_users(path)
        self._checked = clock()
        self._said: tuple | None = None

    def current(self) -> dict[str, User]:
        now = self._clock()
        if now - self._checked >= RECHECK_FILE_S:
            self._checked = now
            identity = self._stat()
            if identity != self._identity:
                try:
                    self.users = load_users(self.path)
                    self._identity, self._said = identity, None
                    log.info("web: users file '%s' read again: %d user(s)", self.path, len(self.users))
                except ConfigError as exc:
                    if self._said != identity:
                        self._said = identity
                        log.warning("web: %s; the users read before stay", exc)
        return self.users

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns


class Logins:
    """What the login routes and the server's gate share: users, sessions, failed logins, checks."""

    def __init__(self, path: str, idle_s: float):
        self.users = UsersFile(path)
        self.sessions = Sessions(idle_s)
        self.failed = FailedLogins()
        # A name nobody has is checked against this, so a wrong name takes as long as a wrong password.
        self._dummy = hash_password(secrets.token_urlsafe(16))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-login")
        self._checking = 0

    async def check(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs, None if not; Busy when too many checks wait already."""
        if self._checking >= MAX_CHECKS:
            raise Busy(f"{MAX_CHECKS} logins are being checked already")
        user = self.users.current().get(name)
        self._checking += 1
        try:
            right = await asyncio.get_running_loop().run_in_executor(
                self._executor, check_password, password, user.hash if user is not None else self._dummy)
        finally:
            self._checking -= 1
        return user if right and user is not None else None

    def user_of(self, session: Session) -> User | None:
        """The session's user as the file has it now; None if removed or given another password since."""
        user = self.users.current().get(session.user)
        return user if user is not None and user.hash == session.hash else None

    def end(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
