"""The reward engine: parse once, run every component on the batch, combine.

>>> engine = RewardEngine.from_preset("deepicd-r1")
>>> result = engine.score(["Lumbar disc disorder with radiculopathy.</think>"
...                        "<diagnosis>M51.16</diagnosis>"], ["M5116"])
>>> result.total.tolist()
[76.0]
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from icdreward._combine import Bound, combine
from icdreward._isolation import isolate, isolate_sync
from icdreward._limits import Step, TimeLimit, Workers, run_steps
from icdreward._outcome import Outcome, to_outcome
from icdreward._params import structure_params
from icdreward.batch import ScoringBatch
from icdreward.codeset import CodeSet, load_codeset
from icdreward.components import ComponentContext, Parser, Reward
from icdreward.config import RESERVED_KEYS, ComponentConfig, EngineConfig, load_config
from icdreward.errors import UnknownComponentError
from icdreward.golds import gold_codes
from icdreward.loop import LoopStopped, LoopThread
from icdreward.monitors import batch_monitors
from icdreward.plugin import ComponentKind, PluginManager
from icdreward.result import ScoreResult

__all__ = ["RewardEngine"]

log = logging.getLogger("icdreward")
_GOLD_MEMO_SIZE = 65_536
_GOLD_MEMO_KEY_CHARS = 64


class RewardEngine:
    """Scores batches of completions against gold ICD-10-CM codes.

    Build one with :meth:`from_preset` or :meth:`from_config` and reuse it: building
    loads plugins and the code set; scoring is a few tensor operations per batch.

    Args:
        config: a validated configuration (see :func:`icdreward.config.load_config`).
        plugin_manager: plugins to use; by default the installed ones, minus
            ``config.plugins.disable``.
        codeset: the code set; by default the shipped year ``config.codeset_year``.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        plugin_manager: PluginManager | None = None,
        codeset: CodeSet | None = None,
    ) -> None:
        self.config = config
        self.plugin_manager = plugin_manager or PluginManager(
            disable=config.plugins.disable, strict=config.plugins.strict
        )
        self.codeset = codeset or load_codeset(config.codeset_year)
        context = ComponentContext(codeset=self.codeset, config_source=config.source)
        parser_cls = self._component_class("parser", config.parser.name, "parser.name")
        parser_params = structure_params(
            parser_cls.Params,
            config.parser.params,
            source=config.source,
            field="parser",
            reserved=("name",),
        )
        self.parser: Parser = parser_cls(parser_params, context)
        self._bound: list[Bound] = []
        self._workers = Workers()
        for entry in config.rewards:
            field = f"rewards.{entry.key}"
            cls = self._component_class(
                "reward",
                entry.component,
                f"{field}.component" if entry.component != entry.key else field,
            )
            params = structure_params(
                cls.Params, entry.params, source=config.source, field=field, reserved=RESERVED_KEYS
            )
            self._bound.append(
                Bound(
                    config=entry,
                    reward=cls(params, context),
                    policy=entry.on_failure or cls.default_on_failure or config.failure.policy,
                    fallback=config.failure.fallback if entry.fallback is None else entry.fallback,
                    limit=self._time_limit(entry),
                )
            )
        self._sync = [k for k, b in enumerate(self._bound) if not b.reward.is_async]
        # Whether a sync component has a time limit (then batches run in a worker).
        self._limited = any(b.limit is not None and not b.reward.is_async for b in self._bound)
        self._weights = torch.tensor([b.config.weight for b in self._bound], dtype=torch.float64)
        # A private event loop for async components called from sync code: one for the
        # whole life of the engine, so async clients bound to it stay usable across
        # batches. It starts on first use; an engine dropped without close() must not
        # leave its thread behind.
        self._loop = LoopThread("icdreward-loop")
        self._loop_finalizer = weakref.finalize(self, self._loop.stop)
        self._workers_finalizer = weakref.finalize(self, self._workers.close)
        self._gold_memo: dict[str, tuple[str, ...]] = {}

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> RewardEngine:
        """An engine for a shipped preset: ``"deepicd-r1"`` or ``"default"``."""
        return cls(load_config({"preset": name}, source=f"preset {name!r}"), **kwargs)

    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any], **kwargs: Any) -> RewardEngine:
        """An engine for a configuration file (TOML, YAML, JSON) or mapping."""
        return cls(load_config(config), **kwargs)

    def _time_limit(self, entry: ComponentConfig) -> TimeLimit | None:
        seconds = self.config.limits.time_limit if entry.time_limit is None else entry.time_limit
        if seconds is None or seconds is False:
            return None
        return TimeLimit(entry.key, seconds)

    def _component_class(self, kind: ComponentKind, name: str, field: str) -> Any:
        table = self.plugin_manager.registry.table(kind)
        if name not in table:
            available = ", ".join(sorted(table)) or "none"
            raise UnknownComponentError(
                self.config.source,
                field,
                name,
                f"no loaded plugin registers a {kind} of that name (available: {available})",
            )
        return table[name].cls

    # -- introspection -----------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The configured reward component names, in order."""
        return tuple(b.config.key for b in self._bound)

    @property
    def weights(self) -> dict[str, float]:
        """Component name -> weight."""
        return {b.config.key: b.config.weight for b in self._bound}

    @property
    def rewards(self) -> dict[str, Reward]:
        """Component name -> the built reward component."""
        return {b.config.key: b.reward for b in self._bound}

    # -- scoring -----------------------------------------------------------------

    def score(
        self,
        completions: Sequence[object],
        golds: Sequence[object],
        notes: Sequence[str | None] | None = None,
        group_ids: Sequence[Any] | torch.Tensor | None = None,
        extras: Mapping[str, Sequence[Any]] | None = None,
    ) -> ScoreResult:
        """Score a batch.

        Args:
            completions: model outputs; anything is accepted (non-text scores as empty).
            golds: per sample, one gold code or a list of codes (primary first).
            notes: per sample, the admission note (used by grounding and judge rewards).
            group_ids: per sample, the id of its prompt group (for group statistics).
            extras: further per-sample columns for components that need them (a
                trainer's dataset columns, verl's ``extra_info``), as
                :attr:`ScoringBatch.extras`.

        Returns:
            A :class:`ScoreResult`; bad completions get low scores, never exceptions.

        Raises:
            ValueError: the argument lengths differ.
            ComponentFailure: a component failed on some sample and its policy is ``"raise"``.
        """
        if not self._limited:
            batch = self._prepare(completions, golds, notes, group_ids, extras)
            outcomes = {
                k: self._run_sync(b, batch)
                for k, b in enumerate(self._bound)
                if not b.reward.is_async
            }
            return self._finish(batch, outcomes)
        # Time limits: the whole batch is scored in a worker thread (see _limits), and
        # this thread stops waiting for a component at its limit.
        state = _Scoring()

        def prepare() -> ScoringBatch:
            return self._prepare(completions, golds, notes, group_ids, extras)

        steps = [Step(prepare, keep=state.set_batch)]
        steps += [
            self._sync_step(state, k) for k, b in enumerate(self._bound) if not b.reward.is_async
        ]
        steps.append(Step(lambda: self._finish(state.batch, state.outcomes), keep=state.set_result))
        run_steps(steps, self._workers)
        assert state.result is not None  # every step ran, or one raised
        return state.result

    async def ascore(
        self,
        completions: Sequence[object],
        golds: Sequence[object],
        notes: Sequence[str | None] | None = None,
        group_ids: Sequence[Any] | torch.Tensor | None = None,
        extras: Mapping[str, Sequence[Any]] | None = None,
    ) -> ScoreResult:
        """Asynchronous :meth:`score`: async components run concurrently on the caller's loop."""
        batch = self._prepare(completions, golds, notes, group_ids, extras)
        state = _Scoring(batch)
        limited: list[Step] = []
        for k, bound in enumerate(self._bound):
            if bound.reward.is_async:
                continue
            if bound.limit is None:
                state.outcomes[k] = self._run_sync(bound, batch)
            else:
                limited.append(self._sync_step(state, k))
        if limited:
            # Waiting for a sync component blocks: wait in a thread, off the loop.
            await asyncio.to_thread(run_steps, limited, self._workers)
        pending = [k for k, b in enumerate(self._bound) if b.reward.is_async]
        state.outcomes.update(zip(pending, await self._gather(pending, batch), strict=True))
        return self._combine(batch, [state.outcomes[k] for k in range(len(self._bound))])

    def close(self) -> None:
        """Close every component and stop the engine's private event loop.

        Async components are closed on the loop they ran on (:meth:`Reward.aclose`).
        A batch still being scored in another thread fails with a ``RuntimeError``.
        A sync call that passed its time limit is not waited for: its daemon thread
        ends when the call returns.
        """
        ran_async = self._loop.running
        for bound in self._bound:
            try:
                if bound.reward.is_async and ran_async:
                    self._loop.run(bound.reward.aclose())
                else:
                    bound.reward.close()
            except Exception:
                log.exception("closing reward component %r failed", bound.config.key)
        self._loop.stop()
        self._workers.close()

    async def aclose(self) -> None:
        """Close every component on the running loop (after using :meth:`ascore`)."""
        for bound in self._bound:
            try:
                await bound.reward.aclose()
            except Exception:
                log.exception("closing reward component %r failed", bound.config.key)
        await asyncio.to_thread(self._loop.stop)
        self._workers.close()

    def __enter__(self) -> RewardEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------

    def _prepare(
        self,
        completions: Sequence[object],
        golds: Sequence[object],
        notes: Sequence[str | None] | None,
        group_ids: Sequence[Any] | torch.Tensor | None,
        extras: Mapping[str, Sequence[Any]] | None = None,
    ) -> ScoringBatch:
        completions = list(completions)
        size = len(completions)
        extra_columns: dict[str, tuple[Any, ...]] = {}
        for name, column in (extras or {}).items():
            extra_columns[name] = tuple(column)
            _check_length(f"extras[{name!r}]", extra_columns[name], size)
        gold_list = list(golds)
        _check_length("golds", gold_list, size)
        note_list: list[str] | None = None
        if notes is not None:
            raw_notes = list(notes)
            _check_length("notes", raw_notes, size)
            note_list = [n if isinstance(n, str) else "" for n in raw_notes]
        group_tensor = None
        if group_ids is not None:
            group_tensor = _group_tensor(group_ids)
            _check_length("group_ids", group_tensor, size)
        parsed = self.parser.parse(completions)
        gold_codes = self._gold_codes_of(gold_list)
        return ScoringBatch(
            parsed,
            gold_codes,
            self.codeset,
            notes=note_list,
            group_ids=group_tensor,
            extras=extra_columns,
        )

    def _gold_codes_of(self, golds: list[object]) -> list[tuple[str, ...]]:
        # The n samples of a GRPO group share their gold label: memoize the strings.
        get = self._gold_memo.get
        codes = [get(g) if type(g) is str else None for g in golds]
        if None in codes:
            # A new group's samples all miss the first pass: the memo is asked again,
            # so the label is read once per distinct string, not once per sample.
            codes = [
                c if c is not None else (get(g) if type(g) is str else None) or self._gold_codes(g)
                for g, c in zip(golds, codes, strict=True)
            ]
        return codes  # type: ignore[return-value]

    def _gold_codes(self, gold: object) -> tuple[str, ...]:
        codes = gold_codes(gold, self.codeset.normalize)
        if type(gold) is str and len(gold) <= _GOLD_MEMO_KEY_CHARS:
            if len(self._gold_memo) >= _GOLD_MEMO_SIZE:
                self._gold_memo.clear()
            self._gold_memo[gold] = codes
        return codes

    def _run_sync(self, bound: Bound, batch: ScoringBatch) -> Outcome:
        try:
            return to_outcome(bound.reward.score(batch), len(batch))
        except Exception as exc:
            return isolate_sync(bound.reward.score, batch, exc)

    async def _run_async(self, bound: Bound, batch: ScoringBatch) -> Outcome:
        try:
            return to_outcome(await bound.reward.ascore(batch), len(batch))
        except Exception as exc:
            return await isolate(bound.reward.ascore, batch, exc)

    def _sync_step(self, state: _Scoring, k: int) -> Step:
        """The step running sync component ``k`` on ``state.batch``, under its limit."""
        bound = self._bound[k]
        limit = bound.limit

        def run() -> Outcome:
            batch = state.batch
            if limit is not None:
                busy = limit.busy(len(batch))
                if busy is not None:
                    return busy
            return self._run_sync(bound, batch)

        def expired(returned: threading.Event) -> None:
            assert limit is not None
            state.outcomes[k] = limit.expired(returned, len(state.batch))

        keep = functools.partial(state.outcomes.__setitem__, k)
        return Step(run, keep=keep, limit=limit, expired=None if limit is None else expired)

    def _finish(self, batch: ScoringBatch, outcomes: dict[int, Outcome]) -> ScoreResult:
        """Run the async components on the engine's loop, then combine everything."""
        pending = [k for k, b in enumerate(self._bound) if b.reward.is_async]
        if pending:
            try:
                results = self._loop.run(self._gather(pending, batch))
            except LoopStopped:
                raise RuntimeError(
                    "the engine was closed while this batch was being scored"
                ) from None
            outcomes.update(zip(pending, results, strict=True))
        return self._combine(batch, [outcomes[k] for k in range(len(self._bound))])

    async def _run_limited(self, bound: Bound, batch: ScoringBatch) -> Outcome:
        if bound.limit is None:
            return await self._run_async(bound, batch)
        return await bound.limit.wait(self._run_async(bound, batch), len(batch))

    async def _gather(self, indices: list[int], batch: ScoringBatch) -> list[Outcome]:
        return list(
            await asyncio.gather(*(self._run_limited(self._bound[k], batch) for k in indices))
        )

    def _combine(self, batch: ScoringBatch, outcomes: list[Outcome]) -> ScoreResult:
        result = combine(self._bound, self._weights, batch, outcomes, self.config.failure)
        if self.config.monitors and len(batch):
            # attrs.evolve on a frozen result: the monitors read the batch after scoring.
            result = attrs.evolve(result, monitors=batch_monitors(batch))
        return result


