"""Base classes for the components a plugin registers: rewards and parsers.

A component is a class with a ``name``, an attrs ``Params`` class describing its
configuration, and one method doing the work for a whole batch. The engine
validates the configuration into ``Params`` (so a typo is a clear
:class:`~icdreward.errors.ConfigError`), builds the component once and calls it
per batch.

Example, a reward paying 1 for every sample whose trace mentions the code::

    import attrs
    import torch
    from icdreward import Reward, ScoringBatch

    @attrs.frozen
    class MentionParams:
        bonus: float = 1.0

    class MentionsCode(Reward):
        name = "mentions_code"
        Params = MentionParams

        def score(self, batch: ScoringBatch) -> torch.Tensor:
            hits = [bool(c) and c in t for c, t in zip(batch.parsed.codes, batch.parsed.think)]
            return torch.tensor(hits, dtype=torch.float32) * self.params.bonus
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs
import torch

if TYPE_CHECKING:
    from icdreward.batch import ParsedBatch, ScoringBatch
    from icdreward.codeset import CodeSet

__all__ = ["ComponentContext", "NoParams", "Parser", "Reward", "RewardOutput"]


@attrs.frozen
class NoParams:
    """Parameters of a component that takes none."""


@attrs.frozen
class ComponentContext:
    """What the engine hands every component when it builds it.

    Attributes:
        codeset: the ICD-10-CM code set the engine uses.
        config_source: where the engine's configuration came from (for messages).
    """

    codeset: CodeSet
    config_source: str = "<dict>"


@attrs.frozen
class RewardOutput:
    """A reward's result when some samples could not be scored.

    Return a plain ``float`` tensor ``[B]`` when every sample got a score. Return a
    :class:`RewardOutput` to report *infrastructure* failures (a judge that timed
    out, an unparseable verdict): those samples are flagged and the engine's failure
    policy decides what they count (a fallback value, abstain, or raise). A bad
    completion is not a failure; it is a low score.

    Attributes:
        values: ``float [B]``; entries of failed samples are ignored.
        failed: ``bool [B]``, True where the sample could not be scored.
        reasons: per sample, why it failed (None where it did not).
    """

    values: torch.Tensor
    failed: torch.Tensor
    reasons: Sequence[str | None]


class Reward:
    """Base class of reward components.

    Subclasses set :attr:`name` and optionally :attr:`Params`, and implement
    :meth:`score` (or :meth:`ascore` for I/O-bound rewards, with
    :attr:`is_async` set to True). A reward returns raw values; the engine applies
    the configured weight.
    """

    name: ClassVar[str]
    """The name the component is registered and configured under."""
    Params: ClassVar[type[Any]] = NoParams
    """attrs class of the component's parameters (validated from the config)."""
    is_async: ClassVar[bool] = False
    """True when the engine should await :meth:`ascore` instead of calling :meth:`score`."""
    default_on_failure: ClassVar[Literal["fallback", "abstain", "raise"] | None] = None
    """The failure policy of this component unless its configuration sets ``on_failure``
    (None: the engine-wide ``[failure]`` policy). A component whose failures are outages,
    like a judge, abstains by default so that an outage never counts as a score."""

    def __init__(self, params: Any, context: ComponentContext) -> None:
        self.params = params
        self.context = context

    def score(self, batch: ScoringBatch) -> torch.Tensor | RewardOutput:
        """Score the whole batch: a ``float`` tensor ``[B]`` or a :class:`RewardOutput`."""
        raise NotImplementedError(f"{type(self).__name__} implements neither score nor ascore")

    async def ascore(self, batch: ScoringBatch) -> torch.Tensor | RewardOutput:
        """Asynchronous form of :meth:`score`; the default calls :meth:`score`."""
        return self.score(batch)

    def close(self) -> None:
        """Release resources (connections, caches); called by :meth:`RewardEngine.close`."""

    async def aclose(self) -> None:
        """Asynchronous :meth:`close`, run on the event loop the component used.

        Async components that hold clients bound to a loop (an ``AsyncOpenAI``) close
        them here; the default calls :meth:`close`.
        """
        self.close()


class Parser:
    """Base class of output parsers: raw completions in, one :class:`ParsedBatch` out.

    A parser must accept *anything* as a completion (None, bytes, numbers, dicts,
    megabytes of text) and run in time linear in the input size; a bad completion
    becomes flags in the parsed batch, never an exception.
    """

    name: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams

    def __init__(self, params: Any, context: ComponentContext) -> None:
        self.params = params
        self.context = context

    def parse(self, completions: Sequence[object]) -> ParsedBatch:
        """Parse a batch of completions."""
        raise NotImplementedError
