"""Rewards for TRL's ``GRPOTrainer``: a :class:`~icdreward.RewardEngine` as TRL reward functions.

TRL calls every reward function with keyword arguments only: ``prompts``, ``completions``
(strings, or ``[{"role": "assistant", "content": ...}]`` with chat prompts),
``completion_ids``, every dataset column except ``prompt`` (one value per completion),
``trainer_state``, ``log_extra`` and ``log_metric``. It expects one float per completion,
``None`` meaning "this function abstains for this sample".

:class:`TRLRewards` gives two ways to plug an engine in:

- :attr:`TRLRewards.functions`, one function per reward component, named after it, with
  :attr:`TRLRewards.weights` as ``GRPOConfig(reward_weights=...)``: TRL logs every
  component as ``rewards/<name>/mean`` and ``rewards/<name>/std`` and sums them with the
  engine's weights. The batch is scored once, whatever the number of components: the
  first function scores it, the others read the cached result.
- :attr:`TRLRewards.total`, one function returning the engine's weighted total; the
  components are reported through TRL's ``log_metric`` as ``icdreward/<name>/mean``.

Either way, every scored batch also reports its reward-hacking monitors, failure shares
and judge counters through ``log_metric`` (:func:`batch_metrics`, :class:`CounterDeltas`)
and per-sample flags through ``log_extra`` (:func:`sample_columns`).

A component that abstained for a sample (its failure policy is ``"abstain"``) returns
``None`` there. Nothing needs TRL to be installed here: only training does.

>>> from icdreward import RewardEngine
>>> rewards = TRLRewards(RewardEngine.from_preset("deepicd-r1"))
>>> [f.__name__ for f in rewards.functions], rewards.weights
(['format', 'outcome', 'trace', 'exact_match'], [1.0, 1.0, 1.0, 0.0])
>>> good = "Lumbar disc disorder with radiculopathy.</think><diagnosis>M51.16</diagnosis>"
>>> batch = dict(prompts=["p", "p"], completions=[good, "no tags"],
...              codes=[["M5116"], ["M5116"]], note=["Back pain.", "Back pain."])
>>> outcome = rewards.functions[1]
>>> outcome(**batch)
[75.0, -1.0]
>>> rewards.total(**batch)
[76.0, -1.0]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from icdreward.engine import RewardEngine
from icdreward.errors import ComponentFailure
from icdreward.prompts import ChatTokenizer, render_prompt
from icdreward.result import ScoreResult

from ._reporting import (
    SAMPLE_COLUMNS,
    CounterDeltas,
    batch_metrics,
    component_means,
    sample_columns,
)

__all__ = [
    "DEFAULT_GOLD_COLUMNS",
    "DEFAULT_NOTE_COLUMN",
    "SAMPLE_COLUMNS",
    "ChatTokenizer",
    "CounterDeltas",
    "RewardFunction",
    "TRLRewards",
    "batch_metrics",
    "completion_text",
    "group_ids",
    "render_prompt",
    "sample_columns",
]

log = logging.getLogger("icdreward_trl")

DEFAULT_GOLD_COLUMNS: tuple[str, ...] = ("gold", "codes")
"""Dataset columns searched, in order, for the gold code(s) of each sample."""

DEFAULT_NOTE_COLUMN = "note"
"""Dataset column holding the admission note (read by grounding and judge rewards)."""

# Keyword arguments TRL adds to the dataset columns; never a gold or note column.
_TRL_KWARGS = frozenset({"prompts", "completions", "completion_ids", "trainer_state",
                         "log_extra", "log_metric", "environments"})  # fmt: skip

OnError = Literal["abstain", "raise"]


def completion_text(completion: object) -> object:
    """The text of one TRL completion; anything that holds no text is returned as is.

    A string is returned unchanged. A chat completion (a list of messages, or one
    message) gives the content of its last assistant message (else its last message);
    content given as a list of parts (``{"type": "text", "text": ...}``) is joined.
    What is left (None, numbers) goes to the engine, which scores it as empty.

    >>> completion_text([{"role": "assistant", "content": "a</think>"}])
    'a</think>'
    >>> completion_text({"role": "assistant", "content": [{"type": "text", "text": "x"}]})
    'x'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)) and completion:
        messages = [m for m in completion if isinstance(m, Mapping)]
        if len(messages) == len(completion):
            assistant = [m for m in messages if m.get("role") == "assistant"]
            return _content_text((assistant or messages)[-1].get("content"))
    return completion


