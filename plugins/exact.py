"""Built-in plugin: exact match of the predicted code against the gold code(s)."""

from __future__ import annotations

import attrs
import torch

from icdreward import Feature, Reward, ScoringBatch
from icdreward.plugin import Register, hookimpl

__all__ = ["ExactParams", "ExactReward"]


@attrs.frozen
class ExactParams:
    """Parameters of the ``exact`` reward.

    Attributes:
        match: the predicted code equals the primary gold code.
        secondary_match: it equals one of the other gold codes.
        no_match: a valid code that matches no gold code.
        invalid: no valid code was predicted.
    """

    match: float = 1.0
    secondary_match: float = 0.0
    no_match: float = 0.0
    invalid: float = 0.0


class ExactReward(Reward):
    """Exact match on normalized codes (registered as ``exact``)."""

    name = "exact"
    Params = ExactParams

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        p: ExactParams = self.params
        valid = batch.parsed.flag(Feature.CODE_VALID)
        pred = batch.pred_chars.unsqueeze(1)  # [B, 1, W]
        equal = (pred == batch.gold_chars).all(dim=-1) & batch.gold_mask  # [B, G]
        primary = equal[:, 0] & valid
        secondary = equal[:, 1:].any(dim=1) & valid & ~primary
        out = torch.full((batch.size,), p.no_match)
        out = torch.where(primary, torch.tensor(p.match), out)
        out = torch.where(secondary, torch.tensor(p.secondary_match), out)
        return torch.where(valid, out, torch.tensor(p.invalid))


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    register(ExactReward)
