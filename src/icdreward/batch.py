"""The batch types that flow through the engine.

A parser turns raw completions into one :class:`ParsedBatch` (parse once); the
engine wraps it with the gold codes, notes and group ids into a
:class:`ScoringBatch`, which is what every reward component reads. Tensors that
several rewards need (encoded codes, hierarchy ids) are computed lazily, once
per batch.
"""

from __future__ import annotations

import array
import enum
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import attrs
import torch

from icdreward.codeset import CODE_WIDTH, LEVELS

if TYPE_CHECKING:
    from icdreward.codeset import CodeSet

__all__ = ["Feature", "ParsedBatch", "ScoringBatch", "pack_codes"]


class Feature(enum.IntEnum):
    """Columns of :attr:`ParsedBatch.features` (an ``int32`` tensor ``[B, len(Feature)]``).

    Flags hold 0 or 1; counts and offsets hold integers (offsets are -1 when absent
    and index into :attr:`ParsedBatch.texts`).
    """

    EMPTY = 0
    """The completion is empty or whitespace only (or not text at all)."""
    BAD_TYPE = 1
    """The completion was not text (``None``, a number, a dict without content ...)."""
    HAS_THINK = 2
    """A think block was opened (a prefilled ``<think>`` counts)."""
    THINK_CLOSED = 3
    HAS_DIAGNOSIS = 4
    DIAGNOSIS_CLOSED = 5
    WELL_FORMED = 6
    """The completion is exactly one think block followed by one diagnosis block."""
    CODE_FOUND = 7
    """A code candidate was extracted from the diagnosis block."""
    CODE_VALID = 8
    """The candidate passed the parser's validation (pattern or code set)."""
    CODE_KNOWN = 9
    """The candidate exists in the shipped code set."""
    FROM_FREE_TEXT = 10
    """The code was mapped from a free-text diagnosis."""
    EXTRA_BLOCKS = 11
    """Number of think/diagnosis pairs after the first one."""
    OUTSIDE_CHARS = 12
    """Non-whitespace characters outside the first think and diagnosis blocks."""
    THINK_START = 13
    THINK_END = 14
    DIAGNOSIS_START = 15
    DIAGNOSIS_END = 16
    LENGTH = 17
    """Length in characters of the parsed text."""
    THINK_CHARS = 18
    """Length in characters of the (stripped) first think trace."""


