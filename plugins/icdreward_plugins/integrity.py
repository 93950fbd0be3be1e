"""Built-in plugin: penalties for degenerate completions that overlap terms overpay.

Grounding in the note and consistency with the code's description are overlap terms:
copying the note, or the code's description, maximises them. ``integrity`` (registered
as a reward component of that name) charges what honest reasoning never does, so that
for the same predicted code no degenerate completion scores as much as an honest one:

- ``verbatim``: the trace is text of the note or of the code's descriptions. Three
  stretches of ``probe_chars`` characters (at the start, middle and end of the trace)
  are looked up verbatim in the note and in the descriptions of every code of the
  predicted code's category; the value applies in full when all three are found, half
  when two are, not at all for one (a quoted finding is not a copy).
- ``word_list``: the trace reads as a list of words rather than sentences: one of three
  windows of ``window_chars`` characters (start, middle, end) holds fewer than two
  function words ("the", "of", "with", ...). Keyword stuffing and padding with note words
  look like this; clinical prose, however terse, does not.
- ``tags_in_trace``: answer or think tags inside the trace (a second answer hidden in
  the reasoning).
- ``address_grader``: the trace speaks to whoever scores it ("ignore previous
  instructions", "note to the grader", "award the maximum score").
- ``several_codes``: the answer block holds more than one valid code (a hedge or a list).

Each check is a handful of substring searches per sample, linear in the trace's length.
Values are added; use negative values. The ``default`` preset sets them; every value is
0 (the check off) unless configured.
"""

from __future__ import annotations

import re
import weakref
from collections import OrderedDict
from typing import Any

import attrs
import torch

from icdreward import Reward, ScoringBatch
from icdreward.codeset import CodeSet
from icdreward.plugin import Register, hookimpl

__all__ = ["IntegrityParams", "IntegrityReward"]

_FUNCTION_WORDS = re.compile(
    r"\b(?:the|of|and|with|is|was|in|to|an?|for|this|that|which|on|by|as|or|at|from|are|be"
    r"|it|has|had|no|not|but|than|so|there|were|his|her|he|she)\b",
    re.IGNORECASE,
)
_GRADER_PHRASES = (
    "grader",
    "evaluator",
    "instructions",
    "full marks",
    "maximum score",
    "highest score",
    "reward model",
)
_CODE_TOKEN = re.compile(r"(?<![0-9A-Za-z])[A-Za-z][0-9][0-9A-Za-z](?:\.?[0-9A-Za-z]{1,4})?")
_TAGS = ("<diagnosis", "</diagnosis", "<think", "</think")
_CACHE_SIZE = 4096
_MIN_FUNCTION_WORDS = 2


@attrs.frozen
class IntegrityParams:
    """Parameters of the ``integrity`` reward (the keys of ``[rewards.integrity]``).

    Attributes:
        verbatim: value when the trace is verbatim text of the note or of the
            descriptions of the predicted code's family (see the module docstring).
        word_list: value when the trace reads as a list of words, not sentences.
        tags_in_trace: value when the trace holds answer or think tags.
        address_grader: value when the trace addresses the grader.
        several_codes: value when the answer block holds more than one valid code.
        probe_chars: length of each stretch looked up for ``verbatim``.
        window_chars: length of each window checked for ``word_list``.
        max_chars: only the first ``max_chars`` characters of a trace are analysed.
    """

    verbatim: float = 0.0
    word_list: float = 0.0
    tags_in_trace: float = 0.0
    address_grader: float = 0.0
    several_codes: float = 0.0
    probe_chars: int = attrs.field(default=40, validator=attrs.validators.ge(8))
    window_chars: int = attrs.field(default=160, validator=attrs.validators.ge(20))
    max_chars: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))


