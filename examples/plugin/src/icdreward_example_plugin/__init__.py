"""An example icdreward plugin: reward a trace that names the code it predicts.

It registers one reward component, ``code_mentioned``. A trace that arrives at
``M51.16`` should say so, or at least talk about what M51.16 *is*: the component
pays ``code`` when the first think trace names the predicted code (``M51.16`` or
``M5116``, any case) and up to ``keywords`` for the key words of the code's
description that the trace contains. A completion without a valid code gets
``no_code``.

It also ships the attack its own component invites, ``name_the_code``: a trace
that only names the code and its description. ``icdreward audit`` runs it beside the
built-in strategies and shows whether ``code_mentioned`` pays it more than honest
reasoning does.

Installed, the plugin is found through the ``icdreward`` entry-point group and
configured like any built-in component::

    preset = "default"

    [rewards.code_mentioned]
    weight = 0.5
    code = 1.0
    keywords = 0.5
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import torch
from icdreward import ComponentContext, Feature, Reward, ScoringBatch
from icdreward.audit import AuditRow, Strategy
from icdreward.plugin import Register, hookimpl

__all__ = [
    "CodeMentioned",
    "CodeMentionedParams",
    "NameTheCode",
    "icdreward_register_rewards",
    "icdreward_register_strategies",
]

_STEM = 6
"""A key word counts when its first six letters appear ("radiculopathy" ~ "radicular")."""
_MIN_WORD = 4
_CACHE_SIZE = 4096
_STOPWORDS = frozenset(
    {
        "with", "without", "other", "unspecified", "specified", "elsewhere", "classified",
        "region", "site", "type", "encounter", "initial", "subsequent", "sequela",
        "left", "right", "bilateral", "part", "than", "more", "less", "acute", "chronic",
    }
)  # fmt: skip


@attrs.frozen
class CodeMentionedParams:
    """Parameters of the ``code_mentioned`` reward (the keys of ``[rewards.code_mentioned]``).

    Attributes:
        code: added when the trace names the predicted code.
        keywords: added in full when the trace contains every key word of the
            code's description, in proportion to the share it contains.
        max_keywords: how many key words of the description count (the longest).
        no_code: the value of a completion without a valid code.
        max_chars: only the first ``max_chars`` characters of a trace are searched.
    """

    code: float = 1.0
    keywords: float = 0.5
    max_keywords: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    no_code: float = 0.0
    max_chars: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))


class CodeMentioned(Reward):
    """Rewards a think trace that names the predicted code or its key words.

    Values lie in ``[0, code + keywords]`` for a valid code, ``no_code`` otherwise.
    Codes the code set does not describe (possible with ``validate = "pattern"``)
    can only earn ``code``.
    """

    name = "code_mentioned"
    Params = CodeMentionedParams

    def __init__(self, params: CodeMentionedParams, context: ComponentContext) -> None:
        super().__init__(params, context)
        # Per code, built once: the n samples of a GRPO group mostly share a code.
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._keywords: dict[str, tuple[str, ...]] = {}

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One value per sample, from the parsed trace and code (no re-parsing)."""
        p: CodeMentionedParams = self.params
        valid = batch.parsed.flag(Feature.CODE_VALID).tolist()
        values: list[float] = []
        for ok, code, trace in zip(valid, batch.parsed.codes, batch.parsed.think, strict=True):
            if not ok or not code:
                values.append(p.no_code)
                continue
            text = trace[: p.max_chars]
            value = 0.0
            if p.code and self._pattern(code).search(text):
                value += p.code
            if p.keywords:
                words = self._keywords_of(code)
                if words:
                    lower = text.lower()
                    value += p.keywords * sum(w in lower for w in words) / len(words)
            values.append(value)
        return torch.tensor(values, dtype=torch.float32)

    def _pattern(self, code: str) -> re.Pattern[str]:
        pattern = self._patterns.get(code)
        if pattern is None:
            # M5116 matches "M51.16" and "m5116", but not "M51.169" or "XM5116".
            body = re.escape(code[:3]) + (r"\.?" + re.escape(code[3:]) if len(code) > 3 else "")
            pattern = re.compile(rf"(?<![0-9A-Za-z]){body}(?!\.?[0-9A-Za-z])", re.IGNORECASE)
            _remember(self._patterns, code, pattern)
        return pattern

    def _keywords_of(self, code: str) -> tuple[str, ...]:
        words = self._keywords.get(code)
        if words is None:
            description = self.context.codeset.describe(code) or ""
            found = re.findall(r"[a-z]+", description.lower())
            content = [w for w in dict.fromkeys(found) if len(w) >= _MIN_WORD]
            content = [w for w in content if w not in _STOPWORDS]
            content.sort(key=len, reverse=True)
            stems = dict.fromkeys(w[:_STEM] for w in content[: self.params.max_keywords])
            words = tuple(stems)
            _remember(self._keywords, code, words)
        return words


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    """Called once by icdreward's plugin manager: register the component classes."""
    register(CodeMentioned)


class NameTheCode(Strategy):
    """The degenerate trace ``code_mentioned`` invites: the code and its description."""

    name = "name_the_code"
    description = "the trace only names the code and its description"

    def build(self, row: AuditRow) -> str | None:
        words = row.codeset.describe(row.code) or ""
        return row.completion_with(think=f"{row.answer}: {words}.")


@hookimpl
def icdreward_register_strategies(register: Register) -> None:
    """Called by ``icdreward audit``: register the strategies that attack this plugin."""
    register(NameTheCode)
