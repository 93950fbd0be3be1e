"""Mapping a diagnosis written in words to an ICD-10-CM code.

Some completions name the diagnosis instead of coding it ("type 2 diabetes mellitus
without complications"). Scoring every one of ~110,000 titles and inclusion terms with
a good fuzzy scorer costs 60-100 ms per query, so the matcher works in two steps:

1. **Recall** - an inverted index from word to entries gives candidates; each is scored
   by the IDF weight of the query words it contains, minus a small penalty for the words
   it has that the query lacks, and the best :data:`SHORTLIST` are kept.
2. **Re-rank** - the shortlist is scored with rapidfuzz (the mean of ``token_set_ratio``,
   which rewards containing the query, and ``token_sort_ratio``, which penalises extra
   words), billable codes win near-ties, and a best score under
   :data:`MIN_SCORE` means "no match".

Words are lower-cased, stripped of punctuation and crudely singularised, and a few
function words are ignored, so "Fractures of the femur" and "femur fracture" share
their words. "Unspecified" and "NOS" are ignored too: "asthma" should find "Asthma NOS"
and "hypothyroidism" the billable "Hypothyroidism, unspecified" rather than "Other
specified hypothyroidism". An entry naming a context the query does not mention (newborn,
pregnancy, sequela ...) loses :data:`_QUALIFIER_PENALTY` points.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Sequence

import attrs

__all__ = ["MIN_SCORE", "SHORTLIST", "TextMatch", "TextMatcher", "normalize_text"]

MIN_SCORE = 75.0
"""Best re-ranked score (0-100) below which :meth:`TextMatcher.match` returns ``None``."""

SHORTLIST = 64
"""How many recall candidates are re-ranked with rapidfuzz."""

_BILLABLE_MARGIN = 3.0
"""A billable entry beats a non-billable one when it scores at most this much less."""

_EXTRA_WORD_PENALTY = 0.15
"""Recall penalty per entry word absent from the query, as a fraction of a mean IDF."""

_COMMON_DF = 2000
"""Words in more entries than this are tested per candidate instead of walked."""

_QUALIFIER_PENALTY = 10.0
"""Re-rank penalty for an entry naming a context (newborn, pregnancy ...) the query lacks."""

_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "as",
        "at",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "of",
        "on",
        "or",
        "the",
        "to",
        "nos",
        "unspecified",
    }
)
_QUALIFIERS = frozenset(
    {
        "newborn",
        "neonatal",
        "perinatal",
        "fetal",
        "fetus",
        "maternal",
        "pregnancy",
        "pregnant",
        "puerperium",
        "puerperal",
        "childbirth",
        "congenital",
        "postprocedural",
        "history",
        "screening",
        "sequela",
        "subsequent",
    }
)
_PUNCTUATION = str.maketrans(dict.fromkeys("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", " "))
_ALIASES = {
    "ii": "2",
    "i": "1",
    "type2": "type 2",
    "type1": "type 1",
    "t2dm": "type 2 diabetes mellitus",
    "t1dm": "type 1 diabetes mellitus",
    "dm": "diabetes mellitus",
    "w": "with",
    "wo": "without",
    "htn": "hypertension",
    "copd": "chronic obstructive pulmonary disease",
    "chf": "congestive heart failure",
    "uti": "urinary tract infection",
    "mi": "myocardial infarction",
    "ckd": "chronic kidney disease",
}


@attrs.frozen
class TextMatch:
    """The code a free-text diagnosis was mapped to.

    Attributes:
        code: the normalized code (``"E119"``).
        score: similarity of the query and ``term``, 0 to 100.
        term: the description or inclusion term that matched.
    """

    code: str
    score: float
    term: str


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and stop words, expand abbreviations, singularise.

    The singularising is crude ("diabetes" -> "diabete") but applied to queries and
    entries alike, which is all that matters for matching.

    >>> normalize_text("Fractures of the Femur, NOS")
    'fracture femur'
    >>> normalize_text("T2DM w/o complications")
    'type 2 diabete mellitus without complication'
    """
    text = text.lower().replace("w/o", " without ").replace("w/", " with ")
    if "not specified" in text:  # "site not specified" is how some titles say "unspecified"
        text = text.replace("not specified", " ")
    words = []
    for word in text.translate(_PUNCTUATION).split():
        for part in _ALIASES.get(word, word).split():
            if part not in _STOPWORDS:
                words.append(_stem(part))
    return " ".join(words)


