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
        failed: ``bool [G]``, True where the group has no statistics: none of its
            samples has a total (they all abstained), or its mean or std does not fit
            ``float32``. Such a group has mean and std 0 and is not ``all_equal``; it
            is left out of :attr:`all_equal_share` and gets zero advantages.
    """

    ids: torch.Tensor
    size: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    all_equal: torch.Tensor
    failed: torch.Tensor = attrs.field()

    @failed.default
    def _no_failed_groups(self) -> torch.Tensor:
        return torch.zeros(self.ids.numel(), dtype=torch.bool)

    @property
    def n_groups(self) -> int:
        """Number of groups ``G``."""
        return int(self.ids.numel())

    @property
    def all_equal_share(self) -> float:
        """Share of groups whose rewards are all equal (zero advantage), of those with
        statistics (see :attr:`failed`)."""
        kept = ~self.failed
        if not bool(kept.any()):
            return 0.0
        return float(self.all_equal[kept].float().mean())

    def advantages(self, total: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
        """GRPO-style normalised advantages ``(r - mean_g) / (std_g + 1e-6)`` per sample.

        Computed in ``float64`` and returned as ``float32``; 0 for samples of a
        :attr:`failed` group and where the advantage does not fit ``float32``.
        """
        values = total.to(torch.float64)
        mean = self.mean.to(torch.float64)[group_index]
        std = self.std.to(torch.float64)[group_index]
        out = ((values - mean) / (std + 1e-6)).to(torch.float32)
        good = ~self.failed[group_index] & torch.isfinite(out)
        return torch.where(good, out, torch.zeros_like(out))


def group_statistics(
    total: torch.Tensor, group_ids: torch.Tensor, valid: torch.Tensor | None = None
) -> GroupStats:
    """Group mean, std and all-equal flags of ``total`` ``[B]`` by ``group_ids`` ``[B]``.

    Sums run in ``float64``. ``valid`` (``bool [B]``) leaves out samples without a
    total (an abstaining total); ``size`` still counts them. A group whose mean or
    std does not fit ``float32``, or that has no valid sample, is flagged
    :attr:`GroupStats.failed` instead of reporting an infinity or a silent 0.

    >>> stats = group_statistics(torch.tensor([1.0, 1.0, 0.0, 2.0]), torch.tensor([7, 7, 9, 9]))
    >>> stats.mean.tolist(), stats.all_equal.tolist(), stats.all_equal_share
    ([1.0, 1.0], [True, False], 0.5)
    """
    ids, index = torch.unique(group_ids, return_inverse=True)
    g = ids.numel()
    values = total.to(torch.float64)
    size = torch.zeros(g, dtype=torch.int64).index_add_(0, index, torch.ones_like(index))
    if valid is not None and not bool(valid.all()):
        values, index = values[valid], index[valid]
        counted = torch.zeros(g, dtype=torch.int64).index_add_(0, index, torch.ones_like(index))
    else:
        counted = size
    n = counted.clamp(min=1).to(torch.float64)
    mean = torch.zeros(g, dtype=torch.float64).index_add_(0, index, values) / n
    sq = torch.zeros(g, dtype=torch.float64).index_add_(0, index, (values - mean[index]) ** 2)
    std = torch.where(counted > 1, (sq / (counted - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
    lo = torch.full((g,), float("inf"), dtype=torch.float64).scatter_reduce_(
        0, index, values, reduce="amin"
    )
    hi = torch.full((g,), float("-inf"), dtype=torch.float64).scatter_reduce_(
        0, index, values, reduce="amax"
    )
    mean32, std32 = mean.to(torch.float32), std.to(torch.float32)
    failed = (counted == 0) | ~torch.isfinite(mean32) | ~torch.isfinite(std32)
    zero = torch.zeros(g, dtype=torch.float32)
    return GroupStats(
        ids=ids,
        size=size,
        mean=torch.where(failed, zero, mean32),
        std=torch.where(failed, zero, std32),
        all_equal=(lo == hi) & ~failed,
        failed=failed,
    )
