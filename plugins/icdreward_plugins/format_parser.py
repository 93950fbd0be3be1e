"""Built-in plugin: the ``<think>…</think><diagnosis>…</diagnosis>`` parser and format reward.

The parser scans each completion with a fixed number of forward ``str.find`` and
``str.count`` passes (and one regular expression that cannot backtrack), so it is linear
in the input size whatever the input holds (runs of newlines, thousands of unclosed
tags, megabytes of text). Everything a reward needs (trace, diagnosis, normalized code,
flags, spans) is found here, once per batch; the traces are sliced out of the texts only
if a reward reads them.
"""

from __future__ import annotations

import re
import struct
import threading
import weakref
from collections.abc import Mapping, Sequence
from itertools import compress
from operator import not_
from typing import Any, Literal

import attrs
import torch

from icdreward import Feature, ParsedBatch, Parser, Reward, ScoringBatch
from icdreward.codeset import CodeSet
from icdreward.plugin import Register, hookimpl

from ._tag_scan import (
    _DIAG,
    _DIAG_END,
    _THINK,
    _THINK_END,
    _count_pairs,
    _find,
    _nonspace,
    _pair_after,
    _strip_span,
)

__all__ = ["FormatParams", "FormatReward", "TagParser", "TagParserParams", "coerce_text"]

# ICD-10-CM shape: letter, digit, then letters/digits. The published pattern demanded two
# digits and so rejected real categories such as C4A, M1A and Z3A.
_CODE_SHAPE = re.compile(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}")
_CODE_TOKEN_UPPER = re.compile(
    r"(?<![0-9A-Za-z])([A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?)(?![0-9A-Za-z])"
)
_CODE_TOKEN_ANY = re.compile(
    r"(?<![0-9A-Za-z])([A-Za-z][0-9][0-9A-Za-z](?:\.?[0-9A-Za-z]{1,4})?)(?![0-9A-Za-z])"
)
_UNCLOSED_DIAGNOSIS_CHARS = 256
_CODE_SEARCH_CHARS = 512
_FREE_TEXT_CHARS = 300
_N_FEATURES = len(Feature)
_MEMO_SIZE = 65_536
_MEMO_KEY_CHARS = 64
# What follows the trace of a well-formed completion: ``</think>``, whitespace, a diagnosis
# block without ``<`` in it, whitespace. Matching it in one call costs less than the
# finds and comparisons it stands for; a diagnosis holding a ``<`` is left to the general
# path. Linear: each repeat is of one class of character, and the next part of the
# pattern starts with a character outside it.
_WELL_FORMED_END = re.compile(r"</think>\s*<diagnosis>([^<]*)</diagnosis>\s*\Z")
# (candidate, code, found, valid, known, from free text)
_Code = tuple[str, str, bool, bool, bool, bool]
_NO_CODE: _Code = ("", "", False, False, False, False)
# (start and end of the stripped think trace, diagnosis, candidate, code, the feature row
# packed as int32)
_Parsed = tuple[int, int, str, str, str, bytes]
# Packing each row straight into bytes is several times cheaper than growing an array.
_pack = struct.Struct(f"={_N_FEATURES}i").pack
# The fast path packs a row in two parts: the features up to THINK_START, memoized with
# the content of the diagnosis block, and the five spans and lengths after them.
_SPANS = _N_FEATURES - Feature.THINK_END
_pack_head = struct.Struct(f"={_N_FEATURES - _SPANS}i").pack
_pack_spans = struct.Struct(f"={_SPANS}i").pack
# What the fast path reads from the content of a diagnosis block: (diagnosis, candidate,
# code, the packed head of the row).
_Block = tuple[str, str, str, bytes]
_ONLY_STR = {str}
_UNSEEN: Any = object()  # a block the memo has not read yet (None: not a fast row)
# TagParser._written_codes, per code set and the settings that read a code.
_WRITTEN: weakref.WeakKeyDictionary[CodeSet, dict[tuple[Any, ...], dict[str, _Block]]] = (
    weakref.WeakKeyDictionary()
)
_WRITTEN_LOCK = threading.Lock()


