"""Constructor parameter checks shared by the hardware units.

A unit checks its parameters when it is built, before any gateware exists,
so a bad value fails at the call that gave it rather than deep inside
elaboration.  Every message has the same three parts: the parameter's name,
what is allowed and what was given, e.g. ``"m_bits must be in 1..8, got 9"``.
``note`` adds a few words on what the parameter is or where a bound comes
from, in parentheses after what is allowed.

Each check returns the value unchanged, so a constructor can write
``self._width = check_int("width", width, 1)``.
"""

__all__ = ["check_int", "check_bool", "check_choice", "check_divisor"]


def _note(note) -> str:
    return f" ({note})" if note else ""


def check_int(name: str, value, minimum: int, maximum: "int | None" = None, *,
              note: "str | None" = None) -> int:
    """``value`` if it is an ``int`` in ``minimum .. maximum`` (no upper bound
    when ``maximum`` is ``None``), else :exc:`ValueError`.

    ``bool`` is refused although it is an ``int`` subclass: ``True`` where a
    width belongs is a mistake, not the number 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer{_note(note)}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be {allowed}{_note(note)}, got {value}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` if it is ``True`` or ``False``, else :exc:`ValueError`
    (``0``/``1`` are refused, like ``bool`` in :func:`check_int`)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``, else :exc:`ValueError` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_divisor(name: str, value, dividend: int, *, note: "str | None" = None) -> int:
    """``value`` if it is an ``int`` that divides ``dividend`` (``>= 1``), else
    :exc:`ValueError` listing the divisors, e.g. ``"drains must be one of 1, 2,
    3, 6 (a divisor of pe = 6), got 4"``; ``note`` says what ``dividend`` is
    (default ``"a divisor of <dividend>"``)."""
    check_int(name, value, 1, note=note)
    if dividend % value:
        divisors = ", ".join(str(d) for d in range(1, dividend + 1) if dividend % d == 0)
        raise ValueError(f"{name} must be one of {divisors}{_note(note or f'a divisor of {dividend}')}, "
                         f"got {value}")
    return value
