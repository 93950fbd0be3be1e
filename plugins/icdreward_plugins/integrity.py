"""Built-in plugin: what only honest reasoning earns, and what it never does.

Grounding in the note and consistency with the code's description are overlap terms:
copying the note, or the code's description, maximises them. ``integrity`` (registered
as a reward component of that name) pays what copying cannot earn and charges what
honest reasoning never does, so that for the same predicted code no degenerate
completion scores as much as an honest one:

- ``own_words``: the trace is written in its own words: at most one of its probed word
  sequences is note text, and no other check below applies.
- ``verbatim``: the trace is text of the note, or ICD-10-CM descriptions. Both sides are
  compared normalised (lower case, punctuation as spaces, whitespace collapsed), as
  sequences of four words: ``probes`` sequences spread over the trace are looked up
  among the note's. The charge starts when two fifths of them are note text and is
  full from seven tenths: a quoted finding is not a copy, the note with a few words
  changed is. A trace whose sentences include two or more ICD-10-CM descriptions or titles is
  charged in full.
- ``word_list``: the trace reads as a list of words rather than sentences: a window of
  ``window_chars`` characters in its middle or at its end holds few function words
  ("the", "of", "with", ...; under 15 % of its words) and a full stop every two or
  three words, or no stop at all and no comma or a comma every two or three words.
  Keyword stuffing (with or without full stops) and padding with note words look like
  this; clinical prose, however terse, does not.
- ``tags_in_trace``: answer or think tags inside the trace, in any case or spacing (a
  second answer hidden in the reasoning).
- ``address_grader``: the trace speaks to whoever scores it ("note to the grader",
  "ignore previous instructions", "award full marks", "assign the reward"). Rule-based
  rewards ignore such text anyway; the charge makes honest completions strictly better,
  and the judge's prompt escaping keeps it from reaching the judge as instructions.
- ``hedged_answer``: the answer block holds more than one valid code, or hedges ("or",
  "possibly", "versus", "?", "/").

Each check is linear in the trace: one normalised copy of it, a dozen set lookups, and
a few substring searches. Values are added: ``own_words`` positive, the others
negative. The ``default`` preset sets them; every value is 0 (the check off) unless
configured.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
import string
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from icdreward import Reward, ScoringBatch
from icdreward.codeset import CodeSet
from icdreward.plugin import Register, hookimpl

__all__ = ["IntegrityParams", "IntegrityReward"]

# Normalisation (lower case, ASCII punctuation as spaces) goes through bytes.translate,
# one table lookup a character; str.translate with a mapping costs tens of nanoseconds a
# character. A text that is not ASCII is lowered by str.lower first (see _normalize).
_ASCII_NORMALIZE = bytes.maketrans(
    string.ascii_uppercase.encode() + string.punctuation.encode(),
    string.ascii_lowercase.encode() + b" " * len(string.punctuation),
)
_FUNCTION_WORDS = frozenset(
    ("the", "of", "and", "with", "is", "was", "in", "to", "a", "an", "for", "this", "that",
     "which", "on", "by", "as", "or", "at", "from", "are", "be", "it", "has", "had", "no",
     "not", "but", "than", "so", "there", "were", "his", "her", "he", "she", "we", "i")
)  # fmt: skip
_GRADER_WORDS = ("grader", "evaluator", "reviewer", "rubric", "reward", "override")
# Words that are ordinary in clinical text alone ("hard to judge", "needle marks",
# "Wells score"): they count only inside these phrases.
_GRADER_PHRASES = {
    "ignore": ("ignore previous", "ignore all", "ignore the above", "ignore prior",
               "ignore any", "ignore the instructions", "ignore your"),
    "judge": ("dear judge", "the judge", "to the judge"),
    "marks": ("full marks", "top marks", "maximum marks"),
    "score": ("maximum score", "highest score", "full score", "perfect score", "score this"),
    "rate": ("rate this", "rate it", "rate the"),
}  # fmt: skip
_HEDGE_WORDS = frozenset(
    ("or", "vs", "versus", "possibly", "either", "maybe", "probably", "perhaps",
     "alternatively", "else", "unless")
)  # fmt: skip
_CODE_TOKEN = re.compile(r"(?<![0-9A-Za-z])[A-Za-z][0-9][0-9A-Za-z](?:\.?[0-9A-Za-z]{1,4})?")
_TAG = re.compile(r"<\s*/?\s*(?:think|diagnosis)\b", re.IGNORECASE)
_STOP_BYTES = b".;:!?\n"
_SENTENCE_END = re.compile(r"[.;:!?\n]")
_PIECE_ENDS = ".;\n"
_PIECES = re.compile(f"[{_PIECE_ENDS}]+")
_SHINGLE = 4
_FIRST_WORDS = operator.itemgetter(*range(_SHINGLE))  # a probe's key: a tuple of its words
_PROBE_CHARS = 64
_EDGE_CHARS = 250
_MIN_OWN_CHARS = 120
_ANSWER_CHARS = 256
_DESCRIPTION_CHARS = 240
_CACHE_SIZE = 4096
_CHUNK = 64  # samples of one note scored together


@attrs.frozen
class IntegrityParams:
    """Parameters of the ``integrity`` reward (the keys of ``[rewards.integrity]``).

    Attributes:
        own_words: value when the trace is in its own words (at least 120 characters,
            at most one probe is note text, no charge below applies).
        verbatim: value when the trace is note text, or lists ICD-10-CM descriptions
            (in proportion, see the module docstring).
        word_list: value when the trace reads as a list of words, not sentences.
        tags_in_trace: value when the trace holds answer or think tags.
        address_grader: value when the trace addresses the grader.
        hedged_answer: value when the answer block holds several codes or a hedge.
        probes: how many four-word sequences of the trace ``verbatim`` looks up.
        window_chars: length of each window checked for ``word_list``.
        max_chars: only the first ``max_chars`` characters of a trace are analysed.
    """

    own_words: float = 0.0
    verbatim: float = 0.0
    word_list: float = 0.0
    tags_in_trace: float = 0.0
    address_grader: float = 0.0
    hedged_answer: float = 0.0
    probes: int = attrs.field(default=8, validator=attrs.validators.ge(3))
    window_chars: int = attrs.field(default=160, validator=attrs.validators.ge(20))
    max_chars: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))


class IntegrityReward(Reward):
    """Pays own words, charges degenerate traces and answers (registered as ``integrity``)."""

    name = "integrity"
    Params = IntegrityParams

    def __init__(self, params: IntegrityParams, context: Any) -> None:
        super().__init__(params, context)
        self._answers: OrderedDict[str, bool] = OrderedDict()

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One value per sample: the credit and charges that apply (0 for none)."""
        p: IntegrityParams = self.params
        sources, starts, ends = batch.parsed.think_slices()
        values = [0.0] * len(sources)
        trace_value = self._trace_value
        # The n samples of a GRPO group share one note: they are scored together, so
        # that the note is read once for all their probes (in chunks, so that a batch
        # with one note keeps only a chunk's traces at a time).
        for note, members in _by_note(batch.notes).items():
            note_words = functools.cache(functools.partial(_words, note))  # once a note
            for first in range(0, len(members), _CHUNK):
                chunk = members[first : first + _CHUNK]
                traces = [
                    sources[i][starts[i] : min(ends[i], starts[i] + p.max_chars)] for i in chunk
                ]
                norms = list(map(_normalize, traces))
                hits = self._hits(note_words, norms) if note else [0] * len(chunk)
                for i, trace, norm, found in zip(chunk, traces, norms, hits, strict=True):
                    values[i] = trace_value(trace, norm, found)
        if p.hedged_answer:
            hedged = self._hedged
            for k, block in enumerate(batch.parsed.diagnosis):
                if hedged(block[:_ANSWER_CHARS]):
                    values[k] += p.hedged_answer
        return torch.tensor(values, dtype=torch.float32)

    def _hits(self, note_words: Callable[[], list[str]], norms: list[str]) -> list[int]:
        """For each normalised trace, how many of its probes are note text."""
        p: IntegrityParams = self.params
        if not (p.verbatim or p.own_words):
            return [0] * len(norms)
        keys = [_probe_keys(norm, p.probes) for norm in norms]
        wanted = set().union(*keys)
        if not wanted:
            return [0] * len(norms)
        # Only the probes' sequences are kept: the note's sequences pass one at a time,
        # so no set of all of them (a tuple per note word) is ever built.
        words = note_words()
        found = wanted.intersection(zip(*(words[k:] for k in range(_SHINGLE)), strict=False))
        if not found:
            return [0] * len(norms)
        return [sum(map(found.__contains__, probed)) for probed in keys]

    def _hedged(self, block: str) -> bool:
        # Answers repeat (the n samples of a group often give the same code, written
        # the same way): each distinct block is read once.
        found = self._answers.get(block)
        if found is None:
            found = self._answers[block] = _hedged(block, self.context.codeset)
            if len(self._answers) > _CACHE_SIZE:
                self._answers.popitem(last=False)
        return found

    def _trace_value(self, trace: str, norm: str, hits: int) -> float:
        """The value of one trace, given its normalised copy and its probes' hits."""
        if not trace:
            return 0.0
        p: IntegrityParams = self.params
        charge = 0.0
        if p.verbatim or p.own_words:
            if hits < p.probes and (
                # An ASCII trace keeps its length once normalised, so a window of
                # ``norm`` is the normalised window of the trace.
                _lists_descriptions_ascii(trace, norm, self.context.codeset)
                if trace.isascii()
                else _lists_descriptions(trace, self.context.codeset)
            ):
                hits = p.probes
            charge += p.verbatim * min(1.0, max(0.0, (hits / p.probes - 0.4) / 0.3))
        listed = (p.word_list or p.own_words) and _reads_as_list(trace, norm, p.window_chars)
        if listed:
            charge += p.word_list
        tagged = (p.tags_in_trace or p.own_words) and "<" in trace and _TAG.search(trace)
        if tagged:
            charge += p.tags_in_trace
        addressed = (p.address_grader or p.own_words) and _addresses_grader(norm)
        if addressed:
            charge += p.address_grader
        if (
            p.own_words
            and len(trace) >= _MIN_OWN_CHARS
            and hits <= 1
            and not (listed or tagged or addressed)
        ):
            return p.own_words + charge
        return charge