@attrs.frozen
class TagParserParams:
    """Parameters of the ``tags`` parser.

    Attributes:
        mode: ``"strict"`` extracts a code only from a completion that is exactly one
            think block and one diagnosis block; ``"pair"`` (the published rule) only
            from the first closed think block followed by a closed diagnosis block,
            whatever else the text holds, and without such a pair there is no trace
            either; ``"lenient"`` takes the first diagnosis block wherever it is,
            accepts an unclosed think block and an unclosed diagnosis (up to the end
            of its line).
        prefilled_think: the prompt ends with an opened ``<think>``, so the parser
            sees ``"<think>" + completion`` (unless the completion repeats the tag).
        case_fold: upper-case the diagnosis before validating it.
        validate: ``"codeset"``: the code must exist in the code set; ``"pattern"``:
            it must have the ICD-10-CM shape; ``"none"``: any non-empty text.
        find_code_in_text: when the whole diagnosis is not a code, take the first
            valid code-like token inside it ("M51.16 (lumbar radiculopathy)").
        free_text: when no code is found, map the diagnosis text to a code with the
            code set's fuzzy matcher.
    """

    mode: Literal["strict", "pair", "lenient"] = "lenient"
    prefilled_think: bool = True
    case_fold: bool = True
    validate: Literal["codeset", "pattern", "none"] = "codeset"
    find_code_in_text: bool = True
    free_text: bool = False


