"""The ``judge`` reward: an LLM's 1-5 verdict on the clinical validity of each trace.

Per batch, most of the work is avoided rather than done:

1. samples with an empty trace or no valid code are not sent: they get
   ``scale * not_sent`` (the published recipe's -0.8);
2. the others are reduced to their cache keys (memoised, so a repeated prompt is not
   even re-rendered), and identical prompts in the batch collapse to one;
3. keys in the memory LRU are answered at once, without touching the event loop;
4. the rest go to the judge's own loop (:mod:`._runner`), which looks in the SQLite
   cache, joins requests already in flight, and asks the server for what is left.

A prompt without a verdict (the judge was down, timed out, answered garbage or out
of range after every retry, or the batch deadline passed) is never scored 0: the
sample is flagged in a :class:`~icdreward.RewardOutput` with the reason, and the
engine's failure policy for this component decides (``on_failure``: fallback,
abstain or raise).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

import torch

from icdreward import ComponentContext, ConfigError, Reward, RewardOutput, ScoringBatch

from ._cache import VerdictCache
from ._health import check_judge
from ._outcome import Outcome
from ._params import JudgeParams, resolve_api_key
from ._render import PromptRenderer, Request
from ._stats import JudgeStats, StatsCounter
from ._template import Template, load_template

if TYPE_CHECKING:
    from ._runner import JudgeRunner

__all__ = ["JudgeReward"]


_CLOSED = Outcome(None, "no verdict: the judge was closed while this batch waited", "cancelled")


class _Plan:
    """One batch after step 1-3 above: what is known, and what must be asked."""

    __slots__ = ("hits", "keys", "pending")

    def __init__(
        self, keys: list[str | None], hits: dict[str, int], pending: dict[str, Request]
    ) -> None:
        self.keys = keys
        self.hits = hits
        self.pending = pending


class JudgeReward(Reward):
    """LLM judge of the reasoning trace (registered as ``judge``; see :class:`JudgeParams`).

    Attributes:
        template: the prompt template in use.
        health: the problems the start-up check found (empty when none, or when the
            check is off).
    """

    name = "judge"
    Params = JudgeParams
    is_async = True
    # An unreachable judge is an outage, not a verdict: leave it out of the total unless
    # the configuration asks for a fallback value or for an error.
    default_on_failure = "abstain"

    def __init__(self, params: JudgeParams, context: ComponentContext) -> None:
        super().__init__(params, context)
        self._setup()
        self.health: list[str] = check_judge(params, resolve_api_key(params))

    def _setup(self) -> None:
        p: JudgeParams = self.params
        try:
            self.template: Template = load_template(p.template)
        except ValueError as exc:
            source = self.context.config_source
            raise ConfigError(source, "judge.template", p.template, str(exc)) from None
        low, high = self.template.min_score, self.template.max_score
        self._renderer = PromptRenderer(p, self.template, self.context.codeset)
        self._cache = VerdictCache(
            p.cache_size, p.cache_path, template=self.template.ident, model=p.model
        )
        self._counter = StatsCounter()
        self._runner_instance: JudgeRunner | None = None
        # Worker threads may make their first call at the same time: one runner (one
        # loop, one concurrency cap, one table of shared requests) for all of them.
        self._runner_lock = threading.Lock()
        self._values = {s: p.scale * _mapped(s, low, high, p.mapping) for s in range(low, high + 1)}
        self._not_sent = p.scale * p.not_sent

    # -- counters --------------------------------------------------------------------

    @property
    def stats(self) -> JudgeStats:
        """The counters so far (``engine.rewards["judge"].stats``)."""
        return self._counter.snapshot()

    def reset_stats(self) -> None:
        """Set every counter back to 0 (e.g. at the start of each training step)."""
        self._counter.reset()

    # -- scoring ---------------------------------------------------------------------

    async def ascore(self, batch: ScoringBatch) -> torch.Tensor | RewardOutput:
        """Score on the caller's loop; requests run on the judge's own loop meanwhile."""
        plan = self._plan(batch)
        outcomes: dict[str, Outcome] = {}
        if plan.pending:
            runner = self._runner()
            if runner.owns_running_loop():
                outcomes = await runner.judge(plan.pending)
            else:
                try:
                    outcomes = await asyncio.wrap_future(runner.submit(plan.pending))
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # our caller was cancelled: let it be
                    # The judge was closed under this batch: its samples fail below.
        return self._finish(plan, outcomes)

    def score(self, batch: ScoringBatch) -> torch.Tensor | RewardOutput:
        """Blocking :meth:`ascore`, callable from any thread (no signals, no new loop)."""
        plan = self._plan(batch)
        outcomes: dict[str, Outcome] = {}
        if plan.pending:
            runner = self._runner()
            if runner.owns_running_loop():
                raise RuntimeError("JudgeReward.score() called on the judge's own loop")
            with contextlib.suppress(concurrent.futures.CancelledError):
                # Cancelled only when the judge is closed under this batch.
                outcomes = runner.submit(plan.pending).result()
        return self._finish(plan, outcomes)

    async def aclose(self) -> None:
        """:meth:`close` without blocking the caller's event loop."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop the judge's loop, close its connections, flush the disk cache."""
        runner, self._runner_instance = self._runner_instance, None
        try:
            if runner is not None:
                runner.close()
        finally:
            self._cache.close()

    # -- internals -------------------------------------------------------------------

    def _runner(self) -> JudgeRunner:
        runner = self._runner_instance
        if runner is not None:
            return runner
        with self._runner_lock:
            return self._runner_instance or self._new_runner()

    def _new_runner(self) -> JudgeRunner:
        # Imported here: it imports the openai client, which costs half a second
        # that a process not using the judge should not pay at plugin load.
        from ._runner import JudgeRunner

        template = self.template
        runner = JudgeRunner(
            self.params,
            resolve_api_key(self.params),
            (template.min_score, template.max_score),
            self._cache,
            self._counter,
        )
        self._runner_instance = runner
        # An engine dropped without close() (or the interpreter exiting) still
        # stops the loop thread and closes the connections.
        weakref.finalize(self, runner.close)
        return runner

    def _plan(self, batch: ScoringBatch) -> _Plan:
        renderer = self._renderer
        inputs_of: dict[str, tuple[str, str, str]] = {}
        keys: list[str | None] = []
        for trace, note, code in zip(
            batch.parsed.think, batch.notes, batch.parsed.codes, strict=True
        ):
            if not trace or not code:
                keys.append(None)
                continue
            inputs = renderer.inputs(trace, note, code)
            key = renderer.key(inputs)
            inputs_of.setdefault(key, inputs)
            keys.append(key)
        hits = self._cache.get_many(inputs_of)
        pending = {
            key: renderer.request(inputs) for key, inputs in inputs_of.items() if key not in hits
        }
        sent = len(keys) - keys.count(None)
        self._counter.add(
            samples=len(keys),
            not_sent=len(keys) - sent,
            deduplicated=sent - len(inputs_of),
            cache_hits=len(hits),
        )
        return _Plan(keys, hits, pending)

    def _finish(self, plan: _Plan, outcomes: dict[str, Outcome]) -> torch.Tensor | RewardOutput:
        values: list[float] = []
        reasons: list[str | None] = []
        failures = deadline = 0
        table, hits, not_sent = self._values, plan.hits, self._not_sent
        for key in plan.keys:
            reason = None
            if key is None:
                value = not_sent
            elif key in hits:
                value = table[hits[key]]
            else:
                outcome = outcomes.get(key) or _CLOSED
                if outcome.score is None:
                    value, reason = 0.0, f"judge: {outcome.reason}"
                    failures += 1
                    deadline += outcome.kind == "deadline"
                else:
                    value = table[outcome.score]
            values.append(value)
            reasons.append(reason)
        tensor = torch.tensor(values, dtype=torch.float32)
        if not failures:
            return tensor
        self._counter.add(failures=failures, deadline_exceeded=deadline)
        failed = torch.tensor([r is not None for r in reasons], dtype=torch.bool)
        return RewardOutput(values=tensor, failed=failed, reasons=reasons)

    # -- pickling (reward workers in other processes) ----------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"params": self.params, "context": self.context, "health": self.health}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.params = state["params"]
        self.context = state["context"]
        self.health = state["health"]
        self._setup()


def _mapped(score: int, low: int, high: int, mapping: str) -> float:
    """A verdict on the reward scale before ``scale``: raw, unit (0-1) or centered (-1-1)."""
    if mapping == "unit":
        return (score - low) / (high - low)
    if mapping == "centered":
        return 2 * (score - low) / (high - low) - 1
    return float(score)
