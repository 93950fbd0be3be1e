"""The sampling parameters of a generation run, recorded with every sample."""

from __future__ import annotations

from typing import Any

import attrs

from icdreward.prompts import PROMPT_VERSION

__all__ = ["SamplingParams"]


@attrs.frozen
class SamplingParams:
    """How completions are sampled (the ``sampling`` object of every output line).

    Attributes:
        model: the served model name (endpoint) or the model path (transformers).
        temperature: 0 samples greedily.
        top_p: nucleus sampling mass.
        max_tokens: the most tokens generated per completion.
        seed: the base seed; sample ``k`` of a row is drawn with ``seed + k`` on an
            endpoint (None: no seed is sent).
        n: samples per row (one GRPO-style group per row).
    """

    model: str
    temperature: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    top_p: float = attrs.field(
        default=1.0, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)]
    )
    max_tokens: int = attrs.field(default=1024, validator=attrs.validators.gt(0))
    seed: int | None = 0
    n: int = attrs.field(default=1, validator=attrs.validators.gt(0))

    def to_record(self) -> dict[str, Any]:
        """The ``sampling`` object written with every sample."""
        return {
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "n": self.n,
            "prompt_version": PROMPT_VERSION,
        }
