"""Built-in plugin: penalties for degenerate completions that overlap terms overpay.

Grounding in the note and consistency with the code's description are overlap terms:
copying the note, or the code's description, maximises them. ``integrity`` (registered
as a reward component of that name) charges what honest reasoning never does, so that
for the same predicted code no degenerate completion scores as much as an honest one,
and pays what only honest reasoning earns:

- ``own_words``: the trace says things in its own words: none of the stretches the
  ``verbatim`` check looks up is note text, and it is neither a list of words nor of
  descriptions. Copying can raise the overlap terms, never this one; a configuration
  that pays it more than its overlap terms together leaves copying nothing to gain.

- ``verbatim``: the trace is text of the note, or ICD-10-CM descriptions. Three
  stretches of ``probe_chars`` characters (at the start, middle and end of the trace)
  are looked up verbatim in the note; the value applies in full when all three are
  found, half when two are, not at all for one (a quoted finding is not a copy). A
  trace whose sentences include two or more ICD-10-CM descriptions or titles, verbatim,
  is charged in full too.
- ``word_list``: the trace reads as a list of words rather than sentences: a window of
  ``window_chars`` characters in its middle or at its end holds fewer than two
  function words ("the", "of", "with", ...) and fewer than two sentence marks. Keyword
  stuffing and padding with note words look like this; clinical prose, however terse,
  does not.
- ``tags_in_trace``: answer or think tags inside the trace (a second answer hidden in
  the reasoning).
- ``address_grader``: the trace speaks to whoever scores it ("ignore previous
  instructions", "note to the grader", "award the maximum score"), in its first or last
  ``edge_chars`` characters, where such text goes (a search of the whole trace for each
  phrase would cost more than the rest of the component). Rule-based rewards ignore such
  text anyway; the charge makes honest completions strictly better, and the judge's
  prompt escaping keeps it from reaching the judge as instructions.
- ``several_codes``: the answer block holds more than one valid code (a hedge or a list).

Each check is a handful of substring searches per sample, linear in the trace's length.
Values are added: ``own_words`` positive, the others negative. The ``default`` preset
sets them; every value is 0 (the check off) unless configured.
"""

from __future__ import annotations

import re
import weakref

import attrs
import torch

from icdreward import Reward, ScoringBatch
from icdreward.codeset import CodeSet
from icdreward.plugin import Register, hookimpl

__all__ = ["IntegrityParams", "IntegrityReward"]

_FUNCTION_WORDS = frozenset(
    ("the", "of", "and", "with", "is", "was", "in", "to", "a", "an", "for", "this", "that",
     "which", "on", "by", "as", "or", "at", "from", "are", "be", "it", "has", "had", "no",
     "not", "but", "than", "so", "there", "were", "his", "her", "he", "she")
)  # fmt: skip
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
_MIN_LIST_WORDS = 8
_PIECES = re.compile(r"[.;\n]+")
_PREFIX_CHARS = 16


@attrs.frozen
class IntegrityParams:
    """Parameters of the ``integrity`` reward (the keys of ``[rewards.integrity]``).

    Attributes:
        own_words: value when the trace is in its own words: at least three probes long,
            none of its probes verbatim note text, no list of descriptions or words.
        verbatim: value when the trace is verbatim text of the note, or lists ICD-10-CM
            descriptions (see the module docstring).
        word_list: value when the trace reads as a list of words, not sentences.
        tags_in_trace: value when the trace holds answer or think tags.
        address_grader: value when the trace addresses the grader.
        several_codes: value when the answer block holds more than one valid code.
        probe_chars: length of each stretch looked up for ``verbatim``.
        window_chars: length of each window checked for ``word_list``.
        edge_chars: how much of the start and of the end of a trace ``address_grader``
            reads.
        max_chars: only the first ``max_chars`` characters of a trace are analysed.
    """

    own_words: float = 0.0
    verbatim: float = 0.0
    word_list: float = 0.0
    tags_in_trace: float = 0.0
    address_grader: float = 0.0
    several_codes: float = 0.0
    probe_chars: int = attrs.field(default=40, validator=attrs.validators.ge(8))
    window_chars: int = attrs.field(default=160, validator=attrs.validators.ge(20))
    edge_chars: int = attrs.field(default=300, validator=attrs.validators.ge(20))
    max_chars: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))


