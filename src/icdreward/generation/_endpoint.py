"""Generation through an OpenAI-compatible chat endpoint (``vllm serve MODEL``).

The HTTP side is the core's :mod:`icdreward.openai_client`, which the LLM judge uses
too: one :class:`~icdreward.openai_client.OpenAIClient` (the official ``openai``
``AsyncOpenAI`` client, its own retries off) and
:func:`~icdreward.openai_client.send_with_retries`, under one concurrency cap (a
semaphore over all requests), with per-request timeouts and retries with exponential
backoff and jitter that honour a 429's ``Retry-After``.

Each sample is one request for the row's messages (:func:`icdreward.prompts.build_messages`)
with ``continue_final_message = true`` and ``add_generation_prompt = false`` (the
fields vLLM reads), so the model continues the prefilled ``<think>``. Sample ``k``
of a row is sent with ``seed + k``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from icdreward.openai_client import (
    HttpBackend,
    OpenAIClient,
    RequestFailed,
    RetryPolicy,
    send_with_retries,
)
from icdreward.prompts import build_messages

from ._params import SamplingParams
from ._rows import NoteRow

__all__ = ["EndpointOptions", "generate_endpoint", "request_body"]

CHAT_PATH = "/chat/completions"


@attrs.frozen
class EndpointOptions:
    """How the endpoint is asked (none of it changes what is sampled).

    Attributes:
        url: the OpenAI-compatible base URL (``http://host:8000/v1``).
        api_key: sent as a bearer token (vLLM without a key accepts anything).
        concurrency: requests in flight at once.
        timeout: seconds per request.
        retries: retries after the first attempt (timeouts, connection errors, 429,
            5xx and malformed answers; never other 4xx).
        backoff, backoff_max: exponential backoff with jitter, in seconds.
        retry_after_max: the longest ``Retry-After`` honoured, in seconds.
        http_backend: the client's HTTP transport: ``"aiohttp"``, ``"httpx"`` or
            ``"auto"`` (aiohttp when installed), as the judge's ``http_backend``.
    """

    url: str
    api_key: str = "EMPTY"
    concurrency: int = attrs.field(default=32, validator=attrs.validators.gt(0))
    timeout: float = attrs.field(default=600.0, validator=attrs.validators.gt(0.0))
    retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    backoff: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 30.0
    http_backend: HttpBackend = "auto"

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retries and backoff of these options."""
        return RetryPolicy(
            retries=self.retries,
            backoff=self.backoff,
            backoff_max=self.backoff_max,
            retry_after_max=self.retry_after_max,
        )


def request_body(note: str, params: SamplingParams, sample: int) -> dict[str, Any]:
    """The JSON body of the chat request for sample ``sample`` of ``note``."""
    body: dict[str, Any] = {
        "model": params.model,
        "messages": build_messages(note),
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "n": 1,
        # vLLM: continue the prefilled assistant turn instead of opening a new one.
        "continue_final_message": True,
        "add_generation_prompt": False,
    }
    if params.seed is not None:
        body["seed"] = params.seed + sample
    return body


def generate_endpoint(
    rows: Sequence[NoteRow],
    params: SamplingParams,
    options: EndpointOptions,
    on_done: Callable[[NoteRow, list[str]], None],
    on_failed: Callable[[NoteRow, str], None],
) -> None:
    """Generate ``params.n`` completions for every row; report each row as it finishes.

    ``on_done(row, completions)`` gets a row whose samples all succeeded,
    ``on_failed(row, reason)`` one where a sample failed after its retries. Both are
    called on the generating thread, one row at a time.
    """
    asyncio.run(_generate(rows, params, options, on_done, on_failed))


async def _generate(
    rows: Sequence[NoteRow],
    params: SamplingParams,
    options: EndpointOptions,
    on_done: Callable[[NoteRow, list[str]], None],
    on_failed: Callable[[NoteRow, str], None],
) -> None:
    client = OpenAIClient(
        [options.url],
        options.api_key,
        timeout=options.timeout,
        http_backend=options.http_backend,
    )
    asker = _Asker(client, options)
    window = max(2 * options.concurrency, 1)
    pending: set[asyncio.Task[tuple[NoteRow, list[str] | str]]] = set()
    try:
        for row in rows:
            if len(pending) >= window:
                pending = await _drain(pending, on_done, on_failed, asyncio.FIRST_COMPLETED)
            pending.add(asyncio.create_task(asker.row(row, params)))
        while pending:
            pending = await _drain(pending, on_done, on_failed, asyncio.FIRST_COMPLETED)
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        await client.aclose()


async def _drain(
    pending: set[asyncio.Task[tuple[NoteRow, list[str] | str]]],
    on_done: Callable[[NoteRow, list[str]], None],
    on_failed: Callable[[NoteRow, str], None],
    when: str,
) -> set[asyncio.Task[tuple[NoteRow, list[str] | str]]]:
    done, rest = await asyncio.wait(pending, return_when=when)
    for task in done:
        row, outcome = task.result()
        if isinstance(outcome, str):
            on_failed(row, outcome)
        else:
            on_done(row, outcome)
    return rest


class _Asker:
    """Requests with a shared concurrency cap and the options' retry policy."""

    def __init__(self, client: OpenAIClient, options: EndpointOptions) -> None:
        self._client = client
        self._options = options
        self._policy = options.retry_policy
        self._semaphore = asyncio.Semaphore(options.concurrency)
        self._random = random.Random()

    async def row(self, row: NoteRow, params: SamplingParams) -> tuple[NoteRow, list[str] | str]:
        samples = [self.sample(request_body(row.note, params, k)) for k in range(params.n)]
        results = await asyncio.gather(*samples, return_exceptions=True)
        texts: list[str] = []
        for result in results:
            if isinstance(result, RequestFailed):
                return row, result.reason
            if isinstance(result, BaseException):  # a bug: only this row fails
                return row, f"request crashed: {type(result).__name__}: {result}"
            texts.append(result)
        return row, texts

    async def sample(self, body: dict[str, Any]) -> str:
        answer = await send_with_retries(
            self._client,
            CHAT_PATH,
            body,
            policy=self._policy,
            timeout=self._options.timeout,
            semaphore=self._semaphore,
            rng=self._random,
        )
        return answer.text
