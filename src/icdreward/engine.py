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
import math
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from icdreward._params import structure_params
from icdreward.batch import ScoringBatch
from icdreward.codeset import CodeSet, load_codeset
from icdreward.components import ComponentContext, Parser, Reward, RewardOutput
from icdreward.config import (
    RESERVED_KEYS,
    ComponentConfig,
    EngineConfig,
    FailurePolicy,
    load_config,
)
from icdreward.errors import ComponentFailure, UnknownComponentError
from icdreward.golds import gold_codes
from icdreward.groups import group_statistics
from icdreward.loop import LoopStopped, LoopThread
from icdreward.monitors import batch_monitors
from icdreward.plugin import ComponentKind, PluginManager
from icdreward.result import ScoreResult

__all__ = ["RewardEngine"]

log = logging.getLogger("icdreward")
_GOLD_MEMO_SIZE = 65_536
_GOLD_MEMO_KEY_CHARS = 64
# Calls one component may spend per batch to isolate the samples it fails on.
_ISOLATION_CALLS = 64


@attrs.frozen(eq=False)
class _Outcome:
    values: torch.Tensor
    failed: torch.Tensor
    reasons: tuple[str | None, ...]

    @classmethod
    def failure(cls, size: int, reason: str) -> _Outcome:
        return cls(torch.zeros(size), torch.ones(size, dtype=torch.bool), (reason,) * size)

    @classmethod
    def concat(cls, parts: Sequence[_Outcome]) -> _Outcome:
        return cls(
            torch.cat([p.values for p in parts]),
            torch.cat([p.failed for p in parts]),
            tuple(r for p in parts for r in p.reasons),
        )


