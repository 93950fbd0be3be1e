"""The hot string scans of the built-in plugins, in Python and (when built) in C.

Two scans run over every completion of every step: the tag parser's fast path (defined
by ``TagParser._well_formed_row``) and the counts of the reasoning reward (defined by
:func:`trace_counts` here). ``_scan_native`` computes the same values in C and is used
when the extension was built (``pip install`` compiles it where a C compiler is present):

- ``native_well_formed_rows(texts, endings, ending_chars)`` gives the fast path's rows of
  a batch where the parser's memo of endings answers them, and the indices of the rest;
- ``native_trace_counts`` takes ASCII traces and answers ``None`` for any other, which
  then takes the Python statement.

``tests/test_scan.py`` holds the two to the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

__all__ = [
    "NATIVE",
    "Counts",
    "Rows",
    "native_trace_counts",
    "native_well_formed_rows",
    "trace_counts",
]

Counts: TypeAlias = tuple[int, int, int, int, int, int]
"""``(blanks, sentences, distinct, tail_repeats, note_hits, code_hits)``."""
Rows: TypeAlias = tuple[list[Any], list[int]]
"""``(rows, misses)``: a row or None per text, and the indices left to Python."""


def trace_counts(
    trace: str,
    note_terms: Sequence[str],
    code_terms: Sequence[str],
    sentence_chars: int,
    tail_chars: int,
) -> Counts:
    """Counts of ``trace`` that the reasoning reward's text terms are computed from.

    - ``blanks``: spaces plus newlines (the word estimate is one more);
    - ``sentences``: parts of ``trace.split(".")`` at least ``sentence_chars`` long;
    - ``distinct``: how many of those differ once stripped;
    - ``tail_repeats``: occurrences of the last ``tail_chars`` characters (not overlapping);
    - ``note_hits`` / ``code_hits``: terms of each list found in ``trace.lower()``.

    >>> trace_counts("It hurts. It hurts. Pain", ("hurt", "fever"), ("pain",), 5, 4)
    (4, 3, 2, 1, 1, 1)
    """
    if tail_chars < 1:
        raise ValueError("tail_chars must be at least 1")
    sentences = [part for part in trace.split(".") if len(part) >= sentence_chars]
    # map over bound methods keeps the per-item work in C.
    distinct = len(set(map(str.strip, sentences)))
    contains = trace.lower().__contains__
    return (
        trace.count(" ") + _newlines(trace),
        len(sentences),
        distinct,
        trace.count(trace[-tail_chars:]),
        sum(map(contains, note_terms)),
        sum(map(contains, code_terms)),
    )


def _newlines(text: str) -> int:
    """``text.count("\\n")``; finding the first newline is a ``memchr``, several times
    faster than counting, and many traces have none."""
    first = text.find("\n")
    return text.count("\n", first) if first >= 0 else 0


NativeRows: TypeAlias = Callable[[Sequence[object], Mapping[str, Any], int], Rows]
NativeCounts: TypeAlias = Callable[[str, Sequence[str], Sequence[str], int, int], Counts | None]

native_well_formed_rows: NativeRows | None
native_trace_counts: NativeCounts | None
try:
    from ._scan_native import trace_counts as _counts
    from ._scan_native import well_formed_rows as _rows
except ImportError:  # built without a C compiler: the Python statements serve alone
    native_well_formed_rows = native_trace_counts = None
else:
    native_well_formed_rows, native_trace_counts = _rows, _counts

NATIVE = native_trace_counts is not None
"""Whether the C extension was built and loaded."""