def _words(note: str) -> list[str]:
    return _normalize(note).split()


def _by_note(notes: Sequence[str]) -> dict[str, list[int]]:
    """The samples of each distinct note, in order (runs of one note are taken whole)."""
    groups: dict[str, list[int]] = {}
    for note, run in itertools.groupby(range(len(notes)), notes.__getitem__):
        groups.setdefault(note, []).extend(run)
    return groups


@functools.lru_cache(maxsize=1 << 15)
def _probe_positions(length: int, probes: int) -> tuple[int, ...]:
    """Where the probes of a normalised trace of ``length`` characters start looking.

    They are spread evenly from an offset that depends on the length, so that no fixed
    positions can be kept clear of copied text. They depend on the length alone: a
    table of them spares each trace the arithmetic.
    """
    step = (length - _PROBE_CHARS) / probes
    offset = (length * 2654435761 % 997) / 997 * step
    return tuple(int(offset + k * step) for k in range(probes))


def _probe_keys(norm: str, probes: int) -> list[tuple[str, ...]]:
    """The four-word sequences of the trace that are looked up among the note's.

    Each probe starts at the first word boundary after its position and counts only
    when its window holds a fifth word (so that the fourth is whole); only the probes
    are split into words, and no further than that fifth word.
    """
    if len(norm) - _PROBE_CHARS < probes * _SHINGLE:
        return []
    find = norm.find
    keys = []
    for position in _probe_positions(len(norm), probes):
        start = find(" ", position)
        if start < 0:
            break
        words = norm[start : start + _PROBE_CHARS].split(None, _SHINGLE)
        if len(words) > _SHINGLE:
            keys.append(_FIRST_WORDS(words))
    return keys


