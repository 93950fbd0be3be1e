"""Forward scans over the tags of a completion, shared by the tag parser's paths.

Each scan moves forward through the text with ``str.find``, ``str.startswith`` and
regular expressions that cannot backtrack, and bounds its Python-level steps, so that
every one is linear in the input size whatever the text holds.
"""

from __future__ import annotations

import re

__all__ = ["_count_pairs", "_find", "_nonspace", "_pair_after", "_strip_span"]

_THINK, _THINK_END = "<think>", "</think>"
_DIAG, _DIAG_END = "<diagnosis>", "</diagnosis>"
_HOPS = 8
_STRIP_STEPS = 4
# Bounds on the Python-level steps of pair matching, so that text made of thousands of
# tags (a degenerate policy) costs a fixed amount; normal text takes one or two steps.
_MAX_PAIR_STEPS = 256
_WHITESPACE = re.compile(r"\s*")


def _find(text: str, tag: str, start: int) -> int:
    """``text.find(tag, start)``, fast on long text with few ``<`` characters.

    A multi-character ``str.find`` walks the text window by window; a single
    character search is a ``memchr``, several times faster. Hop between ``<``
    characters for a bounded number of steps, then let ``str.find`` finish: the
    result is the same and the cost stays linear whatever the input holds.
    """
    find = text.find
    i = find("<", start)
    for _ in range(_HOPS):
        if i < 0 or text.startswith(tag, i):
            return i
        i = find("<", i + 1)
    return find(tag, i) if i >= 0 else -1


def _pair_after(text: str, close: int) -> tuple[int, int, int] | None:
    """Positions (``</think>``, ``<diagnosis>``, ``</diagnosis>``) of the first pair whose
    think block closes at or after ``close``, or None.

    Like the published pattern ``<think>(.*?)</think>\\s*<diagnosis>(.*?)</diagnosis>``:
    when a ``</think>`` is not followed by whitespace and ``<diagnosis>``, the think
    block extends to the next ``</think>``. Each step moves forward, so this is linear.
    """
    for _ in range(_MAX_PAIR_STEPS):
        if close < 0:
            return None
        spaces = _WHITESPACE.match(text, close + 8)
        start = spaces.end() if spaces else close + 8
        if text.startswith(_DIAG, start):
            end = text.find(_DIAG_END, start + 11)
            return (close, start, end) if end >= 0 else None
        close = _find(text, _THINK_END, close + 8)
    return None


def _count_pairs(text: str, start: int) -> int:
    """Complete think/diagnosis pairs from ``start`` on (at most ``_MAX_PAIR_STEPS``)."""
    count = 0
    while count < _MAX_PAIR_STEPS:
        opened = _find(text, _THINK, start)
        if opened < 0:
            break
        pair = _pair_after(text, _find(text, _THINK_END, opened + 7))
        if pair is None:
            break
        count += 1
        start = pair[2] + 12
    return count


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of ``text[start:end].strip()`` in ``text``, found without copying the text
    (a parser that kept a copy of every trace of a batch would spend more on that than on
    all the rest)."""
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


def _nonspace(text: str, start: int, end: int) -> int:
    if end <= start:
        return 0
    segment = text[start:end]
    if not segment or segment.isspace():
        return 0
    return sum(len(part) for part in segment.split())