def _check_length(name: str, values: Sequence[object] | torch.Tensor, size: int) -> None:
    if len(values) != size:
        raise ValueError(f"{name} has {len(values)} entries for {size} completions")


def _group_tensor(group_ids: Sequence[Any] | torch.Tensor) -> torch.Tensor:
    """``int64 [B]`` group ids: integers as given, anything else numbered densely."""
    if isinstance(group_ids, torch.Tensor):
        ids = group_ids.detach().reshape(-1).cpu()
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            dense_ids: torch.Tensor = torch.unique(ids, return_inverse=True)[1]
            return dense_ids
        return ids.to(torch.int64)
    values = list(group_ids)
    if all(type(g) is int for g in values):
        try:
            return torch.tensor(values, dtype=torch.int64)
        except (OverflowError, RuntimeError, ValueError):  # beyond int64: number them instead
            pass
    dense: dict[Any, int] = {}
    return torch.tensor(
        [dense.setdefault(_hashable(g), len(dense)) for g in values], dtype=torch.int64
    )


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


class _Scoring:
    """What the steps of one time-limited batch share (see :meth:`RewardEngine.score`)."""

    def __init__(self, batch: ScoringBatch | None = None) -> None:
        self._batch = batch
        self.outcomes: dict[int, Outcome] = {}
        self.result: ScoreResult | None = None

    @property
    def batch(self) -> ScoringBatch:
        assert self._batch is not None  # the first step prepared it
        return self._batch

    def set_batch(self, batch: ScoringBatch) -> None:
        self._batch = batch

    def set_result(self, result: ScoreResult) -> None:
        self.result = result
