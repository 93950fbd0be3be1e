"""Normalization of code strings.

Every lookup goes through :func:`normalize_code`, and rewards call it for every sample of
every batch, so it uses plain ``str`` methods only (no regular expression) and returns
early for input that is already normalized.
"""

from __future__ import annotations

__all__ = ["normalize_code"]


def normalize_code(code: object) -> str:
    """Return ``code`` as a bare ICD-10-CM code: no dots, no whitespace, upper case.

    Anything that is not a ``str`` (``None``, ``bytes``, numbers) gives ``""``, which is
    never a valid code, so callers need no type checks of their own.

    >>> normalize_code("  m51.16 ")
    'M5116'
    >>> normalize_code("M51 .16")
    'M5116'
    >>> normalize_code(None), normalize_code(b"M5116"), normalize_code(5116)
    ('', '', '')
    """
    if not isinstance(code, str):
        return ""
    if code.isalnum() and code.isupper():
        return code
    return "".join(code.split()).replace(".", "").upper()
