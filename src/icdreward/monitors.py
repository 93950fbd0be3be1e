"""Reward-hacking monitors: cheap per-batch signs that a policy games its reward.

A GRPO policy that has found an exploit changes what its outputs look like long before
the reward curve says anything: it retreats to vague codes, copies the note into its
trace, pads, or collapses every sample of a prompt onto one code. :func:`batch_monitors`
measures those signs for every scored batch (the engine puts them in
:attr:`ScoreResult.monitors <icdreward.ScoreResult.monitors>`, and the trainer
integrations log them as ``icdreward/monitor/<name>``). Each is one pass over the batch.

========================= ==================================================================
monitor                   what it signals when it rises
========================= ==================================================================
``parse_failure``         share of samples with no readable answer: format collapse
``invalid_code``          share of samples answering a code that does not exist
``non_billable``          share answering a valid but non-billable code (a category or
                          subcategory): retreating up the hierarchy for partial credit
``unspecified``           share answering an "unspecified" code: hedging with vague codes
``note_copy``             share of traces that copy the note verbatim: grounding terms paid
                          for copying rather than for reasoning
``trace_chars``           mean trace length in characters: padding (rising) or dropping the
                          reasoning (falling)
``chapter_entropy``       entropy (bits) of the chapters answered: a falling value means the
                          policy answers a few chapters whatever the note
``group_distinct_codes``  mean number of distinct codes among the samples of a GRPO group
``group_collapsed``       share of groups (of two or more samples) whose samples all answer
                          one code: no spread, so no advantage to learn from
========================= ==================================================================

The group monitors need group ids; ``note_copy`` needs notes. Without them those monitors
are left out.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Final

import torch

from icdreward.batch import Feature, ScoringBatch
from icdreward.codeset import CodeSet

__all__ = ["COPY_CHUNK_CHARS", "COPY_SAMPLE", "MONITORS", "batch_monitors"]

MONITORS: Final = (
    "parse_failure",
    "invalid_code",
    "non_billable",
    "unspecified",
    "note_copy",
    "trace_chars",
    "chapter_entropy",
    "group_distinct_codes",
    "group_collapsed",
)
"""Every monitor's name, in the order :func:`batch_monitors` reports them."""

COPY_CHUNK_CHARS: Final = 48
"""A trace copies its note when its middle stretch of ``COPY_CHUNK_CHARS`` characters,
and its first or its last, appear verbatim in the note: at most three substring
searches per sample, whatever the lengths. A trace that quotes one phrase of the note
is not a copy; a trace that is the note, or the note with text added at one end, is."""

COPY_SAMPLE: Final = 64
"""``note_copy`` is measured on at most this many samples of a batch (a standard error of
at most 6.3 points)."""

_GOLDEN = (5**0.5 - 1) / 2
_COUNTED = (Feature.CODE_FOUND, Feature.CODE_VALID, Feature.THINK_CHARS)

# (every code -> (not billable, unspecified), every category -> its chapter)
_Facts = tuple[dict[str, tuple[bool, bool]], dict[str, str]]
_FACTS: weakref.WeakKeyDictionary[CodeSet, _Facts] = weakref.WeakKeyDictionary()