def _lists_descriptions(trace: str, codeset: CodeSet) -> bool:
    """Whether the trace lists ICD-10-CM descriptions (or titles), as sentences.

    Two cheap looks decide whether to read all its sentences: is its first sentence, or
    the sentence after its middle, a description? Only then are its sentences looked
    up (normalised like the descriptions), and two or more descriptions among them make
    a list.
    """
    known = _descriptions(codeset)[0]
    first = _PIECES.search(trace)
    head = trace[: first.start()] if first else trace
    if " ".join(_normalize(head[:_DESCRIPTION_CHARS]).split()) not in known:
        after = _PIECES.search(trace, len(trace) // 2)
        if after is None:
            return False
        following = _PIECES.search(trace, after.end())
        end = following.start() if following else len(trace)
        piece = trace[after.end() : min(end, after.end() + _DESCRIPTION_CHARS)]
        if " ".join(_normalize(piece).split()) not in known:
            return False
    pieces = (" ".join(_normalize(p).split()) for p in _PIECES.split(trace))
    return sum(piece in known for piece in pieces) >= 2


def _lists_descriptions_ascii(trace: str, norm: str, codeset: CodeSet) -> bool:
    """:func:`_lists_descriptions` of an ASCII trace, whose normalised copy is ``norm``.

    The same looks, but the two pieces are windows of ``norm`` (normalisation maps
    each ASCII character to one), the ends of pieces are found by ``str.find`` within
    the characters that are read (a regular expression scans a few nanoseconds a
    character), and a piece whose first word begins no description is rejected
    before it is rejoined.
    """
    known, firsts = _descriptions(codeset)
    # Only the first _DESCRIPTION_CHARS characters of a piece are read, so a piece
    # ending further on reads the same as one ending there.
    head = _stop(trace, 0, _DESCRIPTION_CHARS)
    if not _is_description(norm[: _DESCRIPTION_CHARS if head < 0 else head], known, firsts):
        after = _stop(trace, len(trace) // 2, len(trace))
        if after < 0:
            return False
        run = _PIECES.match(trace, after)  # the piece starts after this run of ends
        start = run.end() if run else after + 1
        end = start + _DESCRIPTION_CHARS
        following = _stop(trace, start, end)
        if not _is_description(norm[start : end if following < 0 else following], known, firsts):
            return False
    pieces = (" ".join(_normalize(p).split()) for p in _PIECES.split(trace))
    return sum(piece in known for piece in pieces) >= 2


def _stop(trace: str, start: int, end: int) -> int:
    """Where the first of ``_PIECES``' characters in ``trace[start:end]`` is (-1: none)."""
    first = -1
    for char in _PIECE_ENDS:
        found = trace.find(char, start, end if first < 0 else first)
        if found >= 0:
            first = found
    return first


def _is_description(piece: str, known: frozenset[str], firsts: frozenset[str]) -> bool:
    """Whether ``piece`` (normalised), its whitespace collapsed, is in ``known``."""
    head = piece.split(None, 1)
    if not head:
        return "" in known
    return head[0] in firsts and " ".join(piece.split()) in known


def _normalize(text: str) -> str:
    """``text`` in lower case with punctuation as spaces (ASCII text keeps its length)."""
    if text.isascii():
        return text.encode().translate(_ASCII_NORMALIZE).decode()
    return _normalize_lowered(text.lower())


def _normalize_lowered(lowered: str) -> str:
    # ``lowered.translate(_NORMALIZE)``, which looks up a mapping for each character
    # (about 100 ns each). UTF-8 writes a non-ASCII character in bytes of 0x80 and
    # above only, so the byte table, which changes ASCII punctuation (and upper case,
    # of which lower case text has none), leaves every other character whole;
    # "surrogatepass" carries lone surrogates through unchanged.
    data = lowered.encode("utf-8", "surrogatepass")
    return data.translate(_ASCII_NORMALIZE).decode("utf-8", "surrogatepass")


def _reads_as_list(trace: str, norm: str, width: int) -> bool:
    """Whether the middle or the end of the trace reads as a list of words."""
    if len(trace) <= width:
        return _is_list(trace, norm, minimum=8)
    middle = (len(trace) - width) // 2
    return _is_list(trace[middle : middle + width], norm[middle : middle + width]) or _is_list(
        trace[-width:], norm[-width:]
    )


def _is_list(window: str, norm: str, minimum: int = 1) -> bool:
    # Prose has a function word in about every third word; a list has few, and either a
    # full stop every two words or so, or, with no stop at all, no punctuation or a comma
    # every two words or so. Terse findings (another language, too) keep their stops
    # between clauses. The punctuation is counted first: it rules out most prose
    # without hashing each word for the function-word count.
    words = norm.split()
    tokens = len(words)
    if tokens < minimum:
        return False
    # UTF-8 writes these ASCII characters as the bytes of no other character.
    encoded = window.encode("utf-8", "surrogatepass")
    stops = len(encoded) - len(encoded.translate(None, _STOP_BYTES))
    if stops:
        if tokens / (stops + 1) > 2.5:
            return False
    else:
        commas = window.count(",")
        if commas and tokens / (commas + 1) > 2.5:
            return False
    return sum(map(_FUNCTION_WORDS.__contains__, words)) < 0.15 * tokens


def _addresses_grader(norm: str) -> bool:
    # The start and the end of the trace, where such text goes: a search of the whole
    # trace for each word would cost more than the rest of the component. In the middle
    # it gains nothing from rule-based rewards, and the judge's escaping keeps it data.
    edges = norm if len(norm) <= 2 * _EDGE_CHARS else norm[:_EDGE_CHARS] + norm[-_EDGE_CHARS:]
    contains = edges.__contains__
    if any(map(contains, _GRADER_WORDS)):
        return True
    return any(
        any(map(contains, phrases))
        for trigger, phrases in _GRADER_PHRASES.items()
        if contains(trigger)
    )


def _hedged(block: str, codeset: CodeSet) -> bool:
    shaped = _hedged_code(block)
    if shaped is not None:
        return shaped
    if "?" in block or "/" in block:
        return True
    if not _HEDGE_WORDS.isdisjoint(_normalize(block).split()):
        return True
    codes = {codeset.normalize(token) for token in _CODE_TOKEN.findall(block)}
    return sum(code in codeset for code in codes) > 1


def _hedged_code(block: str) -> bool | None:
    """:func:`_hedged` of a block shaped like one code (None for any other block).

    ASCII letters and digits with at most one dot, after the third of them: such a
    block holds at most one code token (a token starts after a character that is not
    a letter or digit, and a dot there is taken by the first token), and no "?", "/"
    or punctuation but the dot; so only a word of it can hedge, and the words before
    the dot hold a digit when there is a dot.
    """
    if not block.isascii():
        return None
    if block.isalnum():
        return block.lower() in _HEDGE_WORDS
    head, _, tail = block.partition(".")
    code_head = len(head) == 3 and head[0].isalpha() and head[1].isdigit() and head.isalnum()
    if code_head and tail.isalnum():
        return tail.lower() in _HEDGE_WORDS
    return None


_DESCRIPTIONS: weakref.WeakKeyDictionary[CodeSet, tuple[frozenset[str], frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def _descriptions(codeset: CodeSet) -> tuple[frozenset[str], frozenset[str]]:
    """Every description and title, normalised, and the words they begin with.

    Built once per code set (about 0.3 s); the first words reject most pieces of a
    trace before they are rejoined and looked up.
    """
    found = _DESCRIPTIONS.get(codeset)
    if found is None:
        texts = [codeset.describe(code) or "" for code in codeset.codes()]
        texts += [codeset.block_title(block) for block in codeset.blocks()]
        texts += [codeset.chapter_title(chapter) for chapter in codeset.chapters()]
        known = frozenset(" ".join(_normalize(text).split()) for text in texts if text)
        found = (known, frozenset(text.split(None, 1)[0] for text in known if text))
        _DESCRIPTIONS[codeset] = found
    return found


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    """Register the ``integrity`` reward."""
    register(IntegrityReward)