def _membership(positions: list[int], count: int) -> bytearray:
    """A byte per entry, 1 for those in ``positions``: an O(1) test for common words."""
    member = bytearray(count)
    for position in positions:
        member[position] = 1
    return member


class TextMatcher:
    """Free-text diagnosis -> code, over titles and inclusion terms (see module docs).

    Building it indexes every entry (about 1 s), so :class:`CodeSet` builds it on the
    first free-text query only. Common words such as "left" or "encounter" sit in tens
    of thousands of entries; summing scores over their posting lists cost 20-30 ms a
    query, so they only add weight to the candidates the rarer words found. (A torch
    version was as fast on an idle machine but its multi-threaded element-wise ops
    stalled for 10-30 ms each whenever the thread pool had to wait.)
    """

    def __init__(self, entries: Sequence[tuple[str, str]], billable: frozenset[str]) -> None:
        """Index ``entries``, (code, text) pairs; ``billable`` holds the billable codes."""
        from rapidfuzz import fuzz  # imported here: only free-text users pay for it

        self._token_set_ratio = fuzz.token_set_ratio
        self._token_sort_ratio = fuzz.token_sort_ratio
        self._codes: list[str] = []
        self._texts: list[str] = []
        self._normalized: list[str] = []
        self._billable: list[bool] = []
        lengths: list[int] = []
        postings: dict[str, list[int]] = {}
        seen: set[tuple[str, str]] = set()
        for code, text in entries:
            normalized = normalize_text(text)
            if not normalized or (code, normalized) in seen:
                continue
            seen.add((code, normalized))
            position = len(self._codes)
            self._codes.append(code)
            self._texts.append(text)
            self._normalized.append(normalized)
            self._billable.append(code in billable)
            words = set(normalized.split())
            lengths.append(len(words))
            for word in sorted(words):
                postings.setdefault(word, []).append(position)

        count = len(self._codes)
        self._lengths = lengths
        self._postings = {word: array("i", positions) for word, positions in postings.items()}
        self._idf = {w: math.log(1.0 + count / len(p)) for w, p in postings.items()}
        self._common = {
            word: _membership(positions, count)
            for word, positions in postings.items()
            if len(positions) > _COMMON_DF
        }
        self._penalty = _EXTRA_WORD_PENALTY * sum(self._idf.values()) / max(len(self._idf), 1)

    def __len__(self) -> int:
        return len(self._codes)

    def _shortlist(self, words: set[str]) -> list[int]:
        """Recall: the entries sharing the most (IDF-weighted) words with the query.

        Rare words are accumulated from their posting lists; common words ("left",
        "encounter") only add their weight to those candidates, by a membership test,
        so no query walks tens of thousands of postings more than once.
        """
        known = sorted((w for w in words if w in self._idf), key=lambda w: len(self._postings[w]))
        if not known:
            return []
        rare = [w for w in known if w not in self._common] or known[:1]
        scores: dict[int, float] = {}
        for word in rare:
            weight = self._idf[word]
            get = scores.get
            for position in self._postings[word]:
                scores[position] = get(position, 0.0) + weight
        for word in known:
            if word in rare:
                continue
            weight, member = self._idf[word], self._common[word]
            for position in scores:
                if member[position]:
                    scores[position] += weight
        lengths, penalty, size = self._lengths, self._penalty, len(words)
        return heapq.nlargest(
            SHORTLIST,
            scores,
            key=lambda p: scores[p] - penalty * max(lengths[p] - size, 0),
        )

    def match(self, text: str) -> TextMatch | None:
        """Return the best code for ``text``, or ``None`` when nothing is close enough."""
        query = normalize_text(text)
        words = set(query.split())
        best: tuple[float, int] | None = None
        best_billable: tuple[float, int] | None = None
        context = not _QUALIFIERS.isdisjoint(words)
        for position in self._shortlist(words):
            candidate = self._normalized[position]
            score = 0.5 * (
                self._token_set_ratio(query, candidate) + self._token_sort_ratio(query, candidate)
            )
            if not context and not _QUALIFIERS.isdisjoint(candidate.split()):
                score -= _QUALIFIER_PENALTY
            if best is None or score > best[0]:
                best = (score, position)
            if self._billable[position] and (best_billable is None or score > best_billable[0]):
                best_billable = (score, position)
        if best is None:
            return None
        if best_billable is not None and best_billable[0] >= best[0] - _BILLABLE_MARGIN:
            best = best_billable
        score, position = best
        if score < MIN_SCORE:
            return None
        return TextMatch(code=self._codes[position], score=score, term=self._texts[position])
