"""Reading gold labels: one code, a list of codes (primary first), or a string of several.

The engine, the input readers and the test helpers all read gold labels here, so a
label means the same everywhere: ``"M51.16"``, ``["M5116", "E119"]``, ``"M5116;E119"``,
``'["M5116", "E119"]'`` (a JSON list, as CSV files hold it) and numpy arrays of
strings (as parquet files give them to verl).

>>> gold_codes("m51.16"), gold_codes("M5116; E11.9"), gold_codes('["M5116", "E119"]')
(('M5116',), ('M5116', 'E119'), ('M5116', 'E119'))
>>> gold_codes(None), gold_codes(42)
((), ())
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping

from icdreward.codeset import CodeSet

__all__ = ["gold_codes", "gold_items"]

_SEPARATORS = (";", "|")


def _type_name(value: object) -> str:
    return type(value).__name__


def gold_items(value: object, describe: Callable[[object], str] = _type_name) -> tuple[str, ...]:
    """The codes of a gold label as written (stripped, not normalized), primary first.

    ``describe`` names the type of an unreadable value in the error message (the input
    readers name JSON types: "an object", "a number").

    Raises:
        ValueError: ``value`` is not a label (None, a number, a mapping, malformed
            JSON, a list holding something other than strings); the message says why.
    """
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    items: Iterable[object]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"gold looks like a JSON list but is not: {exc.msg}") from None
            if not isinstance(items, list):
                raise ValueError("gold looks like a JSON list but is not one")
        else:
            for separator in _SEPARATORS:
                text = text.replace(separator, ",")
            items = text.split(",")
    elif value is None:
        raise ValueError("gold is missing (null)")
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        items = value
    else:
        raise ValueError(f"gold must be a code or a list of codes, not {describe(value)}")
    codes: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"gold codes must be strings, not {describe(item)}")
        if item.strip():
            codes.append(item.strip())
    return tuple(codes)


def gold_codes(
    value: object, normalize: Callable[[object], str] = CodeSet.normalize
) -> tuple[str, ...]:
    """The normalized codes of a gold label; ``()`` when it holds none or is unreadable."""
    try:
        items = gold_items(value)
    except ValueError:
        return ()
    return tuple(code for code in map(normalize, items) if code)
