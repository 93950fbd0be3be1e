"""The text counts of the reasoning reward, in pure Python.

:func:`trace_counts` defines the counts that the reasoning reward's length, repetition,
grounding and consistency terms are computed from. It runs over every trace of every
step, so each count is one of CPython's own string methods (``str.count``,
``str.split``, ``in``) rather than a loop over characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

__all__ = ["Counts", "trace_counts"]

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

    Raises:
        ValueError: ``tail_chars`` is below 1.

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