def batch_monitors(batch: ScoringBatch) -> dict[str, float]:
    """The monitors of one scored batch (see the module docstring), by name.

    >>> from icdreward import RewardEngine
    >>> engine = RewardEngine.from_preset("default")
    >>> ok = "Sepsis with no organism identified.</think><diagnosis>A41.9</diagnosis>"
    >>> result = engine.score([ok, "no tags"], ["A419", "A419"], group_ids=[0, 0])
    >>> m = result.monitors
    >>> m["parse_failure"], m["unspecified"], m["group_distinct_codes"]
    (0.5, 0.5, 2.0)
    """
    size = len(batch)
    if size == 0:
        return {}
    parsed = batch.parsed
    # One reduction over the feature matrix: every torch call costs microseconds.
    # (Summing every column costs less than gathering three: a gather by an index list
    # is a kernel of its own.)
    totals = parsed.features.sum(dim=0).tolist()
    found, valid, chars = (totals[k] for k in _COUNTED)
    out = {
        "parse_failure": (size - found) / size,
        "invalid_code": (found - valid) / size,
    }
    non_billable = unspecified = 0
    codeset = batch.codeset
    flags, chapter_of = _code_facts(codeset)
    # Samples per chapter, in the order the chapters first occur in the batch: each
    # code first occurs with, or after, the first sample of its chapter.
    chapters: dict[str, int] = {}
    for code, count in Counter(parsed.codes).items():  # each distinct code once
        # Parsed codes are normalised already, but a custom parser's need not be.
        known = flags.get(code)
        if known is None and code:
            code = codeset.normalize(code)
            known = flags.get(code)
        if known is not None:
            non_billable += count * known[0]
            unspecified += count * known[1]
        # A code missing from this year still has the chapter of its category.
        chapter = chapter_of.get(code[:3])
        if chapter is not None:
            chapters[chapter] = chapters.get(chapter, 0) + count
    out["non_billable"] = non_billable / size
    out["unspecified"] = unspecified / size
    if any(batch.notes):  # stops at the first note given
        out["note_copy"] = _copy_share(*parsed.think_slices(), batch.notes)
    out["trace_chars"] = chars / size
    out["chapter_entropy"] = _entropy(chapters.values())
    if batch.group_ids is not None:
        out.update(_group_spread(batch.group_ids, parsed.codes))
    return out


def _code_facts(codeset: CodeSet) -> _Facts:
    """Every code of ``codeset`` -> (not billable, "unspecified" in its description), and
    every category -> its chapter.

    Built once per code set (about 0.1 s): a batch then costs a lookup or two per
    distinct code answered, not code-set calls that each normalise the code.
    """
    found = _FACTS.get(codeset)
    if found is None:
        describe, billable = codeset.describe, codeset.is_billable
        flags = {
            code: (not billable(code), "unspecified" in (describe(code) or "").lower())
            for code in codeset.codes()
        }
        chapter_of = {code: codeset.hierarchy(code)[0] for code in flags if len(code) == 3}
        found = _FACTS[codeset] = (flags, chapter_of)
    return found


def _copy_share(
    sources: Sequence[str], starts: Sequence[int], ends: Sequence[int], notes: Sequence[str]
) -> float:
    width = COPY_CHUNK_CHARS
    positions = _sample_positions(len(notes))
    copied = 0
    for k in positions:
        text, a, b, note = sources[k], starts[k], ends[k], notes[k]
        span = b - a
        if span < width * 3 or len(note) < width:
            continue
        step = (span - width) // 2
        # The middle stretch first: most traces are not copies, and one search tells.
        middle = a + step
        if text[middle : middle + width] not in note:
            continue
        last = a + 2 * step
        if text[a : a + width] in note or text[last : last + width] in note:
            copied += 1
    return copied / len(positions)


@functools.lru_cache(maxsize=64)
def _sample_positions(size: int) -> tuple[int, ...]:
    # A substring search costs about a nanosecond per character of the note, more than
    # the rest of the monitors together: the share is estimated on at most COPY_SAMPLE
    # samples. They are spread by the golden ratio, not a fixed stride, which would read
    # the same position of every GRPO group (or of any periodic layout) again and again.
    if size <= COPY_SAMPLE:
        return tuple(range(size))
    return tuple(sorted({int((k * _GOLDEN % 1.0) * size) for k in range(COPY_SAMPLE)}))


def _entropy(counts: Collection[int]) -> float:
    """Entropy in bits of the distribution with these counts (0 for none)."""
    known = sum(counts)
    if not known:
        return 0.0
    return -sum(n / known * math.log2(n / known) for n in counts) + 0.0


def _group_spread(group_ids: torch.Tensor, codes: Sequence[str]) -> dict[str, float]:
    groups = group_ids.tolist()
    sizes = Counter(groups)
    distinct = Counter(g for g, _ in set(zip(groups, codes, strict=True)))
    multi = [g for g, n in sizes.items() if n > 1]
    collapsed = sum(distinct[g] == 1 for g in multi)
    return {
        "group_distinct_codes": sum(distinct.values()) / len(sizes),
        "group_collapsed": collapsed / len(multi) if multi else 0.0,
    }
