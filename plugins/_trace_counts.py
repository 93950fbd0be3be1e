"""The text counts behind the reasoning reward, in Python and (when built) in C.

:func:`trace_counts` is the definition. ``_trace_counts_native`` computes the same
integers for ASCII traces in one pass per count and is used when the extension was built
(``pip install`` compiles it where a C compiler is present); it answers ``None`` for any
other trace, which then takes the Python statement. ``tests/test_trace_counts.py`` holds
the two to the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

__all__ = ["NATIVE", "Counts", "native_trace_counts", "trace_counts"]

Counts: TypeAlias = tuple[int, int, int, int, int, int]
"""``(blanks, sentences, distinct, tail_repeats, note_hits, code_hits)``."""


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


NativeCounts: TypeAlias = Callable[[str, Sequence[str], Sequence[str], int, int], Counts | None]

native_trace_counts: NativeCounts | None
try:
    from ._trace_counts_native import trace_counts as _native
except ImportError:  # built without a C compiler: the Python statement serves alone
    native_trace_counts = None
else:
    native_trace_counts = _native

NATIVE = native_trace_counts is not None
"""Whether the C extension was built and loaded."""
