"""Writing the settings file back whole: never half a file, and the previous one kept beside it.

A reader (a reload, SIGHUP, an editor) sees the old file or the new one, never a mix: the new text goes into a
temporary file in the same folder (a rename is atomic only within one file system), is flushed to the disk, and
is renamed over the file. The previous text is first kept the same way as `NAME.bak` (config.yaml.bak), so a
change made through the camera API can be undone by hand. Both keep the file's permissions: it may hold camera
passwords.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BACKUP_SUFFIX = ".bak"


def backup_of(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def replace_file(path: Path, text: str, previous: str | None) -> None:
    """`path` holds `text` from now on; `previous` (its text until now, None: none) is kept as its backup.
    Raises OSError (a folder the run may not write in, a full disk); the file is then as it was."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o600
    if previous is not None:
        _write_atomically(backup_of(path), previous, mode)
    _write_atomically(path, text, mode)


def _write_atomically(path: Path, text: str, mode: int) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """The rename itself is on the disk only once the folder is."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
