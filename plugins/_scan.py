"""The hot string scans of the built-in plugins, in Python and (when built) in C.

Two scans run over every completion of every step: :func:`think_spans` (where the tag
parser's fast path finds the trace) and :func:`trace_counts` (what the reasoning reward
counts in it). The functions here are their definitions. ``_scan_native`` computes the
same values in C and is used when the extension was built (``pip install`` compiles it
where a C compiler is present): its ``think_spans`` takes any list of values, its
``trace_counts`` takes ASCII traces and answers ``None`` for any other, which then takes
the Python statement. ``tests/test_scan.py`` holds the two to the same results.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeAlias

__all__ = [
    "NATIVE",
    "Counts",
    "Spans",
    "native_think_spans",
    "native_trace_counts",
    "strip_span",
    "think_spans",
    "trace_counts",
]

Counts: TypeAlias = tuple[int, int, int, int, int, int]
"""``(blanks, sentences, distinct, tail_repeats, note_hits, code_hits)``."""
Spans: TypeAlias = tuple[list[int], list[int], list[int]]
"""``(first_lt, starts, ends)``, one entry per text."""

_WHITESPACE = re.compile(r"\s*")
_STRIP_STEPS = 4


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of ``text[start:end].strip()`` in ``text``, found without copying the text
    (a parser that kept a copy of every trace of a batch would spend more on that than on
    all the rest).

    >>> strip_span("  a trace \\n<", 0, 11)
    (2, 9)
    """
    if start < end and text[start].isspace():
        spaces = _WHITESPACE.match(text, start, end)
        start = spaces.end() if spaces else start
    # Whitespace before a closing tag is a newline or two: step back over a few
    # characters, and let rstrip measure a longer run.
    stop = end - _STRIP_STEPS
    while end > start and text[end - 1].isspace():
        end -= 1
        if end == stop:
            return start, start + len(text[start:end].rstrip())
    return start, end


def think_spans(texts: Sequence[object]) -> Spans:
    """Where each text's first ``<`` is, and the stripped span of the text before it.

    ``first_lt[i]`` is ``texts[i].find("<")`` (-1 for a value that is not a ``str``);
    when it is positive, ``(starts[i], ends[i])`` is the span of
    ``texts[i][:first_lt[i]].strip()``, and ``(0, 0)`` otherwise.

    >>> think_spans([" a trace\\n</think>", "<think>", None])
    ([9, 0, -1], [1, 0, 0], [8, 0, 0])
    """
    first_lt, starts, ends = [], [], []
    for text in texts:
        t1 = text.find("<") if type(text) is str else -1
        start, end = strip_span(text, 0, t1) if t1 > 0 else (0, 0)  # type: ignore[arg-type]
        first_lt.append(t1)
        starts.append(start)
        ends.append(end)
    return first_lt, starts, ends


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


NativeSpans: TypeAlias = Callable[[Sequence[object]], Spans]
NativeCounts: TypeAlias = Callable[[str, Sequence[str], Sequence[str], int, int], Counts | None]

native_think_spans: NativeSpans | None
native_trace_counts: NativeCounts | None
try:
    from ._scan_native import think_spans as _spans
    from ._scan_native import trace_counts as _counts
except ImportError:  # built without a C compiler: the Python statements serve alone
    native_think_spans = native_trace_counts = None
else:
    native_think_spans, native_trace_counts = _spans, _counts

NATIVE = native_trace_counts is not None
"""Whether the C extension was built and loaded."""
