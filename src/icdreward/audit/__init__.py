"""Reward integrity: does a reward pay any degenerate strategy as much as honesty?

A GRPO policy optimises whatever the reward pays for. :func:`audit` takes honest
completions (a note, its gold code(s) and a completion that reasons about the note),
turns each into degenerate completions that keep the same predicted code (the note
copied into the trace, descriptions stuffed, the answer hedged with several codes,
...), scores both with the same engine and reports, per strategy, its mean score, its
mean margin to honest, the share of rows where it reaches honest and the components
that pay it. Strategies are registered by plugins through the
``icdreward_register_strategies`` hook; the built-in ones come from the
``strategies`` plugin.

>>> from icdreward import RewardEngine
>>> report = audit(RewardEngine.from_preset("default"), only=["copy_note"])
>>> report.strategies[0].name, report.strategies[0].rows == report.rows
('copy_note', True)
"""

from __future__ import annotations

from icdreward.audit._run import (
    DEFAULT_TOLERANCE,
    AuditReport,
    HonestRow,
    StrategyReport,
    audit,
    bundled_rows,
    read_rows,
)
from icdreward.audit._strategy import AuditRow, Strategy

__all__ = [
    "DEFAULT_TOLERANCE",
    "AuditReport",
    "AuditRow",
    "HonestRow",
    "Strategy",
    "StrategyReport",
    "audit",
    "bundled_rows",
    "read_rows",
]
