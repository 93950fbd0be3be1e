"""Built-in plugin: exact match of the predicted code against the gold code(s)."""

from __future__ import annotations

import attrs
import torch

from icdreward import Reward, ScoringBatch
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
        pred, golds = batch.pred_key, batch.gold_keys
        # Rows without a valid code get ``invalid`` at the end, whatever they matched.
        primary = pred == golds[:, 0]
        out = torch.where(primary, p.match, p.no_match)
        if batch.max_golds > 1:
            secondary = (pred.unsqueeze(1) == golds[:, 1:]).any(dim=1) & ~primary
            out = torch.where(secondary, p.secondary_match, out)
        return torch.where(pred != 0, out, p.invalid)


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    register(ExactReward)
