"""Constants shared by the code set modules (and re-exported by :mod:`icdreward.codeset`)."""

from __future__ import annotations

from typing import Final

__all__ = ["CODE_WIDTH", "DEFAULT_YEAR", "LEVELS"]

DEFAULT_YEAR: Final = 2026
"""Fiscal year of the code set used when none is configured (CDC FY2026, April 2026)."""

CODE_WIDTH: Final = 7
"""Longest normalized ICD-10-CM code (3-character category plus up to 4 more)."""

LEVELS: Final[tuple[str, ...]] = ("chapter", "block", "category", "sub4", "sub5", "sub6", "full")
"""Columns of :meth:`CodeSet.level_ids <icdreward.codeset.CodeSet.level_ids>`, coarse to fine."""
