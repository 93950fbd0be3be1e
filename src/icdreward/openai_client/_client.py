"""One HTTP attempt against one replica of an OpenAI-compatible endpoint.

Requests go through ``client.post(path, body=..., cast_to=object)``, the official
client's documented way to send a body as-is: callers need vLLM fields the typed
methods do not declare (``guided_choice``, ``structured_outputs``,
``continue_final_message``, ``response_format`` on ``/completions``), and it skips the
client's per-request schema walk, which costs more than the rest of the request.
The client's own retries are off: retrying is the caller's job, with its own budget
and deadline (:mod:`icdreward.openai_client._retry`).

An async client is bound to the event loop it first runs on, so an
:class:`OpenAIClient` must be made and used on one loop.
"""

from __future__ import annotations

import contextlib
import email.utils
import importlib.util
import time
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from icdreward.errors import IcdRewardError

if TYPE_CHECKING:
    import openai

__all__ = [
    "AttemptFailed",
    "Completion",
    "HttpBackend",
    "OpenAIClient",
    "OpenAIMissingError",
    "require_openai",
    "retry_after_seconds",
    "root_cause",
]

HttpBackend = Literal["auto", "httpx", "aiohttp"]


class OpenAIMissingError(IcdRewardError, ImportError):
    """The ``openai`` package is not installed (``pip install "icdreward[judge]"``)."""


def require_openai() -> ModuleType:
    """The ``openai`` module, imported now.

    Raises:
        OpenAIMissingError: it is not installed; the message names the ``judge``
            extra that installs it.
    """
    try:
        import openai
    except ImportError as exc:
        raise OpenAIMissingError(
            "the OpenAI-compatible client needs the openai package, which is not "
            f'installed ({exc}): pip install "icdreward[judge]"'
        ) from exc
    return openai


class AttemptFailed(Exception):
    """One attempt failed.

    Attributes:
        reason: what happened, naming the URL, for a failure reason.
        kind: what kind of failure it was: ``"timeouts"``, ``"connection_errors"``,
            ``"rate_limited"``, ``"server_errors"``, ``"client_errors"`` or
            ``"malformed"`` (callers may add their own, e.g. the judge's
            ``"bad_verdicts"``); the judge counts failures under these names.
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
    """What one successful attempt returned.

    Attributes:
        text: the first choice's text (``""`` when the server sent ``null``).
        finish_reason: the first choice's ``finish_reason`` (``""`` when absent).
        prompt_tokens, completion_tokens: the ``usage`` counts (0 when absent).
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class OpenAIClient:
    """The clients of one or more replicas of the same OpenAI-compatible endpoint.

    Args:
        urls: the replicas' base URLs (``http://host:8000/v1``); a trailing slash is
            dropped.
        api_key: sent as a bearer token (vLLM without a key accepts anything).
        timeout: the default seconds per request (each :meth:`send` gives its own).
        http_backend: ``"aiohttp"`` (the openai client's aiohttp transport, about
            twice as cheap per request), ``"httpx"`` (its default), or ``"auto"``:
            aiohttp when it is installed.

    Raises:
        OpenAIMissingError: the ``openai`` package is not installed.
        RuntimeError: ``http_backend = "aiohttp"`` without aiohttp installed.
        ValueError: no URL.
    """

    def __init__(
        self,
        urls: Sequence[str],
        api_key: str,
        *,
        timeout: float,
        http_backend: HttpBackend = "auto",
    ) -> None:
        if not urls:
            raise ValueError("an OpenAI-compatible client needs at least one URL")
        self._openai = require_openai()
        self.urls: tuple[str, ...] = tuple(url.rstrip("/") for url in urls)
        self._clients = [self._client(url, api_key, timeout, http_backend) for url in self.urls]
        self._busy = [0] * len(self.urls)
        self._turn = 0

    def _client(
        self, url: str, api_key: str, timeout: float, http_backend: HttpBackend
    ) -> openai.AsyncOpenAI:
        api = self._openai
        http_client = None
        if http_backend != "httpx":
            factory = getattr(api, "DefaultAioHttpClient", None)
            if factory is not None and importlib.util.find_spec("aiohttp") is not None:
                http_client = factory(timeout=timeout)
            elif http_backend == "aiohttp":
                raise RuntimeError(
                    "http_backend = 'aiohttp' needs the openai client's aiohttp extra: "
                    'pip install "openai[aiohttp]"'
                )
        client: openai.AsyncOpenAI = api.AsyncOpenAI(
            base_url=url,
            api_key=api_key,
            max_retries=0,
            timeout=timeout,
            http_client=http_client,
        )
        return client

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
        """One attempt: POST ``body`` to ``path`` of ``replica`` within ``timeout`` seconds.

        The answer is read from ``choices[0].message.content`` for a
        ``/chat/completions`` path, else from ``choices[0].text``.

        Raises:
            AttemptFailed: anything went wrong: timeouts, connection errors, 429, 5xx
                and malformed bodies are retryable, other 4xx are not.
        """
        api = self._openai
        url = self.urls[replica]
        self._busy[replica] += 1
        started = time.monotonic()
        try:
            data = await self._clients[replica].post(
                path, body=dict(body), cast_to=object, options={"timeout": timeout}
            )
        except api.APITimeoutError as exc:
            if time.monotonic() - started < 0.9 * timeout:
                # Some transports (aiohttp) report a refused connection as a timeout.
                reason = f"{url}: connection failed ({root_cause(exc)})"
                raise AttemptFailed(reason, kind="connection_errors", retryable=True) from None
            raise AttemptFailed(
                f"{url}: no answer within {timeout:.3g} s", kind="timeouts", retryable=True
            ) from None
        except api.APIConnectionError as exc:
            raise AttemptFailed(
                f"{url}: connection failed ({root_cause(exc)})",
                kind="connection_errors",
                retryable=True,
            ) from None
        except api.APIStatusError as exc:
            raise _status_failure(url, exc) from None
        except ValueError as exc:  # a 200 whose body is not JSON
            reason = f"{url}: malformed response ({type(exc).__name__})"
            raise AttemptFailed(reason, kind="malformed", retryable=True) from None
        except api.OpenAIError as exc:
            raise AttemptFailed(
                f"{url}: {type(exc).__name__}: {exc}", kind="client_errors", retryable=False
            ) from None
        finally:
            self._busy[replica] -= 1
        return _completion(url, data, chat=path.rstrip("/").endswith("/chat/completions"))

    async def aclose(self) -> None:
        """Close every replica's connections (errors while closing are ignored)."""
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

    None when neither header is there or readable; never negative.

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


def _completion(url: str, data: object, *, chat: bool) -> Completion:
    where = "choices[0].message.content" if chat else "choices[0].text"
    try:
        if not isinstance(data, dict):
            raise TypeError(type(data).__name__)
        choice = data["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
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
