"""What one reward component produced for a batch: values, failure flags and reasons.

A component returns a tensor (every sample scored) or a
:class:`~icdreward.RewardOutput` (some samples could not be scored); the engine turns
either into an :class:`Outcome` and never trusts its shape, dtype or device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import attrs
import torch

from icdreward.components import RewardOutput

__all__ = ["Outcome", "failure_reason", "no_failures", "to_outcome", "with_non_finite_failed"]


@attrs.frozen(eq=False)
class Outcome:
    """One component's column for a batch.

    Attributes:
        values: ``float32 [B]`` on the CPU; entries of failed samples are ignored.
        failed: ``bool [B]``, True where the sample could not be scored.
        reasons: per sample, why it failed (None where it did not).
    """

    values: torch.Tensor
    failed: torch.Tensor
    reasons: tuple[str | None, ...]

    @classmethod
    def failure(cls, size: int, reason: str) -> Outcome:
        """Every one of ``size`` samples failed for ``reason``."""
        return cls(torch.zeros(size), torch.ones(size, dtype=torch.bool), (reason,) * size)

    @classmethod
    def concat(cls, parts: Sequence[Outcome]) -> Outcome:
        """The outcomes of consecutive parts of a batch, joined in order."""
        return cls(
            torch.cat([p.values for p in parts]),
            torch.cat([p.failed for p in parts]),
            tuple(r for p in parts for r in p.reasons),
        )


def to_outcome(out: torch.Tensor | RewardOutput | Sequence[float], size: int) -> Outcome:
    """A component's return value as an :class:`Outcome` for a batch of ``size``.

    A return value of the wrong length fails the whole batch with a reason saying so.
    """
    if isinstance(out, RewardOutput):
        values = _cpu(out.values, torch.float32)
        failed = _cpu(out.failed, torch.bool)
        reasons = tuple(out.reasons)
        if failed.numel() != size or len(reasons) != size:
            return Outcome.failure(size, f"returned failure flags for {failed.numel()} samples")
    else:
        values = _cpu(out, torch.float32)
        failed = no_failures(size)
        reasons = (None,) * size
    if values.numel() != size:
        return Outcome.failure(size, f"returned {values.numel()} values for {size} samples")
    # Finiteness is checked once for all components, when they are combined.
    return Outcome(values, failed, reasons)


def failure_reason(exc: BaseException) -> str:
    """The reason recorded for samples a component raised ``exc`` on."""
    return f"{type(exc).__name__}: {exc}"


@functools.lru_cache(maxsize=8)
def no_failures(size: int) -> torch.Tensor:
    """A shared all-False ``bool [size]`` (its identity says "nothing failed")."""
    # Shared and never written to: outcomes are combined into new tensors.
    return torch.zeros(size, dtype=torch.bool)


def with_non_finite_failed(outcome: Outcome, finite: torch.Tensor) -> Outcome:
    """``outcome`` with its NaN and infinite values turned into failures."""
    bad = ~finite & ~outcome.failed
    reasons = tuple(
        "returned a non-finite value" if b else r
        for r, b in zip(outcome.reasons, bad.tolist(), strict=True)
    )
    return Outcome(torch.where(finite, outcome.values, 0.0), outcome.failed | bad, reasons)


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
