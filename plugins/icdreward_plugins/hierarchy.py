"""Built-in plugin: credit for how deep the predicted code agrees with the gold code.

Two modes:

``levels``
    The highest credit among the ICD-10-CM levels shared with the gold code
    (chapter, block, category, subcategory, full code) -- with credits that grow
    with depth, the credit of the deepest shared level -- read from the hierarchy
    tables, so categories ending in a letter (C4A, M1A) and blocks that share their
    id with a category (B99) sit where they belong.
``prefix``
    The published DeepICD-R1 formula on the common prefix length ``l`` with the
    primary gold ``g``: ``scale * len(g)`` for an exact match,
    ``scale * (l / len(g) + max(0, l - 2))`` when the first letter agrees, else
    ``mismatch``.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from itertools import repeat
from typing import Any, Literal

import attrs
import torch

from icdreward import Feature, Reward, ScoringBatch
from icdreward.codeset import LEVELS
from icdreward.plugin import Register, hookimpl

__all__ = ["HierarchyParams", "HierarchyReward"]

# Config names of the credit levels -> column in CodeSet.level_ids (full is compared on
# the code strings themselves, so that a gold code from an older year still matches).
_LEVEL_COLUMNS = {
    "chapter": LEVELS.index("chapter"),
    "block": LEVELS.index("block"),
    "category": LEVELS.index("category"),
    "subcategory": LEVELS.index("sub4"),
    "sub5": LEVELS.index("sub5"),
    "sub6": LEVELS.index("sub6"),
}
# The credit levels are adjacent columns: read them as a slice (a view), not with an
# index tensor. Gathering columns by advanced indexing runs on torch's intra-op threads,
# and on a busy machine waiting for them cost 200x the gather itself (14 ms for 4096
# codes on 2 shared cores, against 70 us on one thread).
_LEVEL_SLICE = slice(min(_LEVEL_COLUMNS.values()), max(_LEVEL_COLUMNS.values()) + 1)
assert list(_LEVEL_COLUMNS.values()) == list(range(_LEVEL_SLICE.start, _LEVEL_SLICE.stop))
_DEFAULT_CREDIT = {"chapter": 0.1, "block": 0.2, "category": 0.5, "subcategory": 0.7, "full": 1.0}
_MEMO_SIZE = 65_536
_MEMO_KEY_CHARS = 128
# Keys of a batch looked up before the others; the memo learns a batch whose probes
# mostly hit, and every _LEARN_EVERY-th batch that ran the formula (the first included).
_PROBES = 16
_LEARN_EVERY = 8


def _chars_of(key: tuple[Any, ...]) -> int:
    """Characters in a memo key's predicted code and gold code(s)."""
    return len(key[0]) + _chars_of_golds(key[1])


def _chars_of_golds(golds: str | tuple[str, ...]) -> int:
    """Characters of one gold code, or of a sample's gold codes together."""
    return len(golds) if isinstance(golds, str) else sum(map(len, golds))


def _check_credit(_: Any, attribute: Any, value: Mapping[str, float]) -> None:
    unknown = sorted(set(value) - {*_LEVEL_COLUMNS, "full"})
    if unknown:
        allowed = ", ".join([*_LEVEL_COLUMNS, "full"])
        raise ValueError(f"'{attribute.name}' has unknown level(s) {unknown} (allowed: {allowed})")


@attrs.frozen
class HierarchyParams:
    """Parameters of the ``hierarchy`` reward.

    Attributes:
        mode: ``"levels"`` or ``"prefix"`` (see the module docstring).
        credit: levels mode: credit per level; ``sub5``/``sub6`` default to the
            ``subcategory`` credit.
        secondary: levels mode: share of the credit earned against a secondary gold
            code (0 ignores secondary codes).
        free_text: share of the credit when the code was mapped from free text.
        scale: prefix mode: the match reward (15 in the published runs).
        mismatch: a valid code that shares no level (levels) or no first letter (prefix).
        invalid: no valid predicted code.
    """

    mode: Literal["levels", "prefix"] = "levels"
    credit: dict[str, float] = attrs.field(
        factory=lambda: dict(_DEFAULT_CREDIT), validator=_check_credit
    )
    secondary: float = 0.0
    free_text: float = 1.0
    scale: float = 15.0
    mismatch: float = 0.0
    invalid: float = 0.0


