"""Writing the settings file back whole: never half a file, and the previous one kept beside it.

A reader (a reload, SIGHUP, an editor) sees the old file or the new one, never a mix (streamdet.files). The
previous text is first kept the same way as `NAME.bak` (config.yaml.bak), so a
change made through the camera API can be undone by hand. Both keep the file's permissions: it may hold camera
passwords.
"""

from __future__ import annotations

from pathlib import Path

from ..files import replace_whole

BACKUP_SUFFIX = ".bak"


def backup_of(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def replace_file(path: Path, text: str, previous: str | None) -> None:
    """`path` holds `text` from now on; `previous` (its text until now, None: none) is kept as its backup.
    Raises OSError (a folder the run may not write in, a full disk); the file is then as it was."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o600
    if previous is not None:
        replace_whole(backup_of(path), previous.encode(), mode)
    replace_whole(path, text.encode(), mode)