@attrs.frozen(eq=False)
class _Bound:
    """A configured reward component ready to run."""

    config: ComponentConfig
    reward: Reward
    policy: FailurePolicy
    fallback: float


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
        self._bound: list[_Bound] = []
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
                _Bound(
                    config=entry,
                    reward=cls(params, context),
                    policy=entry.on_failure or cls.default_on_failure or config.failure.policy,
                    fallback=config.failure.fallback if entry.fallback is None else entry.fallback,
                )
            )
        self._weights = torch.tensor([b.config.weight for b in self._bound], dtype=torch.float32)
        # A private event loop for async components called from sync code: one for the
        # whole life of the engine, so async clients bound to it stay usable across
        # batches. It starts on first use; an engine dropped without close() must not
        # leave its thread behind.
        self._loop = LoopThread("icdreward-loop")
        self._loop_finalizer = weakref.finalize(self, self._loop.stop)
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
        batch = self._prepare(completions, golds, notes, group_ids, extras)
        outcomes: dict[int, _Outcome] = {}
        pending: list[int] = []
        for k, bound in enumerate(self._bound):
            if bound.reward.is_async:
                pending.append(k)
            else:
                outcomes[k] = self._run_sync(bound, batch)
        if pending:
            try:
                results = self._loop.run(self._gather(pending, batch))
            except LoopStopped:
                raise RuntimeError(
                    "the engine was closed while this batch was being scored"
                ) from None
            outcomes.update(zip(pending, results, strict=True))
        return self._combine(batch, [outcomes[k] for k in range(len(self._bound))])

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
        outcomes: dict[int, _Outcome] = {}
        pending = [k for k, b in enumerate(self._bound) if b.reward.is_async]
        for k, bound in enumerate(self._bound):
            if not bound.reward.is_async:
                outcomes[k] = self._run_sync(bound, batch)
        outcomes.update(zip(pending, await self._gather(pending, batch), strict=True))
        return self._combine(batch, [outcomes[k] for k in range(len(self._bound))])

    def close(self) -> None:
        """Close every component and stop the engine's private event loop.

        Async components are closed on the loop they ran on (:meth:`Reward.aclose`).
        A batch still being scored in another thread fails with a ``RuntimeError``.
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

    async def aclose(self) -> None:
        """Close every component on the running loop (after using :meth:`ascore`)."""
        for bound in self._bound:
            try:
                await bound.reward.aclose()
            except Exception:
                log.exception("closing reward component %r failed", bound.config.key)
        await asyncio.to_thread(self._loop.stop)

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
            codes = [
                self._gold_codes(g) if c is None else c for g, c in zip(golds, codes, strict=True)
            ]
        return codes  # type: ignore[return-value]

    def _gold_codes(self, gold: object) -> tuple[str, ...]:
        codes = gold_codes(gold, self.codeset.normalize)
        if type(gold) is str and len(gold) <= _GOLD_MEMO_KEY_CHARS:
            if len(self._gold_memo) >= _GOLD_MEMO_SIZE:
                self._gold_memo.clear()
            self._gold_memo[gold] = codes
        return codes

    def _run_sync(self, bound: _Bound, batch: ScoringBatch) -> _Outcome:
        try:
            return _outcome(bound.reward.score(batch), len(batch))
        except Exception as exc:
            return self._isolate(bound, batch, exc, [_ISOLATION_CALLS])

    def _isolate(
        self, bound: _Bound, batch: ScoringBatch, exc: Exception, budget: list[int]
    ) -> _Outcome:
        # Bisect so that one poisonous sample costs only itself: the rest of the batch
        # still gets real scores. The budget of calls per component and batch stops an
        # error that is about no sample in particular (an outage, a bug) from costing
        # 2B calls: past it, the samples left fail with the error seen.
        if len(batch) <= 1 or budget[0] <= 0:
            return _Outcome.failure(len(batch), _reason(exc))
        parts = []
        for half in _halves(len(batch)):
            sub = batch.subset(half)
            if budget[0] <= 0:
                parts.append(_Outcome.failure(len(sub), _reason(exc)))
                continue
            budget[0] -= 1
            try:
                parts.append(_outcome(bound.reward.score(sub), len(sub)))
            except Exception as sub_exc:
                parts.append(self._isolate(bound, sub, sub_exc, budget))
        return _Outcome.concat(parts)

    async def _run_async(self, bound: _Bound, batch: ScoringBatch) -> _Outcome:
        try:
            return _outcome(await bound.reward.ascore(batch), len(batch))
        except Exception as exc:
            return await self._isolate_async(bound, batch, exc, [_ISOLATION_CALLS])

    async def _isolate_async(
        self, bound: _Bound, batch: ScoringBatch, exc: Exception, budget: list[int]
    ) -> _Outcome:
        """:meth:`_isolate` for async components."""
        if len(batch) <= 1 or budget[0] <= 0:
            return _Outcome.failure(len(batch), _reason(exc))
        parts = []
        for half in _halves(len(batch)):
            sub = batch.subset(half)
            if budget[0] <= 0:
                parts.append(_Outcome.failure(len(sub), _reason(exc)))
                continue
            budget[0] -= 1
            try:
                parts.append(_outcome(await bound.reward.ascore(sub), len(sub)))
            except Exception as sub_exc:
                parts.append(await self._isolate_async(bound, sub, sub_exc, budget))
        return _Outcome.concat(parts)

    async def _gather(self, indices: list[int], batch: ScoringBatch) -> list[_Outcome]:
        return list(
            await asyncio.gather(*(self._run_async(self._bound[k], batch) for k in indices))
        )

    def _combine(self, batch: ScoringBatch, outcomes: list[_Outcome]) -> ScoreResult:
        size = len(batch)
        # Work on the stacked [B, K] matrix: a handful of tensor operations per batch,
        # whatever the number of components (a configuration has at least one).
        matrix = torch.stack([o.values for o in outcomes], dim=1)
        # A NaN or an infinity anywhere makes the sum non-finite: one reduction tells that
        # a batch is clean (a sum that overflows only sends it through the full check).
        if not math.isfinite(float(matrix.sum())):
            finite = torch.isfinite(matrix)
            if not bool(finite.all()):
                outcomes = [_non_finite(o, finite[:, k]) for k, o in enumerate(outcomes)]
                matrix = torch.where(finite, matrix, 0.0)
        no_failures = _no_failures(size)
        if all(o.failed is no_failures for o in outcomes):
            # Every component returned plain values: nothing failed, nothing to stack.
            failed = torch.zeros(size, len(outcomes), dtype=torch.bool)
            included = torch.ones(size, len(outcomes), dtype=torch.bool)
            total = matrix @ self._weights
        else:
            failed = torch.stack([o.failed for o in outcomes], dim=1)
            included = torch.ones_like(failed)
            if bool(failed.any()):
                for k in failed.any(dim=0).nonzero().flatten().tolist():
                    self._apply_policy(self._bound[k], outcomes[k], matrix[:, k], included[:, k])
                total = (matrix * included) @ self._weights
            else:
                total = matrix @ self._weights
        # Last line of defence: a trainer must never receive NaN or inf.
        total = torch.nan_to_num(total, nan=0.0, posinf=0.0, neginf=0.0)
        gold_missing = batch.gold_keys[:, 0] == 0  # the primary gold slot is empty
        if bool(gold_missing.any()):
            log.warning(
                "%d of %d samples have no readable gold code; they score as wrong answers",
                int(gold_missing.sum()), size,
            )  # fmt: skip
        groups = None
        if batch.group_ids is not None and size:
            groups = group_statistics(total, batch.group_ids)
        names = self.names
        return ScoreResult(
            total=total,
            components=dict(zip(names, matrix.unbind(dim=1), strict=True)),
            weights=self.weights,
            included=included,
            failed=dict(zip(names, failed.unbind(dim=1), strict=True)),
            failure_reasons={n: o.reasons for n, o in zip(names, outcomes, strict=True)},
            parsed=batch.parsed,
            gold_missing=gold_missing,
            groups=groups,
            monitors=batch_monitors(batch) if self.config.monitors else {},
        )

    @staticmethod
    def _apply_policy(
        bound: _Bound, outcome: _Outcome, values: torch.Tensor, included: torch.Tensor
    ) -> None:
        """Apply ``bound``'s failure policy to its column (``values``, ``included``) in place."""
        mask = outcome.failed
        key, size = bound.config.key, int(mask.numel())
        # One line per component and batch, not per sample: a long run with a broken
        # component must not drown its own log.
        first = next(r for r, m in zip(outcome.reasons, mask.tolist(), strict=True) if m)
        log.warning(
            "reward %r could not score %d of %d samples (policy %s); first: %s",
            key, int(mask.sum()), size, bound.policy, first,
        )  # fmt: skip
        if bound.policy == "raise":
            reasons = {i: r or "failed" for i, r in enumerate(outcome.reasons) if r is not None}
            raise ComponentFailure(key, reasons)
        if bound.policy == "fallback":
            values[mask] = bound.fallback
        else:
            values[mask] = 0.0
            included[mask] = False


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


