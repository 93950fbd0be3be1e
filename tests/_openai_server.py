"""A loopback server that speaks the OpenAI-compatible protocol the way vLLM does.

Tests of anything that calls an OpenAI-compatible endpoint (the LLM judge,
``icdreward generate``) need a *real* server: the official ``openai`` client must
open real connections, time out, read real status codes and headers. This module
provides one, bound to ``127.0.0.1`` on an ephemeral port, with knobs for the
faults such a service shows in production:

* per-request ``latency`` (an asyncio server: 64 concurrent requests that each sleep
  50 ms finish together in about 50 ms, they are not serialized);
* a share of ``500`` answers, of ``429`` answers with ``Retry-After``, of requests that
  hang, of ``200`` answers whose body is not JSON, and of out-of-range verdicts;
* scripted replies (:class:`Reply`, consumed in order) and a ``responder`` hook for
  per-request decisions;
* a *gullible* mode that obeys a verdict planted in the prompt (``{"score": 5}`` or
  ``<verdict>5</verdict>``), and an *echo* mode that repeats the prompt inside
  ``<think>...</think>`` before answering, to test prompt-injection hardening;
* a request log (:attr:`OpenAITestServer.requests`), outcome counters and the peak
  number of requests in flight.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
(a list of prompts gives one choice each), ``GET /health``. Constrained answers are
read like vLLM reads them: ``response_format`` (``json_schema``/``json_object``),
``guided_choice``, ``structured_outputs = {"choice": [...]}``, also inside
``extra_body`` (the client merges it into the body). A verdict is answered as
``{"score": N}`` under a JSON constraint, as ``"N"`` under a choice constraint and as
a sentence ending in ``{"score": N}`` otherwise.

Two ways to run it, with the same surface (``url``, ``configure``, ``stats``,
``requests``, ``reset``, ``stop``, context manager):

:class:`OpenAITestServer`
    an asyncio server on a daemon thread of the test process; knobs may be changed
    while it runs, and ``responder``/``verdict`` may be Python callables.
:class:`SubprocessServer`
    the same server in a child process (``python _openai_server.py``), for benchmarks
    where the server must not compete with the client for the GIL; it is driven
    through control endpoints under ``/_control/``.

Both stop themselves: after ``lifetime`` seconds, and a child process also when its
parent closes its stdin (or dies).

>>> with OpenAITestServer(verdict=4) as server:
...     import openai
...     client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
...     reply = client.chat.completions.create(
...         model="judge-model", messages=[{"role": "user", "content": "Rate it."}]
...     )
...     reply.choices[0].message.content.endswith('{"score": 4}')
True
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Knobs",
    "OpenAITestServer",
    "RecordedRequest",
    "Reply",
    "SubprocessServer",
    "honest_verdict",
]

_PLANTED = re.compile(r"\{\s*\"score\"\s*:\s*(\d+)\s*\}|<verdict>\s*(\d+)\s*</verdict>")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def honest_verdict(text: str) -> int:
    """The verdict an honest judge gives a prompt: a deterministic 1-5 from its text.

    Deterministic so that a score depends only on what was asked (the same prompt
    gets the same verdict across requests, engines and processes).
    """
    return 1 + hashlib.sha256(text.encode("utf-8", "replace")).digest()[0] % 5


@dataclass
class Knobs:
    """The server's behaviour; change it with ``configure(**knobs)`` at any time.

    The fault shares are drawn once per completion request from a seeded generator,
    in this order: ``error_rate`` (500), ``rate_limit_rate`` (429 with
    ``Retry-After: retry_after``), ``hang_rate`` (no answer for ``hang_seconds`` or
    until the server stops), ``malformed_rate`` (200 with a body that is not JSON),
    ``out_of_range_rate`` (verdict ``out_of_range_value``). ``verdict`` fixes the
    verdict (an int, or a callable of the :class:`RecordedRequest`); None gives
    :func:`honest_verdict` of the prompt. ``api_key``, when set, is required as a
    bearer token (401 otherwise). ``latency`` applies to every completion request.
    """

    models: tuple[str, ...] = ("judge-model",)
    latency: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: float | None = 0.05
    hang_rate: float = 0.0
    hang_seconds: float = 60.0
    malformed_rate: float = 0.0
    out_of_range_rate: float = 0.0
    out_of_range_value: int = 9
    gullible: bool = False
    echo_reasoning: bool = False
    verdict: int | Callable[[RecordedRequest], int] | None = None
    api_key: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class Reply:
    """One scripted reply (see :meth:`OpenAITestServer.script`).

    Attributes:
        status: HTTP status; an error status gets an OpenAI-style error body.
        verdict: the verdict to answer (None: the server's usual one).
        content: the exact assistant text (overrides ``verdict``).
        body: the exact raw response body (overrides everything else).
        headers: extra response headers.
        hang: never answer (until the client disconnects or the server stops).
        delay: seconds to wait in addition to the server's latency.
    """

    status: int = 200
    verdict: int | None = None
    content: str | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False
    delay: float = 0.0

    @classmethod
    def error(cls, status: int = 500, message: str = "internal error") -> Reply:
        """An error answer with an OpenAI-style JSON error body."""
        return cls(status=status, content=message)

    @classmethod
    def rate_limited(cls, retry_after: float | None = 0.05) -> Reply:
        """A 429 answer, with ``Retry-After`` when ``retry_after`` is not None."""
        headers = {} if retry_after is None else {"Retry-After": _seconds(retry_after)}
        return cls(status=429, content="rate limited", headers=headers)

    @classmethod
    def malformed(cls) -> Reply:
        """A 200 answer whose body is not JSON."""
        return cls(body=b'{"id": "broken", "choices": [')

    @classmethod
    def hanging(cls) -> Reply:
        """A request that is never answered."""
        return cls(hang=True)


@dataclass
class RecordedRequest:
    """One request as the server received it (``outcome`` is set when it is answered).

    ``text`` is every prompt text of the request joined by newlines (message
    contents, or the completion prompt). ``authorized`` tells whether an
    ``Authorization`` header came with it; the key itself is not recorded.
    """

    method: str
    path: str
    body: Any
    text: str
    authorized: bool
    arrived: float
    outcome: str = "pending"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for the control endpoint)."""
        return dataclasses.asdict(self)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _prompt_text(path: str, body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    if path.endswith("/chat/completions"):
        parts: list[str] = []
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return "\n".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return "\n".join(str(p) for p in prompt)
    return str(prompt or "")


def _answer_style(body: dict[str, Any]) -> str:
    """How the request constrains the answer: ``json``, ``choice`` or ``free``."""
    sources = [body, body.get("extra_body") or {}]
    for source in sources:
        if not isinstance(source, dict):
            continue
        fmt = source.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
            return "json"
        if source.get("guided_json") is not None:
            return "json"
        if source.get("guided_choice") is not None:
            return "choice"
        structured = source.get("structured_outputs")
        if isinstance(structured, dict):
            if structured.get("choice") is not None:
                return "choice"
            if structured.get("json") is not None:
                return "json"
    return "free"


class _Core:
    """The protocol and the fault model, independent of how the server is hosted."""

    def __init__(self, knobs: Knobs, control: bool) -> None:
        self.knobs = knobs
        self.control = control
        self.lock = threading.Lock()
        self.log: list[RecordedRequest] = []
        self.outcomes: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.scripted: list[Reply] = []
        self.responder: Callable[[RecordedRequest], Reply | None] | None = None
        self.rng = random.Random(knobs.seed)
        self.ids = itertools.count(1)
        self.stopping: asyncio.Event | None = None
        self.initial = dataclasses.replace(knobs)

    # -- configuration ---------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        with self.lock:
            for name, value in changes.items():
                if not hasattr(self.knobs, name):
                    raise TypeError(f"unknown server knob {name!r}")
                if name == "models":
                    value = tuple(value)
                setattr(self.knobs, name, value)
            if "seed" in changes:
                self.rng = random.Random(self.knobs.seed)

    def mark_initial(self) -> None:
        """Remember the current knobs as the ones :meth:`reset` returns to."""
        with self.lock:
            self.initial = dataclasses.replace(self.knobs)

    def reset(self) -> None:
        with self.lock:
            self.knobs = dataclasses.replace(self.initial)
            self.log.clear()
            self.outcomes.clear()
            self.scripted.clear()
            self.responder = None
            self.max_active = self.active
            self.rng = random.Random(self.knobs.seed)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            completions = sum(1 for r in self.log if "completions" in r.path)
            return {
                "requests": len(self.log),
                "completions": completions,
                "outcomes": dict(self.outcomes),
                "active": self.active,
                "max_active": self.max_active,
            }

    # -- dispatch --------------------------------------------------------------------

    async def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        path = target.split("?", 1)[0]
        if path.startswith("/_control/") and self.control:
            return self._control(method, path, raw)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._error(400, "request body is not JSON")
        record = RecordedRequest(
            method=method,
            path=path,
            body=body,
            text=_prompt_text(path, body),
            authorized="authorization" in headers,
            arrived=time.monotonic(),
        )
        with self.lock:
            self.log.append(record)
            knobs = self.knobs
        if knobs.api_key is not None and headers.get("authorization") != f"Bearer {knobs.api_key}":
            return self._finish(record, "401", self._error(401, "invalid API key"))
        if path == "/health" and method == "GET":
            return self._finish(record, "ok", (200, {}, b""))
        if path in ("/v1/models", "/models") and method == "GET":
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in knobs.models]
            return self._finish(record, "ok", _json(200, {"object": "list", "data": data}))
        if path.endswith(("/chat/completions", "/completions")):
            if method != "POST":
                return self._finish(record, "405", self._error(405, "use POST"))
            return await self._completion(record, knobs)
        return self._finish(record, "404", self._error(404, f"no route {path}"))

    async def _completion(
        self, record: RecordedRequest, knobs: Knobs
    ) -> tuple[int, dict[str, str], bytes]:
        body = record.body
        if not isinstance(body, dict):
            return self._finish(record, "400", self._error(400, "expected a JSON object"))
        model = body.get("model")
        if model not in knobs.models:
            message = f"The model `{model}` does not exist."
            return self._finish(record, "404", self._error(404, message))
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            reply = self.scripted.pop(0) if self.scripted else None
            draw = self.rng.random()
        try:
            if reply is None and self.responder is not None:
                reply = self.responder(record)
            if knobs.latency:
                await asyncio.sleep(knobs.latency)
            if reply is not None:
                return await self._scripted(record, reply, knobs)
            return await self._drawn(record, knobs, draw)
        finally:
            with self.lock:
                self.active -= 1

    async def _drawn(
        self, record: RecordedRequest, knobs: Knobs, draw: float
    ) -> tuple[int, dict[str, str], bytes]:
        edge = 0.0
        for share, outcome in (
            (knobs.error_rate, "500"),
            (knobs.rate_limit_rate, "429"),
            (knobs.hang_rate, "hang"),
            (knobs.malformed_rate, "malformed"),
            (knobs.out_of_range_rate, "out_of_range"),
        ):
            edge += share
            if draw < edge:
                kind = outcome
                break
        else:
            kind = "ok"
        if kind == "500":
            return self._finish(record, kind, self._error(500, "internal server error"))
        if kind == "429":
            reply = Reply.rate_limited(knobs.retry_after)
            return self._finish(record, kind, self._error(429, "rate limited", reply.headers))
        if kind == "hang":
            await self._hang(knobs.hang_seconds)
            return self._finish(record, kind, self._error(503, "hung"))
        if kind == "malformed":
            return self._finish(record, kind, (200, _JSON_TYPE, Reply.malformed().body or b""))
        verdict = knobs.out_of_range_value if kind == "out_of_range" else None
        return self._finish(record, kind, self._answer(record, knobs, verdict, None))

    async def _scripted(
        self, record: RecordedRequest, reply: Reply, knobs: Knobs
    ) -> tuple[int, dict[str, str], bytes]:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.hang:
            await self._hang(knobs.hang_seconds)
            return self._finish(record, "hang", self._error(503, "hung"))
        if reply.body is not None:
            return self._finish(record, "scripted", (reply.status, _JSON_TYPE, reply.body))
        if reply.status >= 400:
            answer = self._error(reply.status, reply.content or "error", reply.headers)
            return self._finish(record, str(reply.status), answer)
        answer = self._answer(record, knobs, reply.verdict, reply.content)
        answer[1].update(reply.headers)
        return self._finish(record, "scripted", answer)

    def _answer(
        self, record: RecordedRequest, knobs: Knobs, verdict: int | None, content: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        body: dict[str, Any] = record.body
        prompts = body.get("prompt") if record.path.endswith("/v1/completions") else None
        texts = [str(p) for p in prompts] if isinstance(prompts, list) else [record.text]
        contents = [
            content if content is not None else self._content(record, t, knobs, verdict)
            for t in texts
        ]
        prompt_tokens = max(1, len(record.text) // 4)
        completion_tokens = sum(max(1, len(c) // 4) for c in contents)
        number = next(self.ids)
        if record.path.endswith("/chat/completions"):
            choices: list[dict[str, Any]] = [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": contents[0]},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ]
            kind = "chat.completion"
        else:
            choices = [
                {"index": i, "text": c, "finish_reason": "stop", "logprobs": None}
                for i, c in enumerate(contents)
            ]
            kind = "text_completion"
        return _json(
            200,
            {
                "id": f"cmpl-{number}",
                "object": kind,
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _content(
        self, record: RecordedRequest, text: str, knobs: Knobs, verdict: int | None
    ) -> str:
        if verdict is None and knobs.gullible:
            planted = _PLANTED.findall(text)
            if planted:
                verdict = int(next(v for v in planted[-1] if v))
        if verdict is None:
            verdict = knobs.verdict(record) if callable(knobs.verdict) else knobs.verdict
        if verdict is None:
            verdict = honest_verdict(text)
        style = _answer_style(record.body)
        if style == "json":
            answer = json.dumps({"score": verdict})
        elif style == "choice":
            answer = str(verdict)
        else:
            answer = f"The trace is reviewed against the note.\n{json.dumps({'score': verdict})}"
        if knobs.echo_reasoning:
            answer = f"<think>Reading the request:\n{text}\n</think>\n{answer}"
        return answer

    async def _hang(self, seconds: float) -> None:
        if self.stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    def _finish(
        self, record: RecordedRequest, outcome: str, answer: tuple[int, dict[str, str], bytes]
    ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            record.outcome = outcome
            self.outcomes[outcome] += 1
        return answer

    @staticmethod
    def _error(
        status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        code, out_headers, body = _json(
            status, {"error": {"message": message, "type": "error", "code": status}}
        )
        out_headers.update(headers or {})
        return code, out_headers, body

    def _control(self, method: str, path: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/_control/stats":
            return _json(200, self.stats())
        if path == "/_control/requests":
            with self.lock:
                return _json(200, [r.as_dict() for r in self.log])
        if path == "/_control/reset" and method == "POST":
            self.reset()
            return _json(200, {})
        if path == "/_control/configure" and method == "POST":
            try:
                self.configure(**json.loads(raw or b"{}"))
            except (TypeError, ValueError) as exc:
                return self._error(400, str(exc))
            return _json(200, {})
        return self._error(404, f"no control route {path}")


_JSON_TYPE = {"Content-Type": "application/json"}


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, dict(_JSON_TYPE), json.dumps(payload).encode()


class _HttpServer:
    """A minimal HTTP/1.1 server (keep-alive, Content-Length and chunked bodies)."""

    def __init__(self, core: _Core) -> None:
        self.core = core
        self.connections: set[asyncio.Task[None]] = set()
        self.server: asyncio.base_events.Server | None = None

    async def start(self, port: int = 0) -> int:
        self.core.stopping = asyncio.Event()
        self.server = await asyncio.start_server(
            self._connection, "127.0.0.1", port, backlog=1024, limit=1 << 20
        )
        address: tuple[str, int] = self.server.sockets[0].getsockname()
        return address[1]

    async def close(self) -> None:
        if self.core.stopping is not None:
            self.core.stopping.set()
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=2)
        if self.server is not None:
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels these tasks; ending quietly keeps asyncio from
            # reporting the cancellation as an error of the connection callback.
            pass
        finally:
            if task is not None:
                self.connections.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            await self._write(writer, (400, {}, b""), keep_alive=False)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await self._body(reader, headers)
        answer = await self.core.dispatch(method, target, headers, raw)
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        await self._write(writer, answer, keep_alive)
        return keep_alive

    @staticmethod
    async def _body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = int(headers.get("content-length") or 0)
        return await reader.readexactly(length) if length else b""

    @staticmethod
    async def _write(
        writer: asyncio.StreamWriter, answer: tuple[int, dict[str, str], bytes], keep_alive: bool
    ) -> None:
        status, headers, body = answer
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        headers = {**headers, "Content-Length": str(len(body))}
        headers["Connection"] = "keep-alive" if keep_alive else "close"
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()


class OpenAITestServer:
    """The loopback server on a daemon thread of this process.

    Args:
        lifetime: seconds after which the server stops itself (a safety net for a
            test that forgets to stop it).
        control: also serve the ``/_control/`` endpoints.
        **knobs: initial :class:`Knobs`.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, *, lifetime: float = 600.0, control: bool = False, **knobs: Any) -> None:
        self._core = _Core(Knobs(), control)
        self._core.configure(**knobs)
        self._core.mark_initial()
        self._lifetime = lifetime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: _HttpServer | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> OpenAITestServer:
        """Start serving; returns self. The port is chosen by the OS."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="openai-test-server", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        self._http = _HttpServer(self._core)
        self.port = asyncio.run_coroutine_threadsafe(self._http.start(), loop).result(5)
        loop.call_soon_threadsafe(loop.call_later, self._lifetime, self._expire)
        return self

    def stop(self) -> None:
        """Stop serving: hanging requests end, open connections are closed."""
        loop, thread, http = self._loop, self._thread, self._http
        if loop is None or thread is None or http is None:
            return
        self._loop = None
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(http.close(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not loop.is_running():
            loop.close()

    def _expire(self) -> None:
        assert self._http is not None and self._loop is not None
        task = self._loop.create_task(self._http.close())
        task.add_done_callback(lambda _: self._loop.stop() if self._loop else None)

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- surface ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL a client is given: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def knobs(self) -> Knobs:
        """The current knobs (change them with :meth:`configure`)."""
        return self._core.knobs

    def configure(self, **knobs: Any) -> None:
        """Change knobs (see :class:`Knobs`); takes effect for the next request."""
        self._core.configure(**knobs)

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next completion requests, in order (before any knob)."""
        with self._core.lock:
            self._core.scripted.extend(replies)

    def respond_with(self, responder: Callable[[RecordedRequest], Reply | None] | None) -> None:
        """Decide per request: the callable returns a :class:`Reply`, or None for the knobs."""
        self._core.responder = responder

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the request log, in arrival order."""
        with self._core.lock:
            return list(self._core.log)

    def completion_requests(self) -> list[RecordedRequest]:
        """The logged requests to the completion endpoints."""
        return [r for r in self.requests if "completions" in r.path]

    def stats(self) -> dict[str, Any]:
        """Counts: ``requests``, ``completions``, ``outcomes``, ``active``, ``max_active``."""
        return self._core.stats()

    def reset(self) -> None:
        """The knobs given at construction, an empty log, no script, no responder."""
        self._core.reset()


class SubprocessServer:
    """The loopback server in a child process, driven through ``/_control/`` endpoints.

    The child exits when :meth:`stop` is called, when this process closes its stdin
    or dies, or after ``lifetime`` seconds. Knobs must be JSON values here (no
    callables).
    """

    def __init__(self, *, lifetime: float = 600.0, **knobs: Any) -> None:
        self._knobs = knobs
        self._lifetime = lifetime
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> SubprocessServer:
        if self._process is not None:
            return self
        options = json.dumps({"lifetime": self._lifetime, "knobs": self._knobs})
        process = subprocess.Popen(
            [sys.executable, __file__, "--options", options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._process = process
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("the test server process did not start")
        self.port = int(json.loads(line)["port"])
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> SubprocessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _call(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/_control/{path}",
            data=data,
            method="GET" if data is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def configure(self, **knobs: Any) -> None:
        self._call("configure", knobs)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("stats")
        return result

    @property
    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("requests")
        return result

    def reset(self) -> None:
        """The knobs given at construction, an empty log, no script."""
        self._call("reset", {})


def _serve_child(options: dict[str, Any]) -> None:
    """Entry point of :class:`SubprocessServer`'s child process."""

    async def main() -> None:
        core = _Core(Knobs(), control=True)
        core.configure(**options.get("knobs", {}))
        core.mark_initial()
        http = _HttpServer(core)
        port = await http.start()
        print(json.dumps({"port": port}), flush=True)
        loop = asyncio.get_running_loop()
        closed = loop.create_future()
        # stdin reaches EOF when the parent closes it or dies: stop then.
        threading.Thread(
            target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(_settle, closed)),
            daemon=True,
        ).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed, float(options.get("lifetime", 600.0)))
        await http.close()

    asyncio.run(main())


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="OpenAI-compatible loopback test server")
    parser.add_argument("--options", default="{}", help='JSON: {"lifetime": s, "knobs": {...}}')
    _serve_child(json.loads(parser.parse_args().options))
