"""Confidence intervals of every metric by resampling notes (see :mod:`._resample`).

:class:`ResamplePlan` turns the evaluated rows into cells (notes that contribute alike)
and sparse per-class contributions of each cell (:class:`~._metrics.Entries`), then
computes every metric of every level on each bootstrap resample (and, for BCa, on each
jackknife row) from cell weights.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import torch

from icdreward.evaluation._metrics import (
    METRICS,
    MULTILABEL_METRICS,
    Entries,
    LevelScores,
    weighted_metrics,
    weighted_multilabel_metrics,
)
from icdreward.evaluation._report import LEVEL_NAMES
from icdreward.evaluation._resample import (
    bca_interval,
    bootstrap_weights,
    jackknife_weights,
    percentile_interval,
)

__all__ = ["INTERVAL_METHODS", "ResamplePlan"]

INTERVAL_METHODS: tuple[str, ...] = ("bca", "percentile")

Intervals = dict[str, dict[str, tuple[float, float]]]


def _entries(cell: torch.Tensor, cls: torch.Tensor, identity: bool = False) -> Entries:
    return Entries(cell=cell, cls=cls, identity=identity)


@attrs.frozen(eq=False)
class _Level:
    tp: Entries
    gold: Entries
    pred: Entries
    size: int


@attrs.frozen(eq=False)
class ResamplePlan:
    """Cells of notes and their contributions, per level (single- and multi-label).

    Attributes:
        cell_of_unit: per note, its cell (``int64 [G]``).
        n_cells: number of cells.
        rows: per cell, the evaluated rows of one of its notes (``float64 [K]``).
        single: per level, the single-label contributions.
        multi: per level, the multi-label contributions (empty unless asked for).
    """

    cell_of_unit: torch.Tensor
    n_cells: int
    rows: torch.Tensor
    single: list[_Level]
    multi: list[_Level]

    @classmethod
    def build(
        cls,
        levels: list[tuple[torch.Tensor, torch.Tensor, int]],
        gold_rows: torch.Tensor,
        pred_class: torch.Tensor,
        gold_sets: list[list[list[int]]],
        picked: torch.Tensor,
        unit_of_row: torch.Tensor,
        n_units: int,
        *,
        multilabel: bool,
    ) -> ResamplePlan:
        """The plan for the evaluated rows ``picked``, whose notes are ``unit_of_row``.

        ``levels``, ``gold_rows``, ``pred_class`` and ``gold_sets`` are those of every
        row (the fields of ``_evaluate.Encoded``).
        """
        gold_label = gold_rows[picked]
        one_row_per_unit = int(picked.numel()) == n_units
        if one_row_per_unit:
            # notes with the same gold label and the same prediction contribute alike
            width = int(pred_class.max()) + 2
            key = torch.empty(n_units, dtype=torch.int64)
            key[unit_of_row] = gold_label * width + pred_class[picked] + 1
            _, cell_of_unit = torch.unique(key, return_inverse=True)
        else:
            cell_of_unit = torch.arange(n_units)
        n_cells = int(cell_of_unit.max()) + 1
        # one note stands for its cell: the rows of the first note of every cell
        first = torch.full((n_cells,), n_units, dtype=torch.int64)
        first.scatter_reduce_(0, cell_of_unit, torch.arange(n_units), reduce="amin")
        row_cell = cell_of_unit[unit_of_row]
        kept = torch.nonzero(unit_of_row == first[row_cell]).flatten()
        if one_row_per_unit:
            # one row per cell: in cell order, entry k is cell k and needs no gather
            kept = kept[torch.argsort(row_cell[kept])]
        cells = row_cell[kept]
        identity = one_row_per_unit
        rows = torch.bincount(cells, minlength=n_cells).double()
        single: list[_Level] = []
        multi: list[_Level] = []
        for k, (gold, pred, size) in enumerate(levels):
            g, p = gold[picked][kept], pred[picked][kept]
            single.append(
                _Level(
                    tp=_entries(cells, torch.where(g == p, g, size), identity),
                    gold=_entries(cells, g, identity),
                    pred=_entries(cells, p, identity),
                    size=size,
                )
            )
            if multilabel:
                multi.append(_multilabel_level(gold_sets[k], gold_label[kept], cells, p, size))
        return cls(
            cell_of_unit=cell_of_unit, n_cells=n_cells, rows=rows, single=single, multi=multi
        )

    def _metrics(self, weights: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        single = [
            weighted_metrics(lv.tp, lv.gold, lv.pred, self.rows, lv.size, weights)
            for lv in self.single
        ]
        multi = [
            weighted_multilabel_metrics(lv.tp, lv.gold, lv.pred, lv.size, weights)
            for lv in self.multi
        ]
        return single, multi

    def multilabel_point(self) -> dict[str, dict[str, float]]:
        """The multi-label metrics of the evaluated rows, per level."""
        size = torch.bincount(self.cell_of_unit, minlength=self.n_cells).double()[None, :]
        _, multi = self._metrics(size)
        result: dict[str, dict[str, float]] = {}
        for name, values in zip(LEVEL_NAMES, multi, strict=True):
            row = values[0].tolist()
            entry = dict(zip(MULTILABEL_METRICS, row, strict=False))
            entry["n_labels"] = row[-1]
            result[name] = entry
        return result

    def _collect(
        self, blocks: Iterator[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        single: list[list[torch.Tensor]] = [[] for _ in self.single]
        multi: list[list[torch.Tensor]] = [[] for _ in self.multi]
        for weights in blocks:
            s, m = self._metrics(weights)
            for out, values in zip(single, s, strict=True):
                out.append(values)
            for out, values in zip(multi, m, strict=True):
                out.append(values)
        return [torch.cat(v) for v in single], [torch.cat(v) for v in multi]

    def intervals(
        self,
        point: dict[str, LevelScores],
        multilabel_point: dict[str, dict[str, float]],
        *,
        resamples: int,
        seed: int,
        confidence: float,
        method: str,
    ) -> tuple[Intervals, Intervals]:
        """Intervals of every metric, single-label and multi-label, per level."""
        boot = self._collect(
            bootstrap_weights(self.cell_of_unit, self.n_cells, resamples, seed=seed)
        )
        jack: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        multiplicity = torch.zeros(0)
        if method == "bca":
            blocks, multiplicity = jackknife_weights(self.cell_of_unit, self.n_cells, seed=seed)
            jack = self._collect(blocks)
        results: list[Intervals] = [{}, {}]
        for part, names in enumerate((METRICS, MULTILABEL_METRICS)):
            for k, level in enumerate(LEVEL_NAMES):
                if k >= len(boot[part]):
                    continue
                entry: dict[str, tuple[float, float]] = {}
                for m, metric in enumerate(names):
                    if part == 0:
                        estimate = float(getattr(point[level], metric))
                    else:
                        estimate = multilabel_point[level][metric]
                    samples = boot[part][k][:, m]
                    if jack is None:
                        entry[metric] = percentile_interval(samples, confidence)
                    else:
                        entry[metric] = bca_interval(
                            samples, estimate, jack[part][k][:, m], multiplicity, confidence
                        )
                results[part][level] = entry
        return results[0], results[1]


def _multilabel_level(
    gold_sets: list[list[int]],
    gold_label: torch.Tensor,
    cells: torch.Tensor,
    pred: torch.Tensor,
    size: int,
) -> _Level:
    """Multi-label contributions: every label of a row's gold set, and its prediction."""
    lengths = torch.tensor([len(s) for s in gold_sets], dtype=torch.int64)
    flat = torch.tensor([c for s in gold_sets for c in s], dtype=torch.int64)
    starts = torch.cumsum(lengths, 0) - lengths
    per_row = lengths[gold_label]
    cell = torch.repeat_interleave(cells, per_row)
    row_start = torch.repeat_interleave(torch.cumsum(per_row, 0) - per_row, per_row)
    offset = torch.arange(int(per_row.sum())) - row_start
    label = flat[torch.repeat_interleave(starts[gold_label], per_row) + offset]
    hit = label == torch.repeat_interleave(pred, per_row)
    return _Level(
        tp=_entries(cell[hit], label[hit]),
        gold=_entries(cell, label),
        pred=_entries(cells, pred, bool(torch.equal(cells, torch.arange(cells.numel())))),
        size=size,
    )
