"""Resampling notes: bootstrap and jackknife weights over cells, percentile and BCa intervals.

The unit of resampling is the *note* (all samples of a note travel together). Notes whose
contribution to every metric is the same (same gold label, same predictions) share a
*cell*; a resample is the number of times each cell's notes were drawn, so the metrics
of a resample are computed from ``K`` cell weights instead of ``G`` notes. The draws
themselves are exact: ``G`` notes drawn with replacement out of ``G`` (the ordinary,
multinomial bootstrap), from numpy's PCG64 generator seeded with the given seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

__all__ = [
    "EXACT_JACKKNIFE_CELLS",
    "bca_interval",
    "bootstrap_weights",
    "jackknife_weights",
    "percentile_interval",
]

EXACT_JACKKNIFE_CELLS = 1000
"""Up to this many cells the jackknife leaves out every note; above, groups of notes."""

_JACKKNIFE_GROUPS = 200


def bootstrap_weights(
    cell_of_unit: torch.Tensor,
    n_cells: int,
    resamples: int,
    *,
    seed: int,
    max_elements: int = 1 << 23,
) -> Iterator[torch.Tensor]:
    """Blocks of bootstrap weights ``float32 [r, n_cells]`` (``resamples`` rows in all).

    Row ``j`` holds, per cell, how many of its units were drawn in resample ``j``, where
    each resample draws ``G = len(cell_of_unit)`` units with replacement. Counts are whole
    numbers below ``2**24``, exact in float32.
    """
    units = int(cell_of_unit.numel())
    if units == 0 or resamples <= 0:
        return
    if units >= 1 << 24:
        raise ValueError(f"{units} notes: the bootstrap counts up to 2**24 - 1 notes")
    rng = np.random.Generator(np.random.PCG64(seed))
    cells = cell_of_unit.numpy().astype(np.int64)
    block = max(1, min(resamples, max_elements // units))
    done = 0
    while done < resamples:
        r = min(block, resamples - done)
        drawn = rng.integers(0, units, size=(r, units), dtype=np.int32)
        # the cell of every drawn unit, shifted so that one bincount counts all r rows
        keys = cells[drawn]
        keys += (np.arange(r, dtype=np.int64) * n_cells)[:, None]
        counts = np.bincount(keys.ravel(), minlength=r * n_cells).reshape(r, n_cells)
        yield torch.from_numpy(counts.astype(np.float32))
        done += r


def jackknife_weights(
    cell_of_unit: torch.Tensor, n_cells: int, *, seed: int, max_elements: int = 1 << 23
) -> tuple[Iterator[torch.Tensor], torch.Tensor]:
    """Blocks of jackknife weights ``float32 [j, n_cells]``, and how many jackknife values
    each row stands for (``float64 [J]``).

    With at most :data:`EXACT_JACKKNIFE_CELLS` cells, row ``k`` leaves one unit of cell
    ``k`` out (every unit of a cell gives the same value, so its row stands for the
    ``n_k`` leave-one-out values of the cell's units). With more, the units are split at
    random (seeded) into 200 groups of equal size and each row leaves one group out (the
    grouped jackknife; its estimate of the BCa acceleration is consistent, as the third
    and second moments of group sums grow alike with the group size).
    """
    units = int(cell_of_unit.numel())
    size = torch.bincount(cell_of_unit, minlength=n_cells).float()
    block = max(1, max_elements // max(n_cells, 1))
    if n_cells <= EXACT_JACKKNIFE_CELLS:

        def exact() -> Iterator[torch.Tensor]:
            for start in range(0, n_cells, block):
                rows = torch.arange(start, min(start + block, n_cells))
                weights = size.expand(rows.numel(), n_cells).clone()
                weights[torch.arange(rows.numel()), rows] -= 1.0
                yield weights

        return exact(), size.double()
    groups = min(_JACKKNIFE_GROUPS, units)
    order = torch.from_numpy(np.random.Generator(np.random.PCG64(seed)).permutation(units))
    group_of_unit = torch.empty(units, dtype=torch.int64)
    group_of_unit[order] = torch.arange(units) % groups

    def grouped() -> Iterator[torch.Tensor]:
        for start in range(0, groups, block):
            stop = min(start + block, groups)
            inside = (group_of_unit >= start) & (group_of_unit < stop)
            left_out = torch.zeros((stop - start) * n_cells, dtype=torch.float32)
            keys = (group_of_unit[inside] - start) * n_cells + cell_of_unit[inside]
            left_out.index_add_(0, keys, torch.ones(keys.numel(), dtype=torch.float32))
            yield size.expand(stop - start, n_cells) - left_out.view(stop - start, n_cells)

    return grouped(), torch.ones(groups, dtype=torch.float64)


def percentile_interval(samples: torch.Tensor, confidence: float) -> tuple[float, float]:
    """The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of ``samples``
    (linear interpolation)."""
    tail = (1.0 - confidence) / 2.0
    q = torch.tensor([tail, 1.0 - tail], dtype=torch.float64)
    low, high = torch.quantile(samples.double(), q).tolist()
    return low, high


def bca_interval(
    samples: torch.Tensor,
    point: float,
    jackknife: torch.Tensor,
    multiplicity: torch.Tensor,
    confidence: float,
) -> tuple[float, float]:
    """The bias-corrected and accelerated (BCa) bootstrap interval (Efron 1987).

    ``z0 = Φ⁻¹(share of resamples below the estimate, ties counted half)``, the
    acceleration ``a = Σ m·d³ / (6 (Σ m·d²)^1.5)`` with ``d`` the jackknife values'
    distance below their mean, each value counted ``multiplicity`` (``m``) times; the
    interval is the quantiles of ``samples`` at ``Φ(z0 + (z0 + z) / (1 − a (z0 + z)))``
    for ``z = Φ⁻¹((1 ∓ confidence) / 2)``.
    The share is kept within ``[1 / 2B, 1 − 1 / 2B]`` so that ``z0`` stays finite.
    """
    values = samples.double()
    b = int(values.numel())
    if b == 0:
        return point, point
    below = float((values < point).sum()) + 0.5 * float((values == point).sum())
    share = min(max(below / b, 0.5 / b), 1.0 - 0.5 / b)
    z0 = float(torch.special.ndtri(torch.tensor(share, dtype=torch.float64)))
    mean = float((multiplicity * jackknife).sum() / multiplicity.sum())
    d = mean - jackknife
    spread = float((multiplicity * d * d).sum())
    a = float((multiplicity * d**3).sum()) / (6.0 * spread**1.5) if spread > 0 else 0.0
    tail = (1.0 - confidence) / 2.0
    z = torch.special.ndtri(torch.tensor([tail, 1.0 - tail], dtype=torch.float64))
    adjusted = torch.special.ndtr(z0 + (z0 + z) / (1.0 - a * (z0 + z)))
    low, high = torch.quantile(values, adjusted.clamp(0.0, 1.0)).tolist()
    return low, high
