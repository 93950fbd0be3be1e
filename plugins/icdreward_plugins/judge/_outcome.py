"""What the runner reports per prompt: a verdict, or why there is none."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Outcome"]


class Outcome(NamedTuple):
    """The result for one prompt.

    Attributes:
        score: the verdict, or None when the prompt failed.
        reason: why it failed (None on success).
        kind: the failure's cause (``"deadline"`` for a batch deadline), or "".
    """

    score: int | None
    reason: str | None = None
    kind: str = ""