def coerce_text(value: object) -> str | None:
    """The text of a completion, or None when ``value`` holds no text.

    Accepts ``str``, UTF-8 ``bytes``, a chat message ``{"content": ...}`` and a list
    of chat messages (the last assistant message, else the last message).

    >>> coerce_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    'a'
    >>> coerce_text(42) is None
    True
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Mapping):
        content = value.get("content")
        return content if isinstance(content, str) else None
    if isinstance(value, (list, tuple)) and value and all(isinstance(m, Mapping) for m in value):
        assistant = [m for m in value if m.get("role") == "assistant"]
        return coerce_text((assistant or list(value))[-1])
    return None


class TagParser(Parser):
    """Parses ``<think>…</think><diagnosis>…</diagnosis>`` completions (registered as ``tags``)."""

    name = "tags"
    Params = TagParserParams

    def __init__(self, params: TagParserParams, context: Any) -> None:
        super().__init__(params, context)
        codeset = context.codeset
        self._normalize = codeset.normalize
        self._known = codeset.__contains__
        self._codeset = codeset
        token = _CODE_TOKEN_ANY if params.case_fold else _CODE_TOKEN_UPPER
        self._token_finder = token.finditer
        self._shape = _CODE_SHAPE.fullmatch
        self._validate_codeset = params.validate == "codeset"
        self._memo: dict[str, _Code] = {}
        self._blocks: dict[str, _Block | None] = {}
        # The packed head of a fast row, by its (found, valid, known, free) flags.
        self._heads: dict[tuple[bool, ...], bytes] = {}
        self._written: dict[str, _Block] = {}  # see _written_codes; read on first use

    def parse(self, completions: Sequence[object]) -> ParsedBatch:
        """Parse every completion; never raises on any input."""
        values = completions if isinstance(completions, list) else list(completions)
        # Most completions of a training batch take the fast path: a pass over all of
        # them, then a second pass for the rest, costs less than one loop doing both.
        rows: list[_Parsed | None]
        if self.params.prefilled_think:
            rows = self._parse_well_formed(values)
        else:
            rows = [None] * len(values)
        texts: list[str] = values  # type: ignore[assignment]  # all str unless fixed below
        if None in rows:
            if set(map(type, values)) != _ONLY_STR:
                texts = [v if type(v) is str else "" for v in values]
            # The indices of the rows left, found without a Python step per row.
            for i in compress(range(len(rows)), map(not_, rows)):
                value = values[i]
                text = value if type(value) is str else coerce_text(value)
                if texts is not values:  # (else every value is a str, and its own text)
                    texts[i] = "" if text is None else text
                rows[i] = self._parse_any(texts[i], text is None)
        n = len(rows)
        if not n:
            empty: tuple[str, ...] = ()
            features = torch.zeros(0, _N_FEATURES, dtype=torch.int32)
            return ParsedBatch(empty, empty, empty, empty, empty, features)
        starts, ends, diagnosis, candidates, codes, feats = zip(*rows, strict=True)
        return ParsedBatch(
            texts=tuple(texts),
            think=None,  # sliced out of the texts if a reward reads it
            think_spans=(starts, ends),
            diagnosis=diagnosis,
            candidates=candidates,
            codes=codes,
            # bytearray.join builds the writable buffer frombuffer wants in one copy.
            features=torch.frombuffer(bytearray().join(feats), dtype=torch.int32).reshape(
                n, _N_FEATURES
            ),
        )

    def _parse_well_formed(self, values: list[object]) -> list[_Parsed | None]:
        """:meth:`_well_formed_row` of each value (None for a value that is not a str)."""
        if not self._written:
            self._written = self._written_codes()
        row_of = self._well_formed_row
        return [row_of(v) if type(v) is str else None for v in values]

    def _well_formed_row(self, text: str) -> _Parsed | None:
        """The common case in few steps: ``trace</think> <diagnosis>X</diagnosis>`` after a
        prefilled ``<think>``, with no ``<`` in the trace. None when it does not apply; the
        result is then exactly what :meth:`_parse_any` returns for the same text."""
        t1 = text.find("<")
        if t1 <= 0:
            return None
        end_match = _WELL_FORMED_END.match(text, t1)
        if end_match is None:
            return None
        # The block is what _parse_any reads: the diagnosis holds no "<", so its first
        # "</diagnosis>" is the one matched.
        content, d1 = end_match.span(1)
        raw = text[content:d1]
        # A miss is common on varied input: get() spares it a raised KeyError.
        known = self._written.get(raw)
        if known is None:
            known = self._blocks.get(raw, _UNSEEN)
            if known is _UNSEEN:
                known = self._block_of(raw)
        if known is None:
            return None
        diagnosis, candidate, code, head = known
        if text[t1 - 1].isspace() or text[0].isspace():
            start, end = _strip_span(text, 0, t1)
        else:  # nothing to strip (about half of the traces): no call
            start, end = 0, t1
        spans = _pack_spans(t1, content - 11, d1, len(text), end - start)
        return start, end, diagnosis, candidate, code, head + spans

    def _block_of(self, raw: str) -> _Block | None:
        """:meth:`_read_block`, memoized when short."""
        found = self._read_block(raw)
        if len(raw) <= _MEMO_KEY_CHARS:
            if len(self._blocks) >= _MEMO_SIZE:
                self._blocks.clear()
            self._blocks[raw] = found
        return found

    def _read_block(self, raw: str) -> _Block | None:
        """The fast path's reading of a diagnosis block's content: None when it is blank;
        else the diagnosis, its code, and the head of the row (the features up to
        THINK_START), which depends on nothing else."""
        diagnosis = raw.strip()
        if not diagnosis:
            return None
        # Read without the diagnosis memo: the block memo holds the same text (blocks
        # are rarely padded), and on varied input a second memo entry costs more than
        # the reading it would save.
        read = self._read_code(diagnosis)
        flags = read[2:]  # found, valid, known, free
        head = self._heads.get(flags)
        if head is None:
            head = self._heads[flags] = _pack_head(
                False, False, True, True, True, True, True, *flags, 0, 0, 0
            )
        return (diagnosis, read[0], read[1], head)

    def _written_codes(self) -> dict[str, _Block]:
        """:meth:`_read_block` of every code of the year as models write it (``M5116``
        and ``M51.16``), read once per code set and settings (about 0.4 s, 27 MB).

        A policy answers codes from the whole code set, most of them new to the block
        memo; with the table, reading such an answer is one lookup.
        """
        key = (self.params.case_fold, self.params.validate, self.params.find_code_in_text,
               self.params.free_text)  # fmt: skip
        with _WRITTEN_LOCK:
            tables = _WRITTEN.setdefault(self._codeset, {})
            table = tables.get(key)
            if table is None:
                table = {}
                for code in self._codeset.codes():
                    for raw in (code, f"{code[:3]}.{code[3:]}") if len(code) > 3 else (code,):
                        block = self._read_block(raw)
                        if block is not None:
                            # Equal strings, one object: the table's 200,000 rows would
                            # otherwise hold a copy of most codes.
                            _, candidate, found, head = block
                            candidate = code if candidate == code else candidate
                            found = code if found == code else found
                            table[raw] = (raw, candidate, found, head)
                tables[key] = table
        return table

    def _parse_any(self, text: str, bad_type: bool) -> _Parsed:
        p = self.params
        empty = bad_type or not text or text.isspace()
        length = len(text)

        # -- locate the first think block and the first diagnosis block -------------
        # With a prefilled prompt the think block opens before the completion: it
        # "starts" at 0 with a zero-length tag, unless the model wrote the tag again.
        if p.prefilled_think and not text.lstrip().startswith(_THINK):
            t0, body = 0, 0
        else:
            t0 = _find(text, _THINK, 0)
            body = t0 + 7 if t0 >= 0 else 0
        t1 = _find(text, _THINK_END, body) if t0 >= 0 else -1
        if p.mode == "pair":
            # Only a closed think block followed by a closed diagnosis block counts.
            pair = _pair_after(text, t1)
            d0, d1 = (-1, -1) if pair is None else (pair[1], pair[2])
            if pair is not None:
                t1 = pair[0]
        else:
            d0 = _find(text, _DIAG, t1 + 8 if t1 >= 0 else body)
            d1 = _find(text, _DIAG_END, d0 + 11) if d0 >= 0 else -1
        if t0 >= 0 and not (p.mode == "pair" and d1 < 0):
            think_end = t1 if t1 >= 0 else (d0 if d0 >= 0 else length)
            start, end = _strip_span(text, body, think_end)
        else:
            think_end = t1
            start = end = 0

        if d1 >= 0:
            diag_end = d1
            block_end = d1 + 12
        elif d0 >= 0:
            limit = d0 + 11 + _UNCLOSED_DIAGNOSIS_CHARS
            newline = text.find("\n", d0 + 11, limit)
            diag_end = newline if newline >= 0 else min(length, limit)
            block_end = diag_end
        else:
            diag_end = -1
            # An unclosed think block runs to the end; with no block at all, every
            # character is outside the blocks.
            block_end = t1 + 8 if t1 >= 0 else (length if t0 >= 0 else 0)

        # -- structure: extra blocks and text outside the first pair ------------------
        first_start = t0 if t0 >= 0 else (d0 if d0 >= 0 else 0)
        extra = 0
        outside = _nonspace(text, 0, first_start) if first_start else 0
        if block_end < length:
            extra = _count_pairs(text, block_end)
            outside += _nonspace(text, block_end, length)
        if t1 >= 0 and d0 > t1 + 8:
            outside += _nonspace(text, t1 + 8, d0)

        # -- the code ----------------------------------------------------------------
        diagnosis = text[d0 + 11 : diag_end].strip() if d0 >= 0 else ""
        well_formed = t1 >= 0 and d1 >= 0 and extra == 0 and outside == 0 and bool(diagnosis)
        if diagnosis and (well_formed or p.mode != "strict"):
            candidate, code, found, valid, known, free = self._code_of(diagnosis)
        else:
            candidate, code, found, valid, known, free = _NO_CODE

        return (
            start,
            end,
            diagnosis,
            candidate,
            code,
            _pack(
                empty, bad_type, t0 >= 0, t1 >= 0, d0 >= 0, d1 >= 0, well_formed,
                found, valid, known, free, extra, outside, t0, think_end, d0, diag_end, length,
                end - start,
            ),
        )  # fmt: skip

    def _code_of(self, diagnosis: str) -> _Code:
        """:meth:`_read_code`, memoized: the same few diagnoses come back in every batch."""
        result = self._memo.get(diagnosis)
        if result is None:
            result = self._read_code(diagnosis)
            # Long texts are rare and would make the memo hold megabytes.
            if len(diagnosis) <= _MEMO_KEY_CHARS:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[diagnosis] = result
        return result

    def _read_code(self, diagnosis: str) -> _Code:
        """(candidate, code, found, valid, known, free) for a diagnosis text."""
        candidate, code, free = self._extract(diagnosis)
        valid = bool(code)
        known = valid and (free or self._validate_codeset or self._known(code))
        return (candidate, code, bool(candidate), valid, known, free)

    def _extract(self, diagnosis: str) -> tuple[str, str, bool]:
        """(candidate, valid code or "", mapped from free text) for a diagnosis text."""
        p = self.params
        candidate = self._normalize(diagnosis) if p.case_fold else diagnosis.replace(".", "")
        if self._valid(candidate):
            return candidate, candidate, False
        if p.find_code_in_text:
            for match in self._token_finder(diagnosis, 0, _CODE_SEARCH_CHARS):
                token = match.group(1).replace(".", "")
                if p.case_fold:
                    token = token.upper()
                if self._valid(token):
                    return token, token, False
        if (
            p.free_text
            and len(diagnosis) <= _FREE_TEXT_CHARS
            and any(c.isalpha() for c in diagnosis)
        ):
            hit = self._codeset.match_text(diagnosis)
            if hit is not None:
                return hit.code, hit.code, True
        return candidate, "", False

    def _valid(self, code: str) -> bool:
        mode = self.params.validate
        if not code:
            return False
        if mode == "codeset":
            return bool(self._known(code))
        if mode == "pattern":
            return self._shape(code) is not None
        return True


@attrs.frozen
class FormatParams:
    """Parameters of the ``format`` reward; each is added when its condition holds.

    Attributes:
        empty: the completion is empty (or not text).
        well_formed: exactly one think block, then one diagnosis block, nothing else.
        malformed: not well formed (and not empty).
        extra_block: per think/diagnosis pair after the first (at most ``max_extra_blocks``).
        max_extra_blocks: cap on the number of extra blocks that are charged.
        outside_text: there is non-whitespace text outside the blocks.
    """

    empty: float = 0.0
    well_formed: float = 0.0
    malformed: float = 0.0
    extra_block: float = 0.0
    max_extra_blocks: int = attrs.field(default=1_000_000, validator=attrs.validators.ge(0))
    outside_text: float = 0.0


class FormatReward(Reward):
    """Rewards or penalises the structure of a completion (registered as ``format``)."""

    name = "format"
    Params = FormatParams

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        p: FormatParams = self.params
        f = batch.parsed.features
        empty = f[:, Feature.EMPTY].bool()
        out = torch.where(empty, p.empty, 0.0)
        # Only the terms that are switched on are computed (each is a few tensor
        # operations, which cost more than their arithmetic on a batch).
        if p.well_formed or p.malformed or p.outside_text:
            nonempty = ~empty
        if p.well_formed or p.malformed:
            well = f[:, Feature.WELL_FORMED].bool() & nonempty
        if p.well_formed:
            out += well.float() * p.well_formed
        if p.malformed:
            out += (~well & nonempty).float() * p.malformed
        if p.extra_block:
            extra = f[:, Feature.EXTRA_BLOCKS].clamp(max=p.max_extra_blocks)
            out += extra.float() * p.extra_block
        if p.outside_text:
            out += ((f[:, Feature.OUTSIDE_CHARS] > 0) & nonempty).float() * p.outside_text
        return out


@hookimpl
def icdreward_register_parsers(register: Register) -> None:
    register(TagParser)


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    register(FormatReward)
