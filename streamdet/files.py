"""Writing a small file whole (settings, users, a run's summary): a reader sees the old file or the new one,
never half of one, and a crash leaves one of the two.

The new content goes into a temporary file in the same folder (a rename is atomic only within one file
system), is flushed to the disk, and is renamed over the file; then the folder is flushed, or the rename itself
may be lost with the power."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_whole(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """`path` holds `data` from now on. `mode`: its permissions (None: 0600, as the temporary file is made, for
    files that may hold secrets). Raises OSError; the file is then as it was."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as file:
            if mode is not None:
                os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
