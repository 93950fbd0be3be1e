"""Per-group statistics of rewards (GRPO samples several completions per prompt).

A group whose rewards are all equal gives every sample a zero advantage: GRPO
learns nothing from it. The share of such groups is the first thing to watch when
a reward is too coarse.
"""

from __future__ import annotations

import attrs
import torch

__all__ = ["GroupStats", "group_statistics"]


@attrs.frozen
class GroupStats:
    """Reward statistics per group.

    Attributes:
        ids: ``[G]`` the distinct group ids, in sorted order.
        size: ``int64 [G]`` samples per group.
        mean: ``float32 [G]`` mean total reward per group.
        std: ``float32 [G]`` standard deviation per group (Bessel-corrected like
            GRPO's advantage normalisation; 0 for a group of one).
        all_equal: ``bool [G]`` every reward in the group is the same.
    """

    ids: torch.Tensor
    size: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    all_equal: torch.Tensor

    @property
    def n_groups(self) -> int:
        """Number of groups ``G``."""
        return int(self.ids.numel())

    @property
    def all_equal_share(self) -> float:
        """Share of groups whose rewards are all equal (zero advantage)."""
        return float(self.all_equal.float().mean()) if self.n_groups else 0.0

    def advantages(self, total: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
        """GRPO-style normalised advantages ``(r - mean_g) / (std_g + 1e-6)`` per sample."""
        return (total - self.mean[group_index]) / (self.std[group_index] + 1e-6)


def group_statistics(total: torch.Tensor, group_ids: torch.Tensor) -> GroupStats:
    """Group mean, std and all-equal flags of ``total`` ``[B]`` by ``group_ids`` ``[B]``.

    >>> stats = group_statistics(torch.tensor([1.0, 1.0, 0.0, 2.0]), torch.tensor([7, 7, 9, 9]))
    >>> stats.mean.tolist(), stats.all_equal.tolist(), stats.all_equal_share
    ([1.0, 1.0], [True, False], 0.5)
    """
    ids, index = torch.unique(group_ids, return_inverse=True)
    g = ids.numel()
    values = total.to(torch.float64)
    size = torch.zeros(g, dtype=torch.int64).index_add_(0, index, torch.ones_like(index))
    mean = torch.zeros(g, dtype=torch.float64).index_add_(0, index, values) / size
    sq = torch.zeros(g, dtype=torch.float64).index_add_(0, index, (values - mean[index]) ** 2)
    std = torch.where(size > 1, (sq / (size - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
    lo = torch.full((g,), float("inf"), dtype=torch.float64).scatter_reduce_(
        0, index, values, reduce="amin"
    )
    hi = torch.full((g,), float("-inf"), dtype=torch.float64).scatter_reduce_(
        0, index, values, reduce="amax"
    )
    return GroupStats(
        ids=ids,
        size=size,
        mean=mean.to(torch.float32),
        std=std.to(torch.float32),
        all_equal=lo == hi,
    )
