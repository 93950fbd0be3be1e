"""verl v1 replay buffers that also report the step's reward components as step metrics.

verl 0.9's v1 trainer logs only the total reward of a training step: the components,
flags, monitors and judge counters :class:`~icdreward_verl.reward_manager.IcdRewardManager`
writes into each response's ``reward_extra_info`` reach validation (``val-aux/...``) and
the DAPO filter only. verl's supported extension point for the sampling step is a
custom sampler, whose ``sample()`` returns metrics that ``PPOTrainer._step_once`` merges
into the step's metrics. These are verl's own buffers with one addition: after
sampling a training batch they read the batch's ``reward_extra_info`` from
TransferQueue and add ``icdreward/<key>`` (see :func:`step_metrics`)::

    trainer.v1.sampler.custom_sampler.path=pkg://icdreward_verl.sampler
    trainer.v1.sampler.custom_sampler.name=IcdRewardReplayBuffer        # trainer_mode=sync
    trainer.v1.sampler.custom_sampler.name=IcdRewardReplayBufferAsync   # the async modes

Sampling itself is verl's, unchanged. verl passes a custom sampler no DAPO settings
(``algorithm.filter_groups``), so with one of these the DAPO group filter is off; the
recipe refuses ``algorithm.filter_groups.enable=true`` with it. Reading the metrics
never fails a step: an error is logged and counted as ``icdreward/metrics_error``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from icdreward_verl._step_metrics import METRIC_PREFIX, step_metrics

__all__ = [
    "IcdRewardReplayBuffer",
    "IcdRewardReplayBufferAsync",
    "batch_metrics",
]

log = logging.getLogger("icdreward.verl")


def batch_metrics(keys: list[str], partition_id: str) -> dict[str, float]:
    """``icdreward/<key>`` metrics of the trajectories ``keys`` stored in TransferQueue.

    Keys are verl's ``{uid}_{session}_{index}``; the prompt ``uid`` is the GRPO group.
    A session with several outputs (multi-turn agent loops) shares one reward, so only
    its last output is read.
    """
    if not keys:
        return {}
    last: dict[tuple[str, str], tuple[int, int]] = {}
    for position, key in enumerate(keys):
        uid, session, index = _split(key)
        if (uid, session) not in last or index >= last[(uid, session)][0]:
            last[(uid, session)] = (index, position)
    chosen = sorted(position for _, position in last.values())
    wanted = [keys[i] for i in chosen]
    data = tq.kv_batch_get(keys=wanted, partition_id=partition_id, select_fields=["extra_fields"])
    records = []
    for key, value in zip(wanted, list(data["extra_fields"]), strict=True):
        fields = getattr(value, "data", value)
        info = fields.get("reward_extra_info") if isinstance(fields, dict) else None
        records.append((_split(key)[0], info))
    return step_metrics(records)


def _split(key: str) -> tuple[str, str, int]:
    parts = str(key).rsplit("_", 2)
    if len(parts) == 3 and parts[2].isdigit():
        return parts[0], parts[1], int(parts[2])
    return str(key), "", 0


class _ComponentMetrics:
    """Adds ``icdreward/<key>`` to what ``sample()`` returns for the training partition."""

    def sample(
        self, global_steps: int, partition_id: str, batch_size: int
    ) -> tuple[Any, dict[str, Any]]:
        batch, metrics = super().sample(  # type: ignore[misc]
            global_steps=global_steps, partition_id=partition_id, batch_size=batch_size
        )
        if partition_id == "val":  # validation discards sampler metrics (val-aux has them)
            return batch, metrics
        started = time.perf_counter()
        try:
            extra = batch_metrics(list(batch.keys), batch.partition_id)
        except Exception:
            log.exception("icdreward: the step's reward components could not be read")
            extra = {METRIC_PREFIX + "metrics_error": 1.0}
        extra[METRIC_PREFIX + "metrics_s"] = time.perf_counter() - started
        return batch, {**metrics, **extra}


class IcdRewardReplayBuffer(_ComponentMetrics, ReplayBuffer):
    """verl's sync ``ReplayBuffer`` (``trainer.v1.trainer_mode=sync``) plus component metrics."""


class IcdRewardReplayBufferAsync(_ComponentMetrics, ReplayBufferAsync):
    """verl's ``ReplayBufferAsync`` (``colocate_async``, ``separate_async``) plus metrics."""