def _content_text(content: object) -> object:
    if isinstance(content, (list, tuple)):
        parts = [
            p.get("text") if isinstance(p, Mapping) else p
            for p in content
            if not isinstance(p, Mapping) or p.get("type", "text") == "text"
        ]
        return "".join(p for p in parts if isinstance(p, str))
    return content


def group_ids(prompts: Sequence[object]) -> list[int]:
    """Dense group ids: completions of identical prompts share one (GRPO's groups).

    >>> group_ids(["a", "a", "b", "b", "a"])
    [0, 0, 1, 1, 0]
    """
    dense: dict[Hashable, int] = {}
    return [dense.setdefault(_prompt_key(p), len(dense)) for p in prompts]


def _prompt_key(prompt: object) -> Hashable:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return tuple(_prompt_key(m) for m in prompt)
    if isinstance(prompt, Mapping):
        return tuple((str(k), _prompt_key(v)) for k, v in prompt.items())
    try:
        hash(prompt)
    except TypeError:
        return repr(prompt)
    return prompt


class RewardFunction:
    """One TRL reward function backed by a :class:`TRLRewards` adapter.

    TRL logs it under its ``__name__``. Call it the way TRL does, with keyword
    arguments; it returns one ``float`` or ``None`` (abstain) per completion.
    """

    def __init__(self, adapter: TRLRewards, name: str, component: str | None) -> None:
        self._adapter = adapter
        self._component = component
        self.__name__ = name
        self.__qualname__ = name
        what = f"the {component!r} component" if component else "the weighted total"
        self.__doc__ = f"TRL reward function: {what} of the icdreward engine."

    @property
    def component(self) -> str | None:
        """The component this function returns, or None for the weighted total."""
        return self._component

    def __call__(
        self,
        prompts: Sequence[object] | None = None,
        completions: Sequence[object] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if completions is None:
            raise TypeError(f"reward function {self.__name__!r} needs completions=")
        return self._adapter._rewards(self, prompts, completions, kwargs)

    def __repr__(self) -> str:
        return f"<icdreward TRL reward function {self.__name__!r}>"


@attrs.define(eq=False)
class _Batch:
    """The last scored batch and the functions that already read it."""

    key: tuple[object, ...]
    result: ScoreResult | None  # None: scoring failed and the batch abstains
    served: set[str] = attrs.field(factory=set)


class TRLRewards:
    """An engine exposed as TRL ``GRPOTrainer`` reward functions.

    Either pass :attr:`functions` as ``reward_funcs`` and :attr:`weights` as
    ``GRPOConfig(reward_weights=...)`` (every component logged by TRL), or pass
    :attr:`total` alone (components logged through ``log_metric``)::

        rewards = TRLRewards(RewardEngine.from_preset("default"))
        config = GRPOConfig(..., reward_weights=rewards.weights)
        trainer = GRPOTrainer(model, reward_funcs=rewards.functions, args=config, ...)

    Args:
        engine: the engine that scores the completions (built once, reused).
        gold_column: the dataset column with each sample's gold code (a string, or a
            list with the primary code first); with several names the first present
            is used.
        note_column: the dataset column with the admission note, or None for none.
        prefix: prepended to every function name (``prefix="icd_"`` logs
            ``rewards/icd_format/mean``), to keep clear of other reward functions.
        total_name: the name of :attr:`total` (not prefixed).
        log_metrics: report, once per scored batch, metrics through TRL's
            ``log_metric`` (every reward-hacking monitor as ``icdreward/monitor/<name>``,
            each component's failure share as ``icdreward/failed/<name>``, all-equal
            groups, the growth of a judge's counters as ``icdreward/<judge>/<counter>``;
            with :attr:`total` also every component's mean, see :func:`batch_metrics`)
            and per-sample flags through ``log_extra`` (the :data:`SAMPLE_COLUMNS` of the
            completions table, see :func:`sample_columns`).
        on_error: what an unexpected exception while scoring does: ``"abstain"`` (the
            default) logs it and returns ``None`` for the whole batch, so one bad batch
            never stops training; ``"raise"`` re-raises it. A missing gold column
            always raises (a configuration error), and so does a component whose own
            failure policy is ``"raise"``.
    """

    def __init__(
        self,
        engine: RewardEngine,
        *,
        gold_column: str | Sequence[str] = DEFAULT_GOLD_COLUMNS,
        note_column: str | None = DEFAULT_NOTE_COLUMN,
        prefix: str = "",
        total_name: str = "icdreward",
        log_metrics: bool = True,
        on_error: OnError = "abstain",
    ) -> None:
        if on_error not in ("abstain", "raise"):
            raise ValueError(f"on_error must be 'abstain' or 'raise', not {on_error!r}")
        self.engine = engine
        self.gold_columns: tuple[str, ...] = (
            (gold_column,) if isinstance(gold_column, str) else tuple(gold_column)
        )
        if not self.gold_columns:
            raise ValueError("gold_column names no column")
        self.note_column = note_column
        self.log_metrics = log_metrics
        self.on_error: OnError = on_error
        self._functions = [RewardFunction(self, prefix + n, n) for n in engine.names]
        self._total = RewardFunction(self, total_name, None)
        names = [f.__name__ for f in [*self._functions, self._total]]
        if len(set(names)) != len(names):
            raise ValueError(f"reward function names collide: {names}")
        self._lock = threading.RLock()
        self._last: _Batch | None = None
        self._warned_note = False
        self._warned_prefill = False
        # Baselines taken now: what the judge did before training (its health check)
        # is not charged to the first batch.
        self._counters = CounterDeltas(engine.rewards)
        self.scorings = 0
        """How many times the engine scored a batch (one per TRL batch, whatever the mode)."""
        self.calls = 0
        """How many times a reward function was called."""

    # -- what to hand TRL --------------------------------------------------------

    @property
    def functions(self) -> list[RewardFunction]:
        """One reward function per component, in the engine's order (``reward_funcs``)."""
        return list(self._functions)

    @property
    def weights(self) -> list[float]:
        """The engine's component weights, aligned with :attr:`functions` (``reward_weights``).

        A weight-0 component is still logged by TRL: a metric, not part of the reward.
        """
        weights = self.engine.weights
        return [float(weights[f.component or ""]) for f in self._functions]

    @property
    def names(self) -> list[str]:
        """The names of :attr:`functions`, as TRL logs them (``rewards/<name>/mean``)."""
        return [f.__name__ for f in self._functions]

    @property
    def total(self) -> RewardFunction:
        """One reward function returning the engine's weighted total (weight 1 in TRL)."""
        return self._total

    @property
    def last_result(self) -> ScoreResult | None:
        """The result of the last scored batch (None before the first, or after a failure)."""
        return None if self._last is None else self._last.result

    # -- scoring -----------------------------------------------------------------

    def _rewards(
        self,
        function: RewardFunction,
        prompts: Sequence[object] | None,
        completions: Sequence[object],
        kwargs: dict[str, Any],
    ) -> list[float | None]:
        with self._lock:
            self.calls += 1
            size = len(completions)
            result = self._result(function.__name__, prompts, completions, kwargs)
            if result is None:
                return [None] * size
            if function.component is None:
                return _total_values(result)
            k = result.names.index(function.component)
            values: list[float] = result.components[function.component].tolist()
            included: list[bool] = result.included[:, k].tolist()
            return [v if ok else None for v, ok in zip(values, included, strict=True)]

    def _result(
        self,
        caller: str,
        prompts: Sequence[object] | None,
        completions: Sequence[object],
        kwargs: dict[str, Any],
    ) -> ScoreResult | None:
        texts = [completion_text(c) for c in completions]
        golds = self._golds(kwargs, len(texts))
        notes = self._notes(kwargs, len(texts))
        prompt_list = list(prompts) if prompts is not None else None
        groups = group_ids(prompt_list) if prompt_list is not None else None
        if groups is not None and len(groups) != len(texts):
            groups = None
        # Every dataset column reaches the components (ScoringBatch.extras).
        extras = {
            name: column
            for name, values in kwargs.items()
            if name not in _TRL_KWARGS
            and len(column := _per_sample(values, len(texts))) == len(texts)
        }
        # TRL calls the per-component functions one after another with the same batch:
        # the first one scores it, the others reuse the result. A function that already
        # read the cached batch starts a new one, even when the new batch is equal.
        key = (texts, golds, notes, groups, extras)
        is_total = caller == self._total.__name__
        last = self._last
        if last is not None and caller not in last.served and _same(last.key, key):
            last.served.add(caller)
            if last.result is not None and self.log_metrics and is_total:
                self._report(last.result, kwargs, batch=False, components=True)
            return last.result
        self._warn_prefill(prompt_list)
        result = self._score(texts, golds, notes, groups, extras)
        self._last = _Batch(key, result, {caller})
        if result is not None and self.log_metrics:
            self._report(result, kwargs, batch=True, components=is_total)
        elif self.log_metrics and callable(log_extra := kwargs.get("log_extra")):
            # Empty cells keep the completions table's columns aligned with its rows.
            for flag in SAMPLE_COLUMNS:
                log_extra(flag, [None] * len(texts))
        return result

    def _score(
        self,
        texts: list[object],
        golds: list[object],
        notes: list[str | None] | None,
        groups: list[int] | None,
        extras: dict[str, list[object]],
    ) -> ScoreResult | None:
        self.scorings += 1
        try:
            return self.engine.score(texts, golds, notes=notes, group_ids=groups, extras=extras)
        except ComponentFailure:
            raise  # a component's own policy is "raise": that is what the user asked for
        except Exception:
            if self.on_error == "raise":
                raise
            log.exception(
                "icdreward could not score a batch of %d completions; every reward "
                "function abstains (returns None) for it",
                len(texts),
            )
            return None

    def _golds(self, kwargs: Mapping[str, Any], size: int) -> list[object]:
        for column in self.gold_columns:
            if column in kwargs:
                return _per_sample(kwargs[column], size)
        columns = sorted(k for k in kwargs if k not in _TRL_KWARGS)
        raise KeyError(
            f"no gold column {' or '.join(map(repr, self.gold_columns))} among the dataset "
            f"columns TRL passed ({', '.join(columns) or 'none'}); keep it in the dataset "
            "(GRPOConfig(remove_unused_columns=False), the default) or pass "
            "TRLRewards(gold_column=...)"
        )

    def _notes(self, kwargs: Mapping[str, Any], size: int) -> list[str | None] | None:
        if self.note_column is None:
            return None
        values = kwargs.get(self.note_column)
        if values is None:
            if not self._warned_note:
                self._warned_note = True
                log.warning(
                    "no note column %r among the dataset columns; rewards that read the "
                    "admission note get none",
                    self.note_column,
                )
            return None
        return [v if isinstance(v, str) else None for v in _per_sample(values, size)]

    def _warn_prefill(self, prompts: list[object] | None) -> None:
        if self._warned_prefill or not prompts:
            return
        first = prompts[0]
        if (
            isinstance(first, (list, tuple))
            and first
            and isinstance(first[-1], Mapping)
            and first[-1].get("role") == "assistant"
        ):
            self._warned_prefill = True
            log.warning(
                "the prompts are chat messages ending with an assistant message (the "
                "prefilled <think>); TRL's GRPOTrainer renders them with "
                "add_generation_prompt=True, which closes that turn instead of continuing "
                "it. Render the prompts to text with icdreward.prompts.render_prompt."
            )

    def _report(
        self, result: ScoreResult, kwargs: Mapping[str, Any], *, batch: bool, components: bool
    ) -> None:
        """Metrics through TRL's ``log_metric`` and per-sample flags through ``log_extra``.

        ``batch``: the batch metrics, counter deltas and flags (once per scored batch);
        ``components``: every component's mean (for :attr:`total`, whose components TRL
        cannot see).
        """
        log_metric = kwargs.get("log_metric")
        log_extra = kwargs.get("log_extra")
        try:
            if callable(log_metric):
                metrics = batch_metrics(result) if batch else {}
                if batch:
                    metrics.update(self._counters.metrics())
                if components:
                    metrics.update(component_means(result))
                for name, value in metrics.items():
                    log_metric(name, value)
            if batch and callable(log_extra):
                for column, values in sample_columns(result).items():
                    log_extra(column, values)
        except Exception:  # logging must never cost a training step
            log.exception("reporting icdreward metrics to TRL failed")


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """``a == b``, False where the comparison itself fails (numpy arrays inside)."""
    try:
        return bool(a == b)
    except Exception:
        return False


def _per_sample(values: object, size: int) -> list[object]:
    """A column's values as a list; one value (not one per sample) is repeated."""
    if isinstance(values, Iterable) and not isinstance(values, (str, bytes, Mapping)):
        return list(values)
    return [values] * size


def _total_values(result: ScoreResult) -> list[float | None]:
    """The weighted totals; None for a sample every component abstained on, or whose
    total abstained (it did not fit float32 and the failure policy is ``"abstain"``)."""
    totals: list[float] = result.total.tolist()
    kept = result.total_included
    if result.components:
        kept = kept & result.included.any(dim=1)
    return [t if ok else None for t, ok in zip(totals, kept.tolist(), strict=True)]
