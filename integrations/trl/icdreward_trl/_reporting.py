"""What the TRL adapter reports per scored batch through ``log_metric``."""

from __future__ import annotations

from icdreward.result import ScoreResult

__all__ = ["_batch_metrics", "_component_means"]


def _batch_metrics(result: ScoreResult) -> dict[str, float]:
    size = len(result)
    if size == 0:
        return {}
    metrics = {
        "icdreward/parse_failure": float(result.parse_failure.float().mean()),
        "icdreward/invalid_code": float(result.invalid_code.float().mean()),
    }
    if result.failed:
        failed = sum(int(mask.sum()) for mask in result.failed.values())
        metrics["icdreward/failed"] = failed / (size * len(result.failed))
    if result.groups is not None:
        metrics["icdreward/all_equal_groups"] = result.groups.all_equal_share
    return metrics


def _component_means(result: ScoreResult) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for k, (name, values) in enumerate(result.components.items()):
        kept = values[result.included[:, k]]
        if kept.numel():  # no value at all: nothing to average (never log NaN)
            metrics[f"icdreward/{name}/mean"] = float(kept.mean())
    return metrics