def _outcome(out: torch.Tensor | RewardOutput | Sequence[float], size: int) -> _Outcome:
    if isinstance(out, RewardOutput):
        values = _cpu(out.values, torch.float32)
        failed = _cpu(out.failed, torch.bool)
        reasons = tuple(out.reasons)
        if failed.numel() != size or len(reasons) != size:
            return _Outcome.failure(size, f"returned failure flags for {failed.numel()} samples")
    else:
        values = _cpu(out, torch.float32)
        failed = _no_failures(size)
        reasons = (None,) * size
    if values.numel() != size:
        return _Outcome.failure(size, f"returned {values.numel()} values for {size} samples")
    # Finiteness is checked once for all components, in _combine.
    return _Outcome(values, failed, reasons)


def _halves(size: int) -> tuple[range, range]:
    return range(size // 2), range(size // 2, size)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _cpu(values: Any, dtype: torch.dtype) -> torch.Tensor:
    """A flat CPU tensor of ``dtype``, detached: a model-based reward may compute on a GPU."""
    if isinstance(values, torch.Tensor):
        if (
            values.dtype is dtype
            and values.dim() == 1
            and values.is_cpu
            and not values.requires_grad
        ):
            return values  # what rule-based rewards return: the three calls below change nothing
        return values.detach().to("cpu", dtype).reshape(-1)
    return torch.as_tensor(values, dtype=dtype).reshape(-1)


@functools.lru_cache(maxsize=8)
def _no_failures(size: int) -> torch.Tensor:
    # Shared and never written to: outcomes are combined into new tensors.
    return torch.zeros(size, dtype=torch.bool)


def _non_finite(outcome: _Outcome, finite: torch.Tensor) -> _Outcome:
    """``outcome`` with its NaN and infinite values turned into failures."""
    bad = ~finite & ~outcome.failed
    reasons = tuple(
        "returned a non-finite value" if b else r
        for r, b in zip(outcome.reasons, bad.tolist(), strict=True)
    )
    return _Outcome(torch.where(finite, outcome.values, 0.0), outcome.failed | bad, reasons)
