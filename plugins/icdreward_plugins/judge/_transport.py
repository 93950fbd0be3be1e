"""One HTTP attempt against one judge replica, through the official ``openai`` client.

This is the only module that talks to the network during scoring (it is imported
on the first request, so loading the plugin does not pay for importing
``openai``). It owns one ``AsyncOpenAI`` client per replica; the clients are
created inside the judge's event loop and only ever used there, because an async
client is bound to the loop it first runs on.

Requests go through ``client.post(path, body=..., cast_to=object)``, the client's
documented way to send a body as-is: the judge needs vLLM fields the typed methods
do not declare (``guided_choice``, ``structured_outputs``, ``response_format`` on
``/completions``), and it skips the client's per-request schema walk, which costs
more than the rest of the request. The client's own retries are off: retrying is
the runner's job, with its own budget and deadline.

Every failure becomes an :class:`AttemptFailed` that says whether a retry can help
(timeouts, connection errors, 429, 5xx, malformed bodies) or not (other 4xx).
"""

from __future__ import annotations

import contextlib
import email.utils
import importlib.util
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import openai

from ._params import JudgeParams

__all__ = ["AttemptFailed", "Completion", "Transport", "retry_after_seconds", "root_cause"]


class AttemptFailed(Exception):
    """One attempt failed.

    Attributes:
        reason: what happened, for the sample's failure reason.
        kind: the :class:`JudgeStats` counter it increments.
        retryable: whether another attempt may succeed.
        retry_after: seconds the server asked to wait (429 ``Retry-After``), if any.
    """

    def __init__(
        self, reason: str, *, kind: str, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


class Completion(NamedTuple):
    """What one successful attempt returned."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class Transport:
    """The replicas' clients; call only from the judge's event loop."""

    def __init__(self, params: JudgeParams, api_key: str) -> None:
        self.urls = params.urls
        self._style = params.style
        self._clients = [self._client(url, params, api_key) for url in self.urls]
        self._busy = [0] * len(self.urls)
        self._turn = 0

    @staticmethod
    def _client(url: str, params: JudgeParams, api_key: str) -> openai.AsyncOpenAI:
        http_client = None
        if params.http_backend != "httpx":
            factory = getattr(openai, "DefaultAioHttpClient", None)
            if factory is not None and importlib.util.find_spec("aiohttp") is not None:
                http_client = factory(timeout=params.timeout)
            elif params.http_backend == "aiohttp":
                raise RuntimeError(
                    "http_backend = 'aiohttp' needs the openai client's aiohttp extra: "
                    'pip install "openai[aiohttp]"'
                )
        return openai.AsyncOpenAI(
            base_url=url,
            api_key=api_key,
            max_retries=0,
            timeout=params.timeout,
            http_client=http_client,
        )

    def pick(self, avoid: int | None = None) -> int:
        """The least busy replica, rotating among ties, other than ``avoid`` if possible."""
        count = len(self._busy)
        order = [(self._turn + i) % count for i in range(count)]
        self._turn = (self._turn + 1) % count
        if avoid is not None and count > 1:
            order.remove(avoid)
        return min(order, key=self._busy.__getitem__)

    async def send(
        self, replica: int, path: str, body: Mapping[str, Any], timeout: float
    ) -> Completion:
        """One attempt on ``replica``: the answer text and token counts.

        Raises:
            AttemptFailed: anything went wrong (see its ``retryable``).
        """
        url = self.urls[replica]
        self._busy[replica] += 1
        started = time.monotonic()
        try:
            data = await self._clients[replica].post(
                path, body=dict(body), cast_to=object, options={"timeout": timeout}
            )
        except openai.APITimeoutError as exc:
            if time.monotonic() - started < 0.9 * timeout:
                # Some transports (aiohttp) report a refused connection as a timeout.
                reason = f"{url}: connection failed ({root_cause(exc)})"
                raise AttemptFailed(reason, kind="connection_errors", retryable=True) from None
            raise AttemptFailed(
                f"{url}: no answer within {timeout:.3g} s", kind="timeouts", retryable=True
            ) from None
        except openai.APIConnectionError as exc:
            raise AttemptFailed(
                f"{url}: connection failed ({root_cause(exc)})",
                kind="connection_errors",
                retryable=True,
            ) from None
        except openai.APIStatusError as exc:
            raise _status_failure(url, exc) from None
        except ValueError as exc:  # a 200 whose body is not JSON
            reason = f"{url}: malformed response ({type(exc).__name__})"
            raise AttemptFailed(reason, kind="malformed", retryable=True) from None
        except openai.OpenAIError as exc:
            raise AttemptFailed(
                f"{url}: {type(exc).__name__}: {exc}", kind="client_errors", retryable=False
            ) from None
        finally:
            self._busy[replica] -= 1
        return _completion(url, data, self._style)

    async def aclose(self) -> None:
        """Close every client's connections."""
        for client in self._clients:
            with contextlib.suppress(Exception):  # closing must not mask the caller's outcome
                await client.close()


def root_cause(exc: BaseException) -> str:
    """The innermost cause of a client error, e.g. ``ConnectionRefusedError: ...``."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _status_failure(url: str, exc: openai.APIStatusError) -> AttemptFailed:
    status = exc.status_code
    body = exc.body
    detail = body.get("message") if isinstance(body, dict) else None
    message = " ".join(str(detail or exc.message or exc).split())[:200]
    reason = f"{url}: HTTP {status} ({message})"
    if status == 429:
        wait = retry_after_seconds(exc.response.headers)
        return AttemptFailed(reason, kind="rate_limited", retryable=True, retry_after=wait)
    if status >= 500:
        return AttemptFailed(reason, kind="server_errors", retryable=True)
    return AttemptFailed(reason, kind="client_errors", retryable=False)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    >>> retry_after_seconds({"retry-after": "2"}), retry_after_seconds({"retry-after-ms": "150"})
    (2.0, 0.15)
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _completion(url: str, data: object, style: str) -> Completion:
    where = "choices[0].message.content" if style == "chat" else "choices[0].text"
    try:
        if not isinstance(data, dict):
            raise TypeError(type(data).__name__)
        choice = data["choices"][0]
        text = choice["message"]["content"] if style == "chat" else choice["text"]
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        finish = choice.get("finish_reason")
    except (LookupError, TypeError, ValueError, AttributeError):
        raise AttemptFailed(
            f"{url}: malformed response (no {where})", kind="malformed", retryable=True
        ) from None
    if text is not None and not isinstance(text, str):
        raise AttemptFailed(
            f"{url}: malformed response ({where} is not text)", kind="malformed", retryable=True
        )
    return Completion(text or "", str(finish or ""), prompt_tokens, completion_tokens)
