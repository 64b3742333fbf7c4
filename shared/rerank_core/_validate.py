"""One home for option checks: each raises :class:`ConfigError` naming the option.

Every public constructor (engine, caches, backends, adapters, CLI) checks its options
with these, so a bad value gets the same message everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Literal, TypeVar, overload

from .errors import ConfigError

__all__ = ["int_at_least", "number", "one_of", "positive_int"]

T = TypeVar("T")


@overload
def int_at_least(
    name: str, value: object, minimum: int, *, allow_none: Literal[False] = ...
) -> int: ...
@overload
def int_at_least(
    name: str, value: object, minimum: int, *, allow_none: Literal[True]
) -> int | None: ...
def int_at_least(name: str, value: object, minimum: int, *, allow_none: bool = False) -> int | None:
    """``value`` as an int ``>= minimum`` (``None`` passes when ``allow_none``); a bool is
    not an int here. Raises ConfigError ``"<name> must be [None or ]an int >= <minimum>"``
    (``"a positive int"`` for a minimum of 1)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        none = "None or " if allow_none else ""
        raise ConfigError(f"{name} must be {none}{what}, got {value!r:.80}")
    return value


@overload
def positive_int(name: str, value: object, *, allow_none: Literal[False] = ...) -> int: ...
@overload
def positive_int(name: str, value: object, *, allow_none: Literal[True]) -> int | None: ...
def positive_int(name: str, value: object, *, allow_none: bool = False) -> int | None:
    """``value`` as an int ``>= 1`` (``None`` passes when ``allow_none``)."""
    if allow_none:
        return int_at_least(name, value, 1, allow_none=True)
    return int_at_least(name, value, 1)


@overload
def number(
    name: str,
    value: object,
    *,
    above: float | None = ...,
    at_least: float | None = ...,
    allow_none: Literal[False] = ...,
) -> float: ...
@overload
def number(
    name: str,
    value: object,
    *,
    above: float | None = ...,
    at_least: float | None = ...,
    allow_none: Literal[True],
) -> float | None: ...
def number(
    name: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    allow_none: bool = False,
) -> float | None:
    """``value`` as a float: a real, non-NaN number (not a bool), ``> above`` and
    ``>= at_least`` when given; ``None`` passes when ``allow_none``."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or (above is not None and not value > above)
        or (at_least is not None and not value >= at_least)
    ):
        if above is not None:
            bound = f" > {above:g}"
        elif at_least is not None:
            bound = f" >= {at_least:g}"
        else:
            bound = ""
        none = "None or " if allow_none else ""
        raise ConfigError(f"{name} must be {none}a number{bound}, got {value!r:.80}")
    return float(value)


def one_of(name: str, value: T, choices: Collection[T]) -> T:
    """``value`` if it is one of ``choices``; else a ConfigError listing them."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{name} must be one of {listed}; got {value!r:.80}")
    return value
