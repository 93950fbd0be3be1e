"""A reward manager for verl's reward loop that scores responses in batches.

verl 0.9's reward loop calls ``run_single`` once per response, concurrently; this
manager gathers those calls (at most ``max_batch_size``, waiting at most
``max_wait_ms`` after the first) and scores each gathered batch with one engine call:
the rule-based components as a few tensor operations, the judge with one request per
distinct prompt. Load it by import path (verl's ``@register`` route cannot work for a
third-party class: the name is looked up before the module is imported)::

    reward.reward_manager.source=importlib
    reward.reward_manager.name=IcdRewardManager
    reward.reward_manager.module.path=pkg://icdreward_verl.reward_manager
    +reward.reward_kwargs.preset=deepicd-r1    # or: +reward.reward_kwargs.config=/abs/r.toml
    +reward.reward_kwargs.max_batch_size=512
    +reward.reward_kwargs.max_wait_ms=10
    +reward.reward_kwargs.time_limit=120       # seconds per component and batch; false: off

Each response's reward lands on its last valid token (verl's ``assemble_rm_scores``)
and its components, flags, the batch's reward-hacking monitors (``monitor/<name>``)
and its share of the judge's counters (``count/<component>/<counter>``) arrive as
``reward_extra_info``, the same keys for every response (:func:`record_keys`); the
sampler of :mod:`icdreward_verl.sampler` logs them per training step. The engine is
warmed on the scoring thread as the manager is built (:mod:`icdreward_verl._warmup`),
so the first batch costs what later ones do. A response that cannot
be decoded scores as an empty completion; one whose scoring raises (a bug: bad
completions are scores) gets 0 with every component counted in ``failed``, and the
rest of its batch is scored as usual. Only a component whose failure policy is
``"raise"`` stops the step, as configured.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections.abc import Sequence
from typing import Any

import attrs
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from icdreward.counters import CounterDeltas
from icdreward.engine import RewardEngine
from icdreward.errors import ComponentFailure
from icdreward.monitors import MONITORS
from icdreward.result import ScoreResult
from icdreward_verl._batcher import MicroBatcher
from icdreward_verl._records import note_of, sample_scores, unscored_record
from icdreward_verl._settings import RewardSettings, shared_engine
from icdreward_verl._step_metrics import COUNT_PREFIX
from icdreward_verl._warmup import warm_engine

__all__ = ["MONITOR_PREFIX", "SAMPLE_MONITORS", "IcdRewardManager", "record_keys"]

MONITOR_PREFIX = "monitor/"
"""The prefix of a reward-hacking monitor's key in ``reward_extra_info``."""

SAMPLE_MONITORS: tuple[str, ...] = tuple(m for m in MONITORS if not m.startswith("group_"))
"""The monitors each response carries: those of the batch it was scored in (shares and
means over the batch, so their mean over a step weighs batches by size). The group
monitors are left out: a batch holds parts of groups; the sampler reports
``icdreward/group/all_equal`` from whole groups instead. A monitor a batch lacks
(``note_copy`` without notes) reads 0."""


def record_keys(engine: RewardEngine, counters: CounterDeltas) -> tuple[str, ...]:
    """Every key of a response's ``reward_extra_info``, in order."""
    monitors = SAMPLE_MONITORS if engine.config.monitors else ()
    return (
        *unscored_record(engine.names),
        *(MONITOR_PREFIX + name for name in monitors),
        *counters.keys,
    )


log = logging.getLogger("icdreward.verl")


@attrs.frozen(eq=False)
class _Response:
    token_ids: list[int]
    ground_truth: object
    note: str | None


