"""Built-in plugin: the ``<think>…</think><diagnosis>…</diagnosis>`` parser and format reward.

The parser scans each completion with a fixed number of forward ``str.find`` and
``str.count`` passes, so it is linear in the input size whatever the input holds
(runs of newlines, thousands of unclosed tags, megabytes of text). Everything a
reward needs (trace, diagnosis, normalized code, flags, spans) is extracted here,
once per batch.
"""

from __future__ import annotations

import array
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import torch

from icdreward import Feature, ParsedBatch, Parser, Reward, ScoringBatch
from icdreward.plugin import Register, hookimpl

__all__ = ["FormatParams", "FormatReward", "TagParser", "TagParserParams", "coerce_text"]

_THINK, _THINK_END = "<think>", "</think>"
_DIAG, _DIAG_END = "<diagnosis>", "</diagnosis>"
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


@attrs.frozen
class TagParserParams:
    """Parameters of the ``tags`` parser.

    Attributes:
        mode: ``"strict"`` extracts a code only from a completion that is exactly one
            think block and one diagnosis block; ``"lenient"`` takes the first
            diagnosis block wherever it is, accepts an unclosed think block and an
            unclosed diagnosis (up to the end of its line).
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

    mode: Literal["strict", "lenient"] = "lenient"
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


def _nonspace(text: str, start: int, end: int) -> int:
    if end <= start:
        return 0
    segment = text[start:end]
    if not segment or segment.isspace():
        return 0
    return sum(len(part) for part in segment.split())


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

    def parse(self, completions: Sequence[object]) -> ParsedBatch:
        """Parse every completion; never raises on any input."""
        texts: list[str] = []
        thinks: list[str] = []
        diagnoses: list[str] = []
        candidates: list[str] = []
        codes: list[str] = []
        feats = array.array("i")
        parse_one = self._parse_one
        for value in completions:
            text = coerce_text(value)
            bad_type = text is None
            row = parse_one("" if text is None else text, bad_type)
            texts.append(row[0])
            thinks.append(row[1])
            diagnoses.append(row[2])
            candidates.append(row[3])
            codes.append(row[4])
            feats.extend(row[5])
        n = len(texts)
        features = (
            torch.frombuffer(feats, dtype=torch.int32).reshape(n, _N_FEATURES).clone()
            if n
            else torch.zeros(0, _N_FEATURES, dtype=torch.int32)
        )
        return ParsedBatch(
            texts=tuple(texts),
            think=tuple(thinks),
            diagnosis=tuple(diagnoses),
            candidates=tuple(candidates),
            codes=tuple(codes),
            features=features,
        )

    def _parse_one(
        self, raw: str, bad_type: bool
    ) -> tuple[str, str, str, str, str, tuple[int, ...]]:
        p = self.params
        empty = bad_type or not raw or raw.isspace()
        text = raw
        if p.prefilled_think and not raw.lstrip().startswith(_THINK):
            text = _THINK + raw
        length = len(text)

        # -- locate the first think block and the first diagnosis block -------------
        t0 = text.find(_THINK)
        t1 = -1
        if t0 >= 0:
            t1 = text.find(_THINK_END, t0 + 7)
        d_from = t1 + 8 if t1 >= 0 else (t0 + 7 if t0 >= 0 else 0)
        d0 = text.find(_DIAG, d_from)
        d1 = text.find(_DIAG_END, d0 + 11) if d0 >= 0 else -1
        if t0 >= 0:
            think_end = t1 if t1 >= 0 else (d0 if d0 >= 0 else length)
            think = text[t0 + 7 : think_end].strip()
        else:
            think_end = -1
            think = ""

        if d0 >= 0 and d1 >= 0:
            diag_end = d1
            block_end = d1 + 12
        elif d0 >= 0:
            newline = text.find("\n", d0 + 11, d0 + 11 + _UNCLOSED_DIAGNOSIS_CHARS)
            diag_end = newline if newline >= 0 else min(length, d0 + 11 + _UNCLOSED_DIAGNOSIS_CHARS)
            block_end = diag_end
        else:
            diag_end = -1
            # An unclosed think block runs to the end; with no block at all, every
            # character is outside the blocks.
            block_end = t1 + 8 if t1 >= 0 else (length if t0 >= 0 else 0)

        # -- structure: extra blocks and text outside the first pair ------------------
        first_start = t0 if t0 >= 0 else (d0 if d0 >= 0 else 0)
        extra = 0
        outside = _nonspace(text, 0, first_start)
        if block_end < length:
            extra = max(text.count(_THINK, block_end), text.count(_DIAG, block_end))
            outside += _nonspace(text, block_end, length)
        if t1 >= 0 and d0 >= 0:
            outside += _nonspace(text, t1 + 8, d0)
        well_formed = t0 >= 0 and t1 >= 0 and d0 >= 0 and d1 >= 0 and extra == 0 and outside == 0

        # -- the code ----------------------------------------------------------------
        diagnosis = text[d0 + 11 : diag_end].strip() if d0 >= 0 else ""
        candidate = code = ""
        valid = free = False
        if diagnosis and (well_formed or p.mode == "lenient"):
            candidate, code, free = self._extract(diagnosis)
            valid = bool(code)
        found = bool(candidate)
        known = valid and (free or p.validate == "codeset" or self._known(code))

        return (
            text,
            think,
            diagnosis,
            candidate,
            code,
            (
                int(empty),
                int(bad_type),
                int(t0 >= 0),
                int(t1 >= 0),
                int(d0 >= 0),
                int(d1 >= 0),
                int(well_formed),
                int(found),
                int(valid),
                int(known),
                int(free),
                extra,
                outside,
                t0,
                think_end,
                d0,
                diag_end,
                length,
            ),
        )

    def _extract(self, diagnosis: str) -> tuple[str, str, bool]:
        """(candidate, valid code or "", mapped from free text) for a diagnosis text."""
        p = self.params
        if p.case_fold:
            candidate = self._normalize(diagnosis)
        else:
            candidate = diagnosis.strip().replace(".", "")
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
        well = f[:, Feature.WELL_FORMED].bool() & ~empty
        out = torch.where(empty, p.empty, 0.0)
        if p.well_formed:
            out += well.float() * p.well_formed
        if p.malformed:
            out += (~well & ~empty).float() * p.malformed
        if p.extra_block:
            extra = f[:, Feature.EXTRA_BLOCKS].clamp(max=p.max_extra_blocks)
            out += extra.float() * p.extra_block
        if p.outside_text:
            out += ((f[:, Feature.OUTSIDE_CHARS] > 0) & ~empty).float() * p.outside_text
        return out


@hookimpl
def icdreward_register_parsers(register: Register) -> None:
    register(TagParser)


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    register(FormatReward)