class IntegrityReward(Reward):
    """Penalties for degenerate traces and answers (registered as ``integrity``)."""

    name = "integrity"
    Params = IntegrityParams

    def __init__(self, params: IntegrityParams, context: Any) -> None:
        super().__init__(params, context)
        self._families: OrderedDict[str, str] = OrderedDict()

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One value per sample: the sum of the penalties that apply (0 for none)."""
        p: IntegrityParams = self.params
        sources, starts, ends = batch.parsed.think_slices()
        values = [
            self._trace_value(text[a : min(b, a + p.max_chars)], note, code)
            for text, a, b, note, code in zip(
                sources, starts, ends, batch.notes, batch.parsed.codes, strict=True
            )
        ]
        if p.several_codes:
            codeset = self.context.codeset
            for k, block in enumerate(batch.parsed.diagnosis):
                if _several_codes(block, codeset):
                    values[k] += p.several_codes
        return torch.tensor(values, dtype=torch.float32)

    def _trace_value(self, trace: str, note: str, code: str) -> float:
        if not trace:
            return 0.0
        p: IntegrityParams = self.params
        value = 0.0
        if p.verbatim:
            found = _verbatim_probes(trace, note, self._family(code) if code else "", p.probe_chars)
            if found >= 2:
                value += p.verbatim * (found - 1) / 2
        if p.word_list and _reads_as_list(trace, p.window_chars):
            value += p.word_list
        if p.tags_in_trace and "<" in trace and any(tag in trace for tag in _TAGS):
            value += p.tags_in_trace
        if p.address_grader:
            lowered = trace.lower()
            if any(phrase in lowered for phrase in _GRADER_PHRASES):
                value += p.address_grader
        return value

    def _family(self, code: str) -> str:
        # The n samples of a GRPO group mostly share a code: the text is built once.
        family = self._families.get(code)
        if family is None:
            family = _family_text(self.context.codeset, code)
            self._families[code] = family
            if len(self._families) > _CACHE_SIZE:
                self._families.popitem(last=False)
        return family


def _verbatim_probes(trace: str, note: str, family: str, width: int) -> int:
    """How many of the trace's start, middle and end stretches are verbatim source text."""
    if len(trace) < 3 * width or (len(note) < width and len(family) < width):
        return 0
    step = (len(trace) - width) // 2
    # The middle first: most traces are not copies, and a miss there settles it unless
    # both ends are copies.
    middle = _found(trace[step : step + width], note, family)
    start = _found(trace[:width], note, family)
    if not (middle or start):
        return 0
    return middle + start + _found(trace[2 * step : 2 * step + width], note, family)


def _found(probe: str, note: str, family: str) -> int:
    return int(probe in note or probe in family)


def _reads_as_list(trace: str, width: int) -> bool:
    """Whether a window at the start, middle or end of the trace has under two function
    words (prose has about one in three words; a window holds about 25 words)."""
    if len(trace) < width:
        return False  # too short to tell a list from a terse sentence
    middle = (len(trace) - width) // 2
    windows = (trace[:width], trace[middle : middle + width], trace[-width:])
    return any(len(_FUNCTION_WORDS.findall(window)) < _MIN_FUNCTION_WORDS for window in windows)


def _several_codes(block: str, codeset: CodeSet) -> bool:
    codes = {codeset.normalize(token) for token in _CODE_TOKEN.findall(block)}
    return sum(code in codeset for code in codes) > 1


def _family_text(codeset: CodeSet, code: str) -> str:
    """The descriptions of every code of ``code``'s category, its block and chapter."""
    info = codeset.lookup(code)
    if info is None:
        return ""
    members = _categories(codeset).get(info.category, ())
    parts = [info.block_title, info.chapter_title, *(codeset.describe(c) or "" for c in members)]
    return "\n".join(p for p in parts if p)


_CATEGORY_CODES: weakref.WeakKeyDictionary[CodeSet, dict[str, tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


def _categories(codeset: CodeSet) -> dict[str, tuple[str, ...]]:
    # Built once per code set (about 0.1 s): category -> its codes, in tabular order.
    table = _CATEGORY_CODES.get(codeset)
    if table is None:
        grouped: dict[str, list[str]] = {}
        for member in codeset.codes():
            grouped.setdefault(member[:3], []).append(member)
        table = {category: tuple(codes) for category, codes in grouped.items()}
        _CATEGORY_CODES[codeset] = table
    return table


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    """Register the ``integrity`` reward."""
    register(IntegrityReward)