class IcdRewardManager(RewardManagerBase):
    """verl ``RewardManagerBase`` that batches concurrent ``run_single`` calls.

    Args:
        config: verl's trainer configuration; the settings are read from
            ``config.reward.reward_kwargs`` (:class:`~icdreward_verl.RewardSettings`).
        tokenizer: the policy's tokenizer, to decode the responses.
        compute_score: verl's custom reward function, if one is configured. Not used:
            this manager scores with the engine directly.
        reward_router_address, reward_model_tokenizer: passed by verl when a reward
            model is served; not used.

    Raises:
        ConfigError: the reward settings or the configuration they name are invalid.
    """

    def __init__(
        self,
        config: Any,
        tokenizer: Any,
        compute_score: Any = None,
        reward_router_address: str | None = None,
        reward_model_tokenizer: Any = None,
        **_: Any,
    ) -> None:
        super().__init__(config, tokenizer, compute_score)
        # verl annotates the tokenizer as the AutoTokenizer factory; it is an instance.
        self._tokenizer: Any = tokenizer
        reward = config.get("reward") or {}
        kwargs = reward.get("reward_kwargs") or {}
        # verl always passes a compute_score (its default one when none is configured).
        if (reward.get("custom_reward_function") or {}).get("path"):
            log.warning(
                "reward.custom_reward_function.path is set, but IcdRewardManager scores "
                "with its own engine (reward.reward_kwargs); that function is not called"
            )
        self.settings = RewardSettings.from_kwargs(kwargs, source="reward.reward_kwargs")
        self.engine: RewardEngine = shared_engine(self.settings)
        # Scoring runs in threads so that the event loop keeps taking responses. The
        # rule-based work holds the GIL, so one thread is enough; a component that
        # waits (the judge) lets several batches wait at once.
        waits = any(r.is_async for r in self.engine.rewards.values())
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4 if waits else 1, thread_name_prefix="icdreward-verl"
        )
        self._counters = CounterDeltas(self.engine.rewards, prefix=COUNT_PREFIX)
        self._monitors = SAMPLE_MONITORS if self.engine.config.monitors else ()
        self._unscored = dict.fromkeys(record_keys(self.engine, self._counters), 0.0)
        self._unscored.update(unscored_record(self.engine.names))
        # Queued first on the scoring thread: the first batch waits for it rather than
        # building the free-text index (about 2.6 s) itself.
        self.warmup: concurrent.futures.Future[float] = self._executor.submit(
            warm_engine, self.engine
        )
        self._batcher: MicroBatcher[_Response, dict[str, Any]] = MicroBatcher(
            self._score_batch,
            max_size=self.settings.max_batch_size,
            max_wait=self.settings.max_wait_ms / 1000.0,
        )

    async def run_single(self, data: DataProto) -> dict[str, Any]:
        """Score one response (the last sequence of ``data``), batched with its neighbours.

        Returns:
            ``{"reward_score": float, "reward_extra_info": {name: float, ...}}``.
        """
        item = data[-1]
        response_ids = item.batch["responses"]
        length = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        reward_model = item.non_tensor_batch.get("reward_model")
        ground_truth = reward_model.get("ground_truth") if hasattr(reward_model, "get") else None
        note = note_of(item.non_tensor_batch.get("extra_info"), self.settings.note_key)
        response = _Response(response_ids[:length].tolist(), ground_truth, note)
        return await self._batcher.submit(response)

    async def _score_batch(self, responses: list[_Response]) -> Sequence[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._score_sync, responses)

    def _score_sync(self, responses: list[_Response]) -> list[dict[str, Any]]:
        texts = self._decode(responses)
        try:
            records = self._score(responses, texts, range(len(responses)))
            return [_reward(s) for s in records]
        except ComponentFailure:
            raise  # the configured policy is "raise": the trainer asked to stop
        except Exception:
            # The engine turns bad completions into scores; whatever still raised is
            # about some sample in particular: score one by one to confine it.
            log.exception("scoring a batch of %d failed; scoring one by one", len(responses))
        out: list[dict[str, Any]] = []
        for i in range(len(responses)):
            try:
                out.append(_reward(self._score(responses, texts, [i])[0]))
            except ComponentFailure:
                raise
            except Exception:
                # verl gathers the reward calls of a step without return_exceptions:
                # an exception here would end the step. The sample gets the record of
                # a sample every component failed on, and the log says why.
                log.exception("a response could not be scored; every component counts as failed")
                out.append(_reward(dict(self._unscored)))  # a record of its own
        return out

    def _decode(self, responses: list[_Response]) -> list[str | None]:
        try:
            texts = self._tokenizer.batch_decode(
                [r.token_ids for r in responses], skip_special_tokens=True
            )
            return [str(t) for t in texts]
        except Exception:
            pass
        # One undecodable response (an id outside the vocabulary) must not cost the
        # batch: decode one by one; one that fails scores as an empty completion.
        out: list[str | None] = []
        for r in responses:
            try:
                out.append(str(self._tokenizer.decode(r.token_ids, skip_special_tokens=True)))
            except Exception as exc:
                log.warning("a response could not be decoded; scored as empty: %s", exc)
                out.append(None)
        return out

    def _score(
        self, responses: list[_Response], texts: list[str | None], indices: Sequence[int]
    ) -> list[dict[str, float]]:
        result = self.engine.score(
            [texts[i] for i in indices],
            [responses[i].ground_truth for i in indices],
            notes=[responses[i].note for i in indices],
        )
        return self._records(result)

    def _records(self, result: ScoreResult) -> list[dict[str, float]]:
        records = sample_scores(result)
        size = max(len(records), 1)
        shared = {
            MONITOR_PREFIX + name: _finite(result.monitors.get(name)) for name in self._monitors
        }
        # What the batch cost, spread evenly: the sum over any responses is their cost.
        shared.update({key: value / size for key, value in self._counters.deltas().items()})
        for record in records:
            record.update(shared)
        return records


def _finite(value: object) -> float:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0


def _reward(scores: dict[str, float]) -> dict[str, Any]:
    return {"reward_score": scores["score"], "reward_extra_info": scores}