class HierarchyReward(Reward):
    """Hierarchical credit for partially correct codes (registered as ``hierarchy``)."""

    name = "hierarchy"
    Params = HierarchyParams

    def __init__(self, params: HierarchyParams, context: Any) -> None:
        super().__init__(params, context)
        credit = {**_DEFAULT_CREDIT, **params.credit} if params.credit else {}
        sub = credit.get("subcategory", 0.0)
        self._columns = _LEVEL_SLICE
        self._credit = torch.tensor(
            [credit.get(name, sub if name in ("sub5", "sub6") else 0.0) for name in _LEVEL_COLUMNS],
            dtype=torch.float32,
        )
        self._full = float(credit.get("full", 0.0))
        self._memo: dict[tuple[Any, ...], float] = {}
        self._batches = 0  # batches that ran the formula

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        # A sample's value depends on its predicted code and its gold codes alone (in
        # levels mode also on whether the code came from free text, and on the batch's
        # number of gold slots). When the same combinations come back batch after batch
        # (a prompt seen again, a model's favourite codes) they are looked up, and the
        # formula (some twenty tensor operations, and hierarchy lookups per code) runs
        # only for a batch holding a combination not seen before.
        p: HierarchyParams = self.params
        keys: list[tuple[Any, ...]]
        if p.mode == "prefix":
            keys = list(zip(batch.parsed.codes, batch.primary_golds, strict=True))
        else:
            free = (
                batch.parsed.feature(Feature.FROM_FREE_TEXT).tolist()
                if p.free_text != 1.0
                else repeat(0)
            )
            keys = list(zip(batch.parsed.codes, batch.golds, free, repeat(batch.max_golds)))
        # On varied batches (new prompts every step) nearly every key is new: a few
        # probes tell, and such a batch skips the lookups and, most of the time, the
        # memo's update, which would cost more than the formula.
        memo = self._memo
        probes = keys[:: max(1, len(keys) // _PROBES)]
        hits = sum(map(memo.__contains__, probes))
        if keys and hits == len(probes):
            values = list(map(memo.get, keys))
            if None not in values:
                # float32 values, stored as the floats tolist() gave: the same bits.
                return torch.frombuffer(array("f", values), dtype=torch.float32)
        out = self._prefix(batch) if p.mode == "prefix" else self._levels(batch)
        self._batches += 1
        if 2 * hits >= len(probes) or self._batches % _LEARN_EVERY == 1:
            self._remember(batch, keys, out)
        return out

    def _remember(
        self, batch: ScoringBatch, keys: list[tuple[Any, ...]], out: torch.Tensor
    ) -> None:
        p: HierarchyParams = self.params
        if len(self._memo) + len(keys) > _MEMO_SIZE:
            self._memo.clear()
        pairs = zip(keys, out.tolist(), strict=True)
        # Long texts (rare) would make the memo hold megabytes: when the longest code and
        # gold codes of the batch are short, no key is long, and no key needs measuring.
        golds = batch.primary_golds if p.mode == "prefix" else batch.golds
        widest = max(map(len, batch.parsed.codes), default=0) + max(
            map(_chars_of_golds, golds), default=0
        )
        if widest <= _MEMO_KEY_CHARS:
            self._memo.update(pairs)
        else:
            self._memo.update(pair for pair in pairs if _chars_of(pair[0]) <= _MEMO_KEY_CHARS)

    def _levels(self, batch: ScoringBatch) -> torch.Tensor:
        p: HierarchyParams = self.params
        valid = batch.pred_key != 0
        pred = batch.pred_levels[:, self._columns].unsqueeze(1)  # [B, 1, L]
        gold = batch.gold_levels[:, :, self._columns]  # [B, G, L]
        agree = (pred == gold) & (gold >= 0)
        credit = (agree.float() * self._credit).amax(dim=-1)  # [B, G]
        full = batch.pred_key.unsqueeze(1) == batch.gold_keys
        credit = torch.where(full, self._full, credit) * batch.gold_mask
        best = credit[:, 0]
        if p.secondary and batch.max_golds > 1:
            best = torch.maximum(best, credit[:, 1:].amax(dim=1) * p.secondary)
        if p.free_text != 1.0:
            free = batch.parsed.flag(Feature.FROM_FREE_TEXT)
            best = torch.where(free, best * p.free_text, best)
        out = torch.where(best > 0, best, p.mismatch)
        return torch.where(valid, out, p.invalid)

    def _prefix(self, batch: ScoringBatch) -> torch.Tensor:
        p: HierarchyParams = self.params
        pred, gold = batch.pred_key, batch.gold_keys[:, 0]
        gold_chars = batch.primary_gold_chars
        differ = batch.pred_chars != gold_chars  # [B, W]; padding equals padding
        # Characters shared before the first difference; keys that differ differ in a
        # character, so argmax finds it (equal keys are the exact match, handled below).
        # (A bool tensor viewed as uint8 is its 0/1 bytes, without a copy.)
        common = differ.view(torch.uint8).argmax(dim=1).to(torch.float32)
        length = (gold_chars != 0).sum(dim=1).to(torch.float32)
        partial = p.scale * (common / length.clamp(min=1) + (common - 2).clamp(min=0))
        out = torch.where(~differ[:, 0] & (gold != 0), partial, p.mismatch)
        out = torch.where(pred == gold, p.scale * length, out)
        return torch.where(pred != 0, out, p.invalid)


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    register(HierarchyReward)
