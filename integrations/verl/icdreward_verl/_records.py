"""verl's rows in and out: the note of an ``extra_info``, one flat dict of numbers per sample.

verl stacks each key of the per-sample dicts into a numpy array (``reward_extra_info``),
keeps it with the rollout data and averages it into the validation metrics
(``val-aux/...``), so every sample carries the same keys and only numbers: flags are
0/1, and a component that abstained on a sample reads 0 there (its ``failed`` count
says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from icdreward.result import ScoreResult

__all__ = ["FLAG_KEYS", "note_of", "sample_scores", "unscored_record"]

FLAG_KEYS = ("parse_failure", "invalid_code", "gold_missing", "failed")
"""Keys every sample has besides ``score`` and the components."""


def sample_scores(result: ScoreResult) -> list[dict[str, float]]:
    """One dict per sample: ``score``, each component, then :data:`FLAG_KEYS`.

    ``failed`` counts the components that could not score the sample.
    """
    totals = result.total.tolist()
    columns = {name: values.tolist() for name, values in result.components.items()}
    if result.failed:
        failed_counts = torch.stack(list(result.failed.values()), dim=1).sum(dim=1).tolist()
    else:
        failed_counts = [0] * len(result)
    parse = result.parse_failure.tolist()
    invalid = result.invalid_code.tolist()
    missing = result.gold_missing.tolist()
    records: list[dict[str, float]] = []
    for i, total in enumerate(totals):
        record = {"score": float(total)}
        for name, values in columns.items():
            record[name] = float(values[i])
        record["parse_failure"] = float(parse[i])
        record["invalid_code"] = float(invalid[i])
        record["gold_missing"] = float(missing[i])
        record["failed"] = float(failed_counts[i])
        records.append(record)
    return records


def unscored_record(names: Sequence[str]) -> dict[str, float]:
    """The record of a sample that could not be scored at all: 0, every component failed."""
    record = {"score": 0.0, **dict.fromkeys(names, 0.0)}
    record.update(dict.fromkeys(FLAG_KEYS, 0.0))
    record["failed"] = float(len(names))
    return record


def note_of(extra_info: object, key: str) -> str | None:
    """The admission note in a row's ``extra_info`` (None when there is none)."""
    if isinstance(extra_info, Mapping):
        note = extra_info.get(key)
        return note if isinstance(note, str) else None
    return None
