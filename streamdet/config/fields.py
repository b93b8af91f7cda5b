"""A section's values against its own type hints: the one check of choices, kinds and finite numbers.

Every section of the settings tree calls `check_fields(self)` first in `__post_init__`, so a value a
`Literal` does not list (a `policy`, a `codec`) is refused when the section is built, however it is built:
from YAML, from CLI flags or through the Python API. The messages use the loader's words (`describe`), so
a refusal reads the same from all three.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from typing import Any, Literal


def describe(tp: Any) -> str:
    """What a value of type `tp` is, in the words a refusal uses: "one of 'a', 'b'", "a number", ..."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _fits(value: Any, tp: Any) -> bool | None:
    """Whether `value` is of the plain type `tp`; None for types this check leaves to the section (lists,
    mappings), whose own rules say more than a type could."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        fits = [_fits(value, arg) for arg in typing.get_args(tp)]
        return True if True in fits else (None if None in fits else False)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(section: Any) -> None:
    """Raise ValueError (one line, naming the key) for a value of `section` its type hint does not allow:
    a choice its `Literal` does not list, a string where a number goes, a number that is not finite."""
    for key, tp in _hints(type(section)).items():
        value = getattr(section, key)
        if _fits(value, tp) is False:
            raise ValueError(f"{key}: {value!r} is not {describe(tp)}")
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, not {value}")


def choices(tp: Any) -> tuple[str, ...]:
    """The values a `Literal` type allows: what a CLI flag for it offers, so a value added to the type is
    offered and taken without a second edit."""
    if typing.get_origin(tp) is not Literal:
        raise TypeError(f"{tp!r} is not a Literal type")
    return typing.get_args(tp)
