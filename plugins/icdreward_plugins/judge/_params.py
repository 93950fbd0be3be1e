"""The judge's configuration: the keys of ``[rewards.judge]``, validated by the engine.

Every knob that changes *what* the judge is asked (model, template, sampling,
constraint, ``extra_body``) is part of the cache key; knobs that only change *how*
it is asked (URLs, concurrency, timeouts, retries) are not, so adding a replica or
raising a timeout keeps the cache warm.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = ["JudgeParams", "resolve_api_key"]

Style = Literal["chat", "completions"]
Constraint = Literal["json_schema", "guided_choice", "structured_outputs", "none"]
ScoreMapping = Literal["raw", "unit", "centered"]
Unreachable = Literal["warn", "raise", "ignore"]
Backend = Literal["auto", "httpx", "aiohttp"]


def _check_urls(instance: Any, attribute: Any, value: str | tuple[str, ...]) -> None:
    urls = (value,) if isinstance(value, str) else value
    if not urls:
        raise ValueError("base_url: give at least one URL")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: {url!r} is not an http:// or https:// URL")


def _positive_or_none(instance: Any, attribute: Any, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number of seconds or null")


_positive_int = attrs.validators.gt(0)
_non_negative_int = attrs.validators.ge(0)
_positive = attrs.validators.gt(0.0)
_non_negative = attrs.validators.ge(0.0)


@attrs.frozen
class JudgeParams:
    """Parameters of the ``judge`` reward (the keys of ``[rewards.judge]``).

    Endpoint:
        base_url: the OpenAI-compatible base URL (``http://host:8000/v1``), or a list
            of replicas of the same judge; requests go to the least busy replica and
            a retry prefers another one.
        model: the served model name (as ``GET /v1/models`` lists it).
        api_key: the API key; never shown in ``repr`` or logs. Prefer the environment
            variable named by ``api_key_env`` (default ``OPENAI_API_KEY``); without
            either, ``"EMPTY"`` is sent (what vLLM expects when it has no key).
        style: ``"chat"`` (``/chat/completions``, the model's chat template) or
            ``"completions"`` (``/completions`` with the rendered prompt as text).
        http_backend: ``"aiohttp"`` (the openai client's aiohttp transport, about twice
            as cheap per request), ``"httpx"`` (its default), or ``"auto"``: aiohttp
            when installed (``pip install "openai[aiohttp]"``).

    Prompt and answer:
        template: a packaged template name (``"clinical_validity_v1"``) or the path of
            a ``.toml`` template file; its name and version are part of the cache key.
        constrained: how the answer is constrained: ``"json_schema"`` (OpenAI
            ``response_format``, vLLM and SGLang support it), ``"guided_choice"``
            (vLLM before 0.12), ``"structured_outputs"`` (vLLM 0.10.2 and later,
            ``{"choice": [...]}``) or ``"none"`` (plain instructions, lenient parsing).
        temperature, seed, max_tokens: sampling; raise ``max_tokens`` for a reasoning
            judge that thinks before it answers.
        extra_body: extra JSON fields sent with every request (e.g.
            ``{chat_template_kwargs = {enable_thinking = false}}``).
        max_note_chars, max_trace_chars: longer texts are clipped (head and tail kept).

    Cost and robustness:
        max_concurrency: requests in flight at once, over all replicas and callers.
        timeout: seconds per HTTP request. deadline: seconds per batch (null: none);
            samples still unanswered then are reported as failures.
        retries: retries after the first attempt (timeouts, connection errors, 429,
            5xx, malformed answers, unparseable or out-of-range verdicts; never other
            4xx). backoff, backoff_max: exponential backoff with jitter, in seconds;
            a 429's ``Retry-After`` is honoured up to ``retry_after_max``.
        cache_size: verdicts kept in memory (LRU; 0 switches the memory cache off).
        cache_path: SQLite file that keeps verdicts across runs (null: none).

    Score:
        scale: the reward is ``scale * mapped(verdict)``.
        mapping: ``"raw"`` (the verdict itself, 1-5), ``"unit"`` (0-1) or
            ``"centered"`` (-1 to 1), from the template's score range.
        not_sent: the mapped value of samples that are not sent (empty trace or no
            valid code); the published recipe's -0.8 is ``scale = 0.8, not_sent = -1``.

    Start-up:
        on_unreachable: what a judge that does not answer ``GET /models`` when the
            engine starts gives: ``"warn"`` (a warning naming the URL), ``"raise"``
            (:class:`JudgeUnreachableError`) or ``"ignore"`` (no check at all).
        health_timeout: seconds for that check.
    """

    base_url: str | tuple[str, ...] = attrs.field(
        default="http://127.0.0.1:8000/v1", validator=_check_urls
    )
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    api_key: str | None = attrs.field(default=None, repr=False)
    api_key_env: str = "OPENAI_API_KEY"
    style: Style = "chat"
    http_backend: Backend = "auto"
    template: str = "clinical_validity_v1"
    constrained: Constraint = "json_schema"
    temperature: float = attrs.field(default=0.0, validator=_non_negative)
    seed: int | None = 0
    max_tokens: int = attrs.field(default=32, validator=_positive_int)
    extra_body: Mapping[str, Any] = attrs.field(factory=dict)
    max_note_chars: int = attrs.field(default=6000, validator=_positive_int)
    max_trace_chars: int = attrs.field(default=6000, validator=_positive_int)
    max_concurrency: int = attrs.field(default=64, validator=_positive_int)
    timeout: float = attrs.field(default=30.0, validator=_positive)
    deadline: float | None = attrs.field(default=300.0, validator=_positive_or_none)
    retries: int = attrs.field(default=3, validator=_non_negative_int)
    backoff: float = attrs.field(default=0.25, validator=_non_negative)
    backoff_max: float = attrs.field(default=8.0, validator=_non_negative)
    retry_after_max: float = attrs.field(default=30.0, validator=_non_negative)
    cache_size: int = attrs.field(default=100_000, validator=_non_negative_int)
    cache_path: str | None = None
    scale: float = 0.8
    mapping: ScoreMapping = "raw"
    not_sent: float = -1.0
    on_unreachable: Unreachable = "warn"
    health_timeout: float = attrs.field(default=2.0, validator=_positive)

    @property
    def urls(self) -> tuple[str, ...]:
        """The replica base URLs, without a trailing slash."""
        urls = (self.base_url,) if isinstance(self.base_url, str) else self.base_url
        return tuple(url.rstrip("/") for url in urls)


def resolve_api_key(params: JudgeParams) -> str:
    """The key to send: the configured one, else ``$api_key_env``, else ``"EMPTY"``."""
    return params.api_key or os.environ.get(params.api_key_env) or "EMPTY"
