"""`streamdet user add|remove|passwd NAME`: the users file the web view's logins are checked against."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from ..config.fields import choices
from ..config.loader import load_config
from ..config.users import Role, User, hash_password, load_users, make_user, save_users, weak_password
from ..errors import ConfigError

USER_EXAMPLES = """examples:
  streamdet user add alice --role admin                    # the file named by web.users in ./config.yaml
  streamdet user add bob --cameras door,porch --file users.json
  printf '%s\\n' "$PASSWORD" | streamdet user passwd bob    # from a script: one line on stdin
  streamdet user remove bob

The password is asked twice without echo on a terminal, else read as one line from stdin; it must have at
least 8 characters. The file is JSON, written whole (a temporary file renamed over it) with mode 0600; a
running streamdet reads it again when it changes. See docs/web.md#users-and-roles.
"""


def register(sub) -> None:
    p = sub.add_parser("user", help="add, remove a web view login or change its password (web.users)",
                       description="Edit the users file of the web view's logins (web.users).",
                       epilog=USER_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("add", "remove", "passwd"), help="what to do with the user")
    p.add_argument("name", metavar="NAME", help="the user's login name (letters, digits and . _ @ -)")
    p.add_argument("--role", choices=choices(Role),
                   help="add: admin (every camera, the camera settings, /metrics) or viewer (default)")
    p.add_argument("--cameras", metavar="A,B", help="add: a viewer sees only these cameras (default: every camera)")
    p.add_argument("--file", metavar="PATH", help="the users file (default: web.users of the settings file)")
    p.add_argument("--config", metavar="FILE",
                   help="settings file naming web.users (default: ./config.yaml if present)")
    p.set_defaults(func=cmd_user)


def _users_path(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    config = args.config or ("config.yaml" if Path("config.yaml").is_file() else None)
    users = load_config(config).web.users if config else ""
    if not users:
        raise ConfigError("user: no users file: give --file PATH, or set web.users in the settings file (--config)")
    return Path(users)


def _password() -> str:
    """Twice without echo from a terminal; else one line of stdin (a script's), without its line end."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("user: the two passwords differ; nothing changed")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    why = weak_password(password)
    if why:
        raise ConfigError(f"user: {why}; nothing changed")
    return password


def cmd_user(args: argparse.Namespace) -> int:
    path = _users_path(args)
    users = load_users(path) if args.action != "add" or path.exists() else {}
    if args.action != "add" and (args.role or args.cameras):
        raise ConfigError(f"user {args.action}: --role and --cameras are for add (remove the user and add it again)")
    if args.action == "add" and args.name in users:
        raise ConfigError(f"user {args.name!r} is in '{path}' already; change its password with: "
                          f"streamdet user passwd {args.name}")
    if args.action != "add" and args.name not in users:
        raise ConfigError(f"no user {args.name!r} in '{path}' (it has: {', '.join(sorted(users)) or 'nobody'})")
    if not path.parent.is_dir():
        raise ConfigError(f"users file '{path}': folder '{path.parent}' does not exist; create it first")
    if args.action == "remove":
        del users[args.name]
        save_users(path, users)
        print(f"streamdet: removed {args.name} from {path}; its logins end", file=sys.stderr)
        return 0
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
    old = users.get(args.name)
    role = args.role or (old.role if old else "viewer")
    try:
        make_user(args.name, role, "scrypt$", cameras if old is None else old.cameras)  # checked before asking
        users[args.name] = make_user(args.name, role, hash_password(_password()),
                                     cameras if old is None else old.cameras)
    except ValueError as exc:
        raise ConfigError(f"user: {exc}") from None
    save_users(path, users)
    done = "added" if old is None else "changed the password of"
    print(f"streamdet: {done} {args.name} ({_shown(users[args.name])}) in {path}", file=sys.stderr)
    return 0


def _shown(user: User) -> str:
    return f"{user.role}, cameras: {', '.join(user.cameras)}" if user.cameras else f"{user.role}, every camera"
