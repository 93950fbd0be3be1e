"""Built-in plugin: quality of the reasoning trace.

Five terms, each switched off at 0: a non-empty trace, a length window, a
repetition penalty, grounding of the trace in the admission note, and
consistency of the trace with the predicted code's description. They use cheap,
linear text counts (substring search against per-note and per-code term lists
that are cached), because this runs for every sample of every GRPO step: the
counts come from ``_scan``.
"""

from __future__ import annotations

import string
from array import array
from collections import OrderedDict
from typing import Any

import attrs
import torch

from icdreward import Feature, Reward, ScoringBatch
from icdreward.plugin import Register, hookimpl

from ._scan import trace_counts

__all__ = ["ReasoningParams", "ReasoningReward"]

_PUNCTUATION = str.maketrans(dict.fromkeys(string.punctuation, " "))
_STOPWORD_TEXT = """
about above after again against along also among and another any are around because been
before being below between both but cannot could does doing down during each either else
ever every from further given had has have having here history into itself just last less
more most much must neither never none nor not now often once only other others over patient
patients per perhaps presents presented presenting rather reports same several should since
some such than that their them then there these they this those though through thus under
unless until upon very was were what when where whether which while who whom whose why will
with within without would year years old yesterday today unspecified specified classified
elsewhere encounter initial subsequent sequela type region site part left right bilateral
status
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_ASCII_STOPWORDS = frozenset(word.encode("ascii") for word in _STOPWORDS)
_ASCII_FOLD = bytes(
    32 if chr(b) in string.punctuation or chr(b) in "\x1c\x1d\x1e\x1f"
    else b + 32 if 65 <= b <= 90 else b
    for b in range(256)
)  # fmt: skip
_STEM = 6
_TAIL = 40
_SENTENCE_CHARS = 12
_CODE_TERMS = 4
_CACHE_SIZE = 4096
_CODE_CACHE_SIZE = 65_536


def _terms(text: str, limit: int) -> tuple[str, ...]:
    """Distinct content-word stems of ``text``, longest words first, at most ``limit``.

    The words are those of ``text.lower().translate(_PUNCTUATION).split()`` with at least
    four characters, neither stop words nor all digits, ordered by length (longest
    first) then alphabetically; their first six characters, without repeats.
    """
    if text.isascii():
        # One bytes.translate folds case and blanks out punctuation (and the four ASCII
        # separators that str.split, unlike bytes.split, splits on), with the same words
        # as str.lower plus str.translate, about a quarter faster.
        words: set[Any] = set(text.encode("ascii").translate(_ASCII_FOLD).split())
        words -= _ASCII_STOPWORDS
    else:
        words = set(text.lower().translate(_PUNCTUATION).split())
        words -= _STOPWORDS
    # Filtering the distinct words (not every word) and sorting with C-level keys (two
    # stable sorts give the order of the key (-len, word)) keep Python out of the loops.
    content = sorted(sorted([w for w in words if len(w) >= 4 and not w.isdigit()]), key=len,
                     reverse=True)  # fmt: skip
    stems = [w[:_STEM] for w in content[: limit * 2]]
    if stems and type(stems[0]) is bytes:
        stems = [stem.decode("ascii") for stem in stems]
    return tuple(dict.fromkeys(stems))[:limit]


def _repetition(n: int, sentences: int, distinct: int, tail_repeats: int) -> float:
    """Share of a trace of ``n`` characters that repeats earlier text (0 for none, up to 1).

    Two cheap signals: sentences said again (the share of duplicate sentences), and
    a degenerate loop running to the end of the output (its last characters occur
    many times). Fragments ("...", the "16" of "M51.16") are not sentences.
    """
    if n < 2 * _TAIL:
        return 0.0
    duplicates = (sentences - distinct) / sentences if sentences else 0.0
    loop = (tail_repeats - 1) * _TAIL / n
    return min(1.0, max(duplicates, loop))


@attrs.frozen
class ReasoningParams:
    """Parameters of the ``reasoning`` reward.

    Attributes:
        nonempty: added when the first think trace is non-empty.
        require_closed: only a closed ``</think>`` block counts as a trace.
        min_words: below this many words ``length_penalty`` applies in proportion
            to the shortfall (0 switches the lower bound off).
        max_words: above this many words ``length_penalty`` applies in proportion to
            the excess, fully at twice the bound (0 switches it off).
        length_penalty: the (negative) value of the length term at full strength.
        repetition_penalty: value at full repetition (the share of the trace that
            repeats earlier sentences, or a loop at its end), above ``repetition_floor``.
        repetition_floor: repetition share that is tolerated.
        grounding: value when every salient term of the admission note appears in
            the trace, in proportion to the share that does.
        grounding_terms: how many salient note terms are checked.
        consistency: value when every content word of the predicted code's
            description appears in the trace, in proportion to the share that does.
        max_chars: only the first ``max_chars`` characters of a trace are analysed.
    """

    nonempty: float = 0.0
    require_closed: bool = True
    min_words: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    max_words: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    length_penalty: float = 0.0
    repetition_penalty: float = 0.0
    repetition_floor: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
    )
    grounding: float = 0.0
    grounding_terms: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    consistency: float = 0.0
    max_chars: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))


class ReasoningReward(Reward):
    """Quality of the think trace (registered as ``reasoning``)."""

    name = "reasoning"
    Params = ReasoningParams

    def __init__(self, params: ReasoningParams, context: Any) -> None:
        super().__init__(params, context)
        self._note_terms: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._code_terms: dict[str, tuple[str, ...]] = {}
        self._text_terms = bool(
            params.min_words
            or params.max_words
            or params.repetition_penalty
            or params.grounding
            or params.consistency
        )

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        p: ReasoningParams = self.params
        trace = batch.parsed.feature(Feature.THINK_CHARS) > 0
        if p.require_closed:
            trace &= batch.parsed.flag(Feature.THINK_CLOSED)
        # No trace at all is the shortest trace: it must never score above a short one.
        missing = p.length_penalty if p.min_words else 0.0
        out = torch.where(trace, p.nonempty, missing)
        if not self._text_terms:
            return out
        # Each trace is sliced out of its completion (at most max_chars of it) and dropped
        # once scored: the parser need not keep a copy of every trace of the batch.
        sources, starts, ends = batch.parsed.think_slices()
        limit = p.max_chars
        text_score = self._text_score
        extra = array(
            "f",
            [
                text_score(source[start : min(end, start + limit)], note, code) if ok else 0.0
                for source, start, end, note, code, ok in zip(
                    sources, starts, ends, batch.notes, batch.parsed.codes, trace.tolist(),
                    strict=True,
                )
            ],
        )  # fmt: skip
        if not extra:
            return out
        # The same float32 values as torch.tensor(list), without its per-item cost.
        return out + torch.frombuffer(extra, dtype=torch.float32)

    def _text_score(self, trace: str, note: str, code: str) -> float:
        p: ReasoningParams = self.params
        note_terms: tuple[str, ...] = ()
        code_terms: tuple[str, ...] = ()
        if p.grounding and note:
            note_terms = self._note_terms.get(note) or self._terms_of_note(note)
        if p.consistency and code:
            code_terms = self._code_terms.get(code) or self._terms_of_code(code)
        counts = trace_counts(trace, note_terms, code_terms, _SENTENCE_CHARS, _TAIL)
        blanks, sentences, distinct, tail_repeats, note_hits, code_hits = counts
        value = 0.0
        if p.min_words or p.max_words:
            # An estimate (runs of spaces count more than once) that needs no word list.
            words = blanks + 1
            if p.min_words and words < p.min_words:
                value += p.length_penalty * (1.0 - words / p.min_words)
            elif p.max_words and words > p.max_words:
                value += p.length_penalty * min(1.0, (words - p.max_words) / p.max_words)
        if p.repetition_penalty:
            rep = _repetition(len(trace), sentences, distinct, tail_repeats)
            if rep > p.repetition_floor:
                value += (
                    p.repetition_penalty * (rep - p.repetition_floor) / (1 - p.repetition_floor)
                )
        if note_terms:
            value += p.grounding * note_hits / len(note_terms)
        if code_terms:
            value += p.consistency * code_hits / len(code_terms)
        return value

    def _terms_of_note(self, note: str) -> tuple[str, ...]:
        # The n samples of a GRPO group share one note: compute its terms once.
        terms = self._note_terms.get(note)
        if terms is None:
            terms = _terms(note, self.params.grounding_terms)
            self._note_terms[note] = terms
            if len(self._note_terms) > _CACHE_SIZE:
                self._note_terms.popitem(last=False)
        return terms

    def _terms_of_code(self, code: str) -> tuple[str, ...]:
        terms = self._code_terms.get(code)
        if terms is None:
            description = self.context.codeset.describe(code) or ""
            terms = _terms(description, _CODE_TERMS)
            # Codes answered are bounded only by what a policy writes (invented codes
            # too): a long run must not grow this table without end.
            if len(self._code_terms) >= _CODE_CACHE_SIZE:
                self._code_terms.clear()
            self._code_terms[code] = terms
        return terms


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    register(ReasoningReward)