class IntegrityReward(Reward):
    """Penalties for degenerate traces and answers (registered as ``integrity``)."""

    name = "integrity"
    Params = IntegrityParams

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One value per sample: the sum of the penalties that apply (0 for none)."""
        p: IntegrityParams = self.params
        sources, starts, ends = batch.parsed.think_slices()
        trace_value = self._trace_value
        values = [
            trace_value(text[a : min(b, a + p.max_chars)], note)
            for text, a, b, note in zip(sources, starts, ends, batch.notes, strict=True)
        ]
        if p.several_codes:
            codeset = self.context.codeset
            for k, block in enumerate(batch.parsed.diagnosis):
                if _several_codes(block, codeset):
                    values[k] += p.several_codes
        return torch.tensor(values, dtype=torch.float32)

    def _trace_value(self, trace: str, note: str) -> float:
        if not trace:
            return 0.0
        p: IntegrityParams = self.params
        value = 0.0
        copied = listed = False
        if p.verbatim or p.own_words:
            found = _verbatim_probes(trace, note, p.probe_chars)
            if found < 3 and _lists_descriptions(trace, self.context.codeset):
                found = 3
            copied = found > 0
            if found >= 2:
                value += p.verbatim * (found - 1) / 2
        if (p.word_list or p.own_words) and _reads_as_list(trace, p.window_chars):
            listed = True
            value += p.word_list
        if p.own_words and not (copied or listed) and len(trace) >= 3 * p.probe_chars:
            value += p.own_words
        if p.tags_in_trace and "<" in trace and any(tag in trace for tag in _TAGS):
            value += p.tags_in_trace
        if p.address_grader:
            edge = p.edge_chars
            edges = (trace if len(trace) <= 2 * edge else trace[:edge] + trace[-edge:]).lower()
            if any(phrase in edges for phrase in _GRADER_PHRASES):
                value += p.address_grader
        return value


def _verbatim_probes(trace: str, note: str, width: int) -> int:
    """How many of the trace's start, middle and end stretches are verbatim note text."""
    if len(trace) < 3 * width or len(note) < width:
        return 0
    step = (len(trace) - width) // 2
    # The middle first: most traces are not copies, and a miss there settles it unless
    # both ends are copies.
    middle = trace[step : step + width] in note
    start = trace[:width] in note
    if not (middle or start):
        return 0
    return middle + start + (trace[2 * step : 2 * step + width] in note)


def _lists_descriptions(trace: str, codeset: CodeSet) -> bool:
    """Whether the trace lists ICD-10-CM descriptions (or titles) verbatim, as sentences.

    Two cheap looks decide whether to read the whole trace: does it start with a
    description, or does the sentence after its middle? Only then are its sentences
    looked up, and two or more descriptions among them make a list.
    """
    prefixes, known = _descriptions(codeset)
    head = trace[:_PREFIX_CHARS].lower()
    after = trace.find(". ", len(trace) // 2)
    middle = trace[after + 2 : after + 2 + _PREFIX_CHARS].lower() if after >= 0 else ""
    if head not in prefixes and middle not in prefixes:
        return False
    pieces = (piece.strip().lower() for piece in _PIECES.split(trace))
    return sum(piece in known for piece in pieces) >= 2


def _reads_as_list(trace: str, width: int) -> bool:
    """Whether the middle or the end of the trace reads as a list of words.

    A window of ``width`` characters (about 25 words) is a list when it holds fewer than
    two different function words and fewer than two sentence marks (``.;:()?!``): prose has a
    function word in about every third word, and terse clinical notes ("Febrile,
    hypotensive despite fluids: septic. Urinary source (nitrites).") keep their
    punctuation; keyword stuffing and padding have neither. Padding is appended and
    stuffing fills the trace, so the middle and the end tell.
    """
    if len(trace) <= width:
        if len(trace.split()) < _MIN_LIST_WORDS:
            return False  # too short to tell a list from a terse sentence
        return not _prose(trace)
    middle = (len(trace) - width) // 2
    return not (_prose(trace[middle : middle + width]) and _prose(trace[-width:]))


def _prose(window: str) -> bool:
    # Two different function words, found by one set intersection (no loop in Python).
    if len(_FUNCTION_WORDS.intersection(window.lower().split())) >= 2:
        return True
    return sum(map(window.count, ".;:()?!")) >= 2


def _several_codes(block: str, codeset: CodeSet) -> bool:
    codes = {codeset.normalize(token) for token in _CODE_TOKEN.findall(block)}
    return sum(code in codeset for code in codes) > 1


_DESCRIPTIONS: weakref.WeakKeyDictionary[CodeSet, tuple[frozenset[str], frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def _descriptions(codeset: CodeSet) -> tuple[frozenset[str], frozenset[str]]:
    """The first characters of every description and title, and the whole texts, in
    lower case: built once per code set (about 0.1 s and 10 MB)."""
    found = _DESCRIPTIONS.get(codeset)
    if found is None:
        texts = [codeset.describe(code) or "" for code in codeset.codes()]
        texts += [codeset.block_title(block) for block in codeset.blocks()]
        texts += [codeset.chapter_title(chapter) for chapter in codeset.chapters()]
        known = frozenset(text.strip().lower() for text in texts if text)
        found = (frozenset(text[:_PREFIX_CHARS] for text in known), known)
        _DESCRIPTIONS[codeset] = found
    return found


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    """Register the ``integrity`` reward."""
    register(IntegrityReward)
