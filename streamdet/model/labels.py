"""Class names: the COCO label file (assets/, shipped as streamdet.assets), or the user's own."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import ModelError

COCO_LABELS = "coco_91cl_bkgr.txt"


def load_labels(path: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Names indexed by class id (line 0 is the background class)."""
    if path is None:
        text = resources.files("streamdet.assets").joinpath(COCO_LABELS).read_text(encoding="utf-8")
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelError(f"labels '{path}': no such file; give a text file with one class name per line") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"labels '{path}': cannot be read ({exc})") from None
    names = tuple(line.strip() for line in text.splitlines())
    if not any(names):
        raise ModelError(f"labels '{path}': the file is empty; give one class name per line")
    _check_unique(names, path)
    return names


def _check_unique(names: tuple[str, ...], path) -> None:
    """A name on two lines would filter (--classes) by one of its ids and drop the other's detections."""
    first: dict[str, int] = {}
    for line, name in enumerate(names, start=1):
        if not name:
            continue
        earlier = first.setdefault(name.lower(), line)  # class names are matched without regard to case
        if earlier != line:
            raise ModelError(f"labels '{path}': '{name}' is on lines {earlier} and {line}; give each class one line "
                             "(a class's id is its line number, from 0)")


def label_for(labels: tuple[str, ...], class_id: int) -> str:
    # Ids beyond the file still get a name, so a short custom file never crashes a run.
    return labels[class_id] if 0 <= class_id < len(labels) else f"class{class_id}"


def resolve_classes(labels: tuple[str, ...], classes) -> frozenset[int]:
    """Class filter entries (names or ids, as given on the CLI or in YAML) to ids."""
    ids = set()
    lookup = {name.lower(): i for i, name in enumerate(labels) if name}
    for entry in classes:
        text = str(entry).strip()
        if text.lstrip("-").isdigit():
            if not 0 < int(text) < len(labels):
                raise ModelError(f"class id {text} is not in the label file; ids go from 1 to {len(labels) - 1} "
                                 "(0 is the background)")
            ids.add(int(text))
        elif text.lower() in lookup:
            ids.add(lookup[text.lower()])
        else:
            known = ", ".join(n for n in labels[1:8] if n)
            raise ModelError(f"class '{text}' is not in the label file; use a name such as {known}, ... or a class id")
    return frozenset(ids)
