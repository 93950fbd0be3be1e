"""Score degenerate strategies against honest completions with one engine."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import attrs
import torch

from icdreward.audit._strategy import AuditRow, Strategy
from icdreward.batch import Feature
from icdreward.errors import ConfigError
from icdreward.golds import gold_codes
from icdreward.inputs import read_scoring_rows

if TYPE_CHECKING:
    from icdreward.engine import RewardEngine
    from icdreward.result import ScoreResult

__all__ = [
    "DEFAULT_TOLERANCE",
    "AuditReport",
    "HonestRow",
    "StrategyReport",
    "audit",
    "bundled_rows",
    "read_rows",
]

DEFAULT_TOLERANCE = 1e-6
"""A strategy within this much of the honest total counts as reaching it (float32 noise)."""


@attrs.frozen
class HonestRow:
    """An input row of an audit: a note, its gold code(s) and an honest completion."""

    note: str
    gold: object
    """One code (``"M51.16"``), several (``"M5116;E119"``, a list), as a gold column holds."""
    completion: str


@attrs.frozen
class StrategyReport:
    """How one strategy fared against the honest completions.

    Attributes:
        name: the strategy's name.
        description: what it does.
        rows: the number of rows it applied to.
        mean_score: its mean total.
        mean_margin: mean of (its total - the honest total); negative is good.
        reach_share: share of rows where it scored at least the honest total
            (within the audit's tolerance): any share above 0 is an exploit.
        worst_margin: its largest margin over the honest total.
        paid_by: component -> mean weighted margin, for the components that pay the
            strategy more than the honest completion on average (largest first).
        errors: rows where the strategy raised or returned something other than text.
        first_error: the first of those errors, as text.
        changed_code: rows left out because the engine read another code from the
            strategy's completion than from the honest one (the comparison is only
            meaningful for the same code; a strategy that changes it is broken).
    """

    name: str
    description: str
    rows: int
    mean_score: float
    mean_margin: float
    reach_share: float
    worst_margin: float
    paid_by: dict[str, float]
    errors: int = 0
    first_error: str | None = None
    changed_code: int = 0

    @property
    def exploits(self) -> bool:
        """Whether the strategy reached the honest score on some row."""
        return self.reach_share > 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self) | {"exploits": self.exploits}


@attrs.frozen
class AuditReport:
    """The result of :func:`audit`.

    Attributes:
        rows: rows audited (honest completions with a valid predicted code).
        skipped: input rows left out, because the engine read no valid code from their
            honest completion, or mapped it from free text (no strategy keeps "the same
            code" there).
        honest_mean: mean total of the honest completions.
        strategies: one report per strategy, in registration order.
        tolerance: the margin under which a strategy counts as reaching honest.
    """

    rows: int
    skipped: int
    honest_mean: float
    strategies: tuple[StrategyReport, ...]
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def exploited(self) -> tuple[StrategyReport, ...]:
        """The strategies that reached the honest score on at least one row."""
        return tuple(s for s in self.strategies if s.exploits)

    @property
    def passed(self) -> bool:
        """Whether honest completions beat every strategy on every row."""
        return not self.exploited

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``icdreward audit --json`` prints)."""
        return {
            "rows": self.rows,
            "skipped": self.skipped,
            "honest_mean": self.honest_mean,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "strategies": [s.to_dict() for s in self.strategies],
        }


def audit(
    engine: RewardEngine,
    rows: Sequence[HonestRow] | None = None,
    *,
    strategies: Sequence[Strategy] | None = None,
    only: Sequence[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> AuditReport:
    """Score every strategy against honest completions with ``engine``.

    Each strategy turns each honest row into a degenerate completion that keeps the
    honest predicted code; both are scored by the same engine, with the same gold
    codes and notes. A reward is sound when every honest completion scores strictly
    more than every strategy built from it.

    Args:
        engine: the reward to audit (any preset or configuration, plugins included).
        rows: honest rows; by default the bundled examples (:func:`bundled_rows`).
        strategies: the strategies to run; by default every strategy registered by the
            engine's plugins (``icdreward_register_strategies``).
        only: names of the strategies to run (of those given or registered).
        tolerance: a strategy within this much of the honest total reaches it.

    Raises:
        ConfigError: ``only`` names a strategy that is not registered.
    """
    chosen = _select(_strategies(engine) if strategies is None else list(strategies), only)
    given = bundled_rows() if rows is None else list(rows)
    honest = engine.score(
        [r.completion for r in given], [r.gold for r in given], [r.note for r in given]
    )
    kept = _audit_rows(engine, given, honest)
    keep = [row.index for row in kept]
    honest_total = honest.total[keep].double()
    honest_weighted = _weighted(honest, keep)
    reports = []
    for strategy in chosen:
        used, errors = _build(strategy, kept)
        report = _report(engine, strategy, kept, used, honest_total, honest_weighted, tolerance)
        if errors:
            report = attrs.evolve(report, errors=len(errors), first_error=errors[0])
        reports.append(report)
    return AuditReport(
        rows=len(kept),
        skipped=len(given) - len(kept),
        honest_mean=float(honest_total.mean()) if kept else 0.0,
        strategies=tuple(reports),
        tolerance=tolerance,
    )


def read_rows(path: str | os.PathLike[str]) -> list[HonestRow]:
    """Honest rows from a scoring file (``completion``, ``gold`` and ``note`` columns).

    Raises:
        InputFileError: the file is missing or malformed.
    """
    table = read_scoring_rows(path)
    notes = table.notes or (None,) * len(table)
    return [
        HonestRow(
            note=note or "",
            gold=gold,
            completion=completion if isinstance(completion, str) else "",
        )
        for completion, gold, note in zip(table.completions, table.golds, notes, strict=True)
    ]


def bundled_rows() -> list[HonestRow]:
    """The honest completions shipped with icdreward (four notes, several codes each)."""
    with resources.as_file(resources.files("icdreward.audit") / "honest.jsonl") as path:
        return read_rows(path)


def _strategies(engine: RewardEngine) -> list[Strategy]:
    table = engine.plugin_manager.registry.table("strategy")
    return [entry.cls() for entry in table.values()]


def _select(strategies: list[Strategy], only: Sequence[str] | None) -> list[Strategy]:
    if only is None:
        return strategies
    names = {s.name: s for s in strategies}
    unknown = [n for n in only if n not in names]
    if unknown:
        available = ", ".join(sorted(names)) or "none"
        raise ConfigError(
            "audit", "strategy", unknown[0], f"no such strategy (available: {available})"
        )
    return [names[n] for n in dict.fromkeys(only)]


def _audit_rows(engine: RewardEngine, rows: list[HonestRow], honest: ScoreResult) -> list[AuditRow]:
    parsed = honest.parsed
    normalize = engine.codeset.normalize
    # A code mapped from free text is not "the same code" once a strategy rewrites the
    # answer block: such rows are skipped like rows without a code.
    free_text = parsed.flag(Feature.FROM_FREE_TEXT).tolist()
    kept = []
    for k, row in enumerate(rows):
        code = parsed.codes[k]
        if not code or free_text[k] or not engine.codeset.is_valid(code):
            continue
        kept.append(
            AuditRow(
                note=row.note,
                golds=gold_codes(row.gold, normalize),
                completion=row.completion,
                think=parsed.think[k],
                answer=parsed.diagnosis[k].strip(),
                code=code,
                codeset=engine.codeset,
                index=k,
            )
        )
    return kept


def _build(strategy: Strategy, rows: list[AuditRow]) -> tuple[list[tuple[int, str]], list[str]]:
    # A third-party strategy that breaks on one row is reported, and the audit goes on.
    used: list[tuple[int, str]] = []
    errors: list[str] = []
    for k, row in enumerate(rows):
        try:
            text = strategy.build(row)
        except Exception as exc:
            errors.append(f"row {row.index}: {exc!r}")
            continue
        if isinstance(text, str):
            used.append((k, text))
        elif text is not None:
            errors.append(f"row {row.index}: build returned {type(text).__name__}, not str")
    return used, errors


def _weighted(result: ScoreResult, keep: Sequence[int]) -> dict[str, torch.Tensor]:
    # What each component adds to the total: its value times its weight where it was
    # included (an abstaining component adds nothing).
    out = {}
    for k, name in enumerate(result.names):
        column = result.components[name].double() * result.weights[name]
        out[name] = (column * result.included[:, k])[list(keep)]
    return out


def _report(
    engine: RewardEngine,
    strategy: Strategy,
    kept: list[AuditRow],
    used: list[tuple[int, str]],
    honest_total: torch.Tensor,
    honest_weighted: Mapping[str, torch.Tensor],
    tolerance: float,
) -> StrategyReport:
    if not used:
        return StrategyReport(strategy.name, strategy.description, 0, 0.0, 0.0, 0.0, 0.0, {})
    result = engine.score(
        [text for _, text in used],
        [kept[k].golds for k, _ in used],
        [kept[k].note for k, _ in used],
    )
    same = [i for i, (k, _) in enumerate(used) if result.parsed.codes[i] == kept[k].code]
    changed = len(used) - len(same)
    if not same:
        return StrategyReport(
            strategy.name, strategy.description, 0, 0.0, 0.0, 0.0, 0.0, {}, changed_code=changed
        )
    positions = [used[i][0] for i in same]
    rows = [kept[k] for k in positions]
    total = result.total.double()[same]
    margin = total - honest_total[positions]
    weighted = _weighted(result, same)
    paid = {
        name: float((weighted[name] - honest_weighted[name][positions]).mean())
        for name in result.names
        if name in honest_weighted
    }
    paid_by = dict(
        sorted(((n, m) for n, m in paid.items() if m > tolerance), key=lambda item: -item[1])
    )
    return StrategyReport(
        name=strategy.name,
        description=strategy.description,
        rows=len(rows),
        mean_score=float(total.mean()),
        mean_margin=float(margin.mean()),
        reach_share=float((margin >= -tolerance).double().mean()),
        worst_margin=float(margin.max()),
        paid_by=paid_by,
        changed_code=changed,
    )
