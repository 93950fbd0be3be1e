"""Predictions: codes extracted from completions (the reward's parser) or given as codes."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import torch

from icdreward.codeset import CodeSet
from icdreward.components import Parser
from icdreward.evaluation._factorize import factorize

__all__ = ["Predictions", "extract_codes", "extract_distinct", "parse_completions"]

_PARSE_CHUNK = 4096


@attrs.frozen(eq=False)
class Predictions:
    """Extracted predictions, one per row.

    Attributes:
        codes: the normalized predicted code, ``""`` when none was found or it is not
            a code of the code set.
        unparseable: ``bool [N]``: no code could be extracted.
        invalid: ``bool [N]``: a code was extracted but it is not in the code set.
    """

    codes: tuple[str, ...]
    unparseable: torch.Tensor
    invalid: torch.Tensor

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        return cls(
            codes=tuple(c for p in parts for c in p.codes),
            unparseable=torch.cat([p.unparseable for p in parts])
            if parts
            else torch.zeros(0, dtype=torch.bool),
            invalid=torch.cat([p.invalid for p in parts])
            if parts
            else torch.zeros(0, dtype=torch.bool),
        )


def extract_codes(values: Sequence[object], codeset: CodeSet) -> Predictions:
    """Predictions from already extracted codes (``"M51.16"``, ``"m5116"``, ``None``).

    A value that normalizes to ``""`` (``None``, ``""``, a number) is unparseable; a
    code missing from ``codeset`` is invalid.
    """
    codes, rows, unparseable, invalid = extract_distinct(values, codeset)
    per_row = np.array(codes, dtype=object)[rows.numpy()]  # a gather in C, not a loop
    return Predictions(codes=tuple(per_row.tolist()), unparseable=unparseable, invalid=invalid)


def extract_distinct(
    values: Sequence[object], codeset: CodeSet
) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`extract_codes` as distinct codes and rows: per distinct value its code
    (``""`` when none or invalid), per row the index of its value (``int64 [N]``), and
    the unparseable and invalid flags (``bool [N]``)."""
    try:
        distinct, rows = factorize(values)
    except TypeError:  # an unhashable value: not a str, so it normalizes to "" as None does
        distinct, rows = factorize([v if isinstance(v, str) else None for v in values])
    # normalized and validated once per distinct value; the rows take theirs by index
    normalized = list(map(codeset.normalize, distinct))
    valid = codeset.validate_many(normalized)
    codes = [c if ok else "" for c, ok in zip(normalized, valid, strict=True)]
    empty = torch.tensor([not c for c in normalized], dtype=torch.bool)[rows]
    invalid = ~empty & ~torch.tensor(valid, dtype=torch.bool)[rows]
    return codes, rows, empty, invalid


def parse_completions(completions: Sequence[object], parser: Parser) -> Predictions:
    """Predictions from completions, with the reward engine's parser (so they agree)."""
    parts: list[Predictions] = []
    for start in range(0, len(completions), _PARSE_CHUNK):
        parsed = parser.parse(completions[start : start + _PARSE_CHUNK])
        parts.append(
            Predictions(
                codes=parsed.codes,
                unparseable=parsed.parse_failure.clone(),
                invalid=parsed.invalid_code.clone(),
            )
        )
    return Predictions.concat(parts)
