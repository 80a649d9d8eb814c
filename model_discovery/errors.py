"""One-line error messages, the house style for every failure a user sees.

A bad spec, config or design fails with one line naming the file (the caller's prefix) and the
field: ``etc/agent_spec/reviewer.yaml: field temperature: Input should be ...``.
"""

from __future__ import annotations

from pydantic import ValidationError


def field_error(exc: ValidationError, prefix: str = "") -> str:
    """``field <loc>: <msg>`` for the first error of ``exc`` (``prefix`` goes before the location)."""
    first = exc.errors()[0]
    loc = prefix + ".".join(str(p) for p in first.get("loc", ()))
    return f"field {loc or '<root>'}: {first.get('msg')}"


def one_line(error: object, limit: int | None = 500, with_type: bool = True) -> str:
    """``error`` on one line of at most ``limit`` characters.

    Exceptions read ``Type: message`` (``with_type``); pydantic errors read like
    :func:`field_error`.
    """
    if isinstance(error, ValidationError):
        text = field_error(error)
    else:
        message = " ".join(str(error).split())
        if isinstance(error, BaseException) and with_type:
            text = f"{type(error).__name__}: {message}" if message else type(error).__name__
        else:
            text = message or type(error).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