@attrs.frozen(slots=False, eq=False)
class ParsedBatch:
    """The parser's view of a batch of completions.

    Attributes:
        texts: the completions as text (non-text completions become ``""``). A
            prefilled ``<think>`` is not part of the text: such a think block starts
            at offset 0 with a zero-length opening tag.
        think: the first think trace (stripped), ``""`` when there is none. A parser
            may pass None and ``think_spans`` instead.
        diagnosis: the content of the first diagnosis block (stripped).
        candidates: the normalized code candidate taken from the diagnosis, valid
            or not (``""`` when nothing code-like was found).
        codes: the normalized predicted code, ``""`` unless it is valid; this is
            what outcome rewards compare with the gold codes.
        features: ``int32`` tensor ``[B, len(Feature)]`` of flags, counts and spans.
        think_spans: with ``think=None``: the ``(starts, ends)`` of the traces in
            ``texts``; :attr:`think` slices them out when it is first read. Most rewards
            never read the traces, and copying every trace of a batch (kilobytes each,
            all kept until the batch is dropped) costs a parser more than finding them.
    """

    texts: tuple[str, ...]
    _think: tuple[str, ...] | None = attrs.field(alias="think", repr=False)
    diagnosis: tuple[str, ...]
    candidates: tuple[str, ...]
    codes: tuple[str, ...]
    features: torch.Tensor
    _think_spans: tuple[Sequence[int], Sequence[int]] | None = attrs.field(
        default=None, kw_only=True, alias="think_spans", repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self._think is None and self._think_spans is None:
            raise ValueError("ParsedBatch needs think or think_spans")

    @property
    def think(self) -> tuple[str, ...]:
        """The first think trace of each sample (stripped), ``""`` when there is none."""
        think = self._think
        if think is None:
            sources, starts, ends = self.think_slices()
            think = tuple([text[a:b] for text, a, b in zip(sources, starts, ends, strict=True)])
            object.__setattr__(self, "_think", think)  # computed once (frozen otherwise)
        return think

    def think_slices(self) -> tuple[Sequence[str], Sequence[int], Sequence[int]]:
        """``(sources, starts, ends)`` such that ``think[i] == sources[i][starts[i]:ends[i]]``.

        For a reward that reads each trace once: slicing the part it reads, one sample
        at a time, spares it (and the parser) a kept copy of every trace.
        """
        if self._think is None and self._think_spans is not None:
            starts, ends = self._think_spans
            return self.texts, starts, ends
        think = self.think
        return think, (0,) * len(think), tuple(map(len, think))

    def __len__(self) -> int:
        return len(self.texts)

    def feature(self, column: Feature) -> torch.Tensor:
        """One column of :attr:`features` as an ``int32`` tensor ``[B]``."""
        return self.features[:, column]

    def flag(self, column: Feature) -> torch.Tensor:
        """One flag column as a ``bool`` tensor ``[B]``."""
        return self.features[:, column].bool()

    @property
    def parse_failure(self) -> torch.Tensor:
        """``bool [B]``: no code candidate could be extracted."""
        return ~self.flag(Feature.CODE_FOUND)

    @property
    def invalid_code(self) -> torch.Tensor:
        """``bool [B]``: a candidate was extracted but failed validation."""
        return self.flag(Feature.CODE_FOUND) & ~self.flag(Feature.CODE_VALID)

    def subset(self, index: Sequence[int]) -> ParsedBatch:
        """The rows ``index`` of this batch, in that order."""
        idx = list(index)
        think: tuple[str, ...] | None = None
        spans = None
        if self._think is None and self._think_spans is not None:
            starts, ends = self._think_spans  # still not sliced: leave it so
            spans = (tuple(starts[i] for i in idx), tuple(ends[i] for i in idx))
        else:
            think = tuple(self.think[i] for i in idx)
        return ParsedBatch(
            texts=tuple(self.texts[i] for i in idx),
            think=think,
            think_spans=spans,
            diagnosis=tuple(self.diagnosis[i] for i in idx),
            candidates=tuple(self.candidates[i] for i in idx),
            codes=tuple(self.codes[i] for i in idx),
            features=self.features[torch.tensor(idx, dtype=torch.long)],
        )


class ScoringBatch:
    """Everything a reward component may read about one batch.

    Rewards must not re-parse :attr:`parsed.texts <ParsedBatch.texts>`; they read
    the parsed fields and the lazily computed tensors below. Each property is
    computed at most once per batch and shared by all components.

    Attributes:
        parsed: the parser's output.
        golds: per sample, the normalized gold codes, primary first (possibly empty
            when the gold label was missing or unreadable).
        notes: per sample, the admission note (``""`` when not given).
        group_ids: ``int64 [B]`` group index per sample (GRPO prompt groups), or None.
        codeset: the ICD-10-CM code set used for hierarchy lookups.
        extras: further per-sample columns by name (a trainer's dataset columns, verl's
            ``extra_info``), each of length B; empty unless the caller passed some.
    """

    def __init__(
        self,
        parsed: ParsedBatch,
        golds: Sequence[tuple[str, ...]],
        codeset: CodeSet,
        notes: Sequence[str] | None = None,
        group_ids: torch.Tensor | None = None,
        extras: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self.parsed = parsed
        self.golds: tuple[tuple[str, ...], ...] = tuple(golds)
        self.codeset = codeset
        self.notes: tuple[str, ...] = tuple(notes) if notes is not None else ("",) * len(parsed)
        self.group_ids = group_ids
        self.extras: dict[str, tuple[Any, ...]] = {k: tuple(v) for k, v in (extras or {}).items()}

    @property
    def size(self) -> int:
        """Number of samples ``B``."""
        return len(self.parsed)

    def __len__(self) -> int:
        return len(self.parsed)

    @cached_property
    def primary_golds(self) -> tuple[str, ...]:
        """The primary (first) gold code per sample, ``""`` when missing."""
        return tuple([g[0] if g else "" for g in self.golds])

    @cached_property
    def max_golds(self) -> int:
        """The largest number of gold codes of one sample (at least 1)."""
        return max(max(map(len, self.golds), default=1), 1)

    @cached_property
    def gold_mask(self) -> torch.Tensor:
        """``bool [B, G]``: which gold slots hold a code."""
        return self.gold_keys != 0

    @cached_property
    def pred_key(self) -> torch.Tensor:
        """``int64 [B]``: each predicted code packed into one integer (0 when invalid).

        The code's ASCII bytes (at most ``CODE_WIDTH``), zero padded to 8 and read as a
        little-endian int64: two codes are equal exactly when their keys are, so a
        whole batch is compared in one operation.
        """
        return pack_codes(self.parsed.codes)

    @cached_property
    def gold_keys(self) -> torch.Tensor:
        """``int64 [B, G]``: every gold code packed like :attr:`pred_key` (0 in empty slots)."""
        g = self.max_golds
        if g == 1:
            return pack_codes(self.primary_golds).unsqueeze(1)
        flat = [golds[j] if j < len(golds) else "" for golds in self.golds for j in range(g)]
        return pack_codes(flat).reshape(self.size, g)

    @cached_property
    def pred_chars(self) -> torch.Tensor:
        """``uint8 [B, W]``: the predicted codes' characters (as :meth:`CodeSet.encode`)."""
        return _chars(self.pred_key)

    @cached_property
    def gold_chars(self) -> torch.Tensor:
        """``uint8 [B, G, W]``: every gold code's characters (zeros in empty slots)."""
        return _chars(self.gold_keys.reshape(-1)).reshape(self.size, self.max_golds, CODE_WIDTH)

    @cached_property
    def primary_gold_chars(self) -> torch.Tensor:
        """``uint8 [B, W]``: the primary gold codes' characters."""
        return _chars(self.gold_keys[:, 0])  # without building every gold's characters

    @cached_property
    def pred_levels(self) -> torch.Tensor:
        """``int32 [B, L]``: hierarchy ids of the predicted codes (:meth:`CodeSet.level_ids`)."""
        return self.codeset.level_ids(self.parsed.codes)

    @cached_property
    def gold_levels(self) -> torch.Tensor:
        """``int32 [B, G, L]``: hierarchy ids of every gold code (-1 in empty slots)."""
        g = self.max_golds
        flat = [golds[j] if j < len(golds) else "" for golds in self.golds for j in range(g)]
        return self.codeset.level_ids(flat).reshape(self.size, g, len(LEVELS))

    @cached_property
    def group_index(self) -> torch.Tensor | None:
        """``int64 [B]`` dense group index (0..G-1), or None without group ids."""
        if self.group_ids is None:
            return None
        inverse: torch.Tensor = torch.unique(self.group_ids, return_inverse=True)[1]
        return inverse

    def subset(self, index: Sequence[int]) -> ScoringBatch:
        """The rows ``index`` of this batch (used to isolate failing samples)."""
        idx = list(index)
        group_ids = None
        if self.group_ids is not None:
            group_ids = self.group_ids[torch.tensor(idx, dtype=torch.long)]
        return ScoringBatch(
            self.parsed.subset(idx),
            [self.golds[i] for i in idx],
            self.codeset,
            notes=[self.notes[i] for i in idx],
            group_ids=group_ids,
            extras={name: [column[i] for i in idx] for name, column in self.extras.items()},
        )


_KEY_MEMO: dict[str, int] = {}
_KEY_MEMO_SIZE = 262_144


def _key(code: str) -> int:
    raw = code.encode("ascii", "replace")[:CODE_WIDTH]
    key = int.from_bytes(raw, "little")
    if len(_KEY_MEMO) >= _KEY_MEMO_SIZE:
        _KEY_MEMO.clear()
    _KEY_MEMO[code] = key
    return key


def pack_codes(codes: Sequence[str]) -> torch.Tensor:
    """``int64 [N]``: codes packed into integer keys (see :attr:`ScoringBatch.pred_key`).

    Codes repeat heavily across batches (a GRPO group shares its gold, a model its
    favourite codes), so each string is converted once and then looked up.

    >>> pack_codes(["A", "AB", ""]).tolist()
    [65, 16961, 0]
    """
    get = _KEY_MEMO.get
    keys = [get(code) for code in codes]
    if None in keys:
        keys = [_key(code) if key is None else key for code, key in zip(codes, keys, strict=True)]
    if not keys:
        return torch.zeros(0, dtype=torch.int64)
    return torch.frombuffer(array.array("q", keys), dtype=torch.int64)


def _chars(keys: torch.Tensor) -> torch.Tensor:
    """``uint8 [N, CODE_WIDTH]`` characters of packed keys (little-endian byte order)."""
    return keys.contiguous().view(torch.uint8).reshape(-1, 8)[:, :CODE_WIDTH]
