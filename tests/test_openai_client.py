"""``icdreward.openai_client``: the core's OpenAI-compatible client, against a real server.

Every test talks to :class:`OpenAITestServer` on loopback through the official
``openai`` package: real connections, status codes, ``Retry-After`` headers and
timeouts. The judge and ``icdreward generate`` are tested through it elsewhere; here
the client's own contract is pinned down.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from icdreward.openai_client import (
    AttemptFailed,
    Completion,
    OpenAIClient,
    RequestFailed,
    RetryPolicy,
    retry_after_seconds,
    send_with_retries,
)

from _openai_server import OpenAITestServer, Reply

MODEL = "judge-model"
CHAT = "/chat/completions"
FAST = RetryPolicy(retries=2, backoff=0.01, backoff_max=0.02)


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(verdict=3) as srv:
        yield srv


def _body(text: str = "Rate it.") -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 8}


def _run(urls: list[str], work: Any, **client: Any) -> Any:
    """Run ``work(client)`` on a fresh loop with a client made on that loop."""

    async def main() -> Any:
        made = OpenAIClient(urls, "EMPTY", timeout=5.0, **client)
        try:
            return await work(made)
        finally:
            await made.aclose()

    return asyncio.run(main())


def _dead_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_send_reads_chat_and_completions_answers(server: OpenAITestServer) -> None:
    async def work(client: OpenAIClient) -> tuple[Completion, Completion]:
        chat = await client.send(0, CHAT, _body(), 5.0)
        text = await client.send(0, "/completions", {"model": MODEL, "prompt": "Rate it."}, 5.0)
        return chat, text

    chat, text = _run([server.url + "/"], work)
    assert chat.text.endswith('{"score": 3}')
    assert text.text.endswith('{"score": 3}')
    assert chat.prompt_tokens > 0 and chat.completion_tokens > 0
    assert [r.path for r in server.completion_requests()] == [
        "/v1/chat/completions",
        "/v1/completions",
    ]


@pytest.mark.parametrize(
    ("reply", "kind", "retryable", "text"),
    [
        (Reply.error(500), "server_errors", True, "HTTP 500"),
        (Reply.error(400, "bad field"), "client_errors", False, "HTTP 400 (bad field)"),
        (Reply.rate_limited(2.5), "rate_limited", True, "HTTP 429"),
        (Reply.malformed(), "malformed", True, "malformed response"),
        (Reply(body=b'{"choices": []}'), "malformed", True, "no choices[0].message.content"),
    ],
)
def test_each_failure_says_whether_a_retry_can_help(
    server: OpenAITestServer, reply: Reply, kind: str, retryable: bool, text: str
) -> None:
    server.script(reply)

    async def work(client: OpenAIClient) -> AttemptFailed:
        with pytest.raises(AttemptFailed) as info:
            await client.send(0, CHAT, _body(), 5.0)
        return info.value

    failure = _run([server.url], work)
    assert failure.kind == kind
    assert failure.retryable is retryable
    assert text in failure.reason
    assert failure.reason.startswith(server.url)
    assert failure.retry_after == (2.5 if kind == "rate_limited" else None)


def test_a_hung_request_times_out_and_a_dead_port_is_a_connection_error(
    server: OpenAITestServer,
) -> None:
    server.script(Reply.hanging())
    dead = _dead_url()

    async def work(client: OpenAIClient) -> tuple[AttemptFailed, AttemptFailed]:
        with pytest.raises(AttemptFailed) as hung:
            await client.send(0, CHAT, _body(), 0.3)
        with pytest.raises(AttemptFailed) as refused:
            await client.send(1, CHAT, _body(), 2.0)
        return hung.value, refused.value

    hung, refused = _run([server.url, dead], work)
    assert hung.kind == "timeouts" and "no answer within 0.3 s" in hung.reason
    assert refused.kind == "connection_errors" and refused.reason.startswith(dead)
    assert hung.retryable and refused.retryable


def test_retries_honour_retry_after_and_give_up_with_the_count(
    server: OpenAITestServer,
) -> None:
    server.script(Reply.rate_limited(0.2), Reply.error(503))

    async def work(client: OpenAIClient) -> tuple[Completion, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await send_with_retries(client, CHAT, _body(), policy=FAST, timeout=5.0)
        return answer, loop.time() - started

    answer, elapsed = _run([server.url], work)
    assert answer.text.endswith('{"score": 3}')
    assert elapsed >= 0.2  # waited for Retry-After, not the 10 ms backoff
    assert server.stats()["completions"] == 3

    server.reset()
    server.script(*[Reply.error(500)] * 3)

    async def fail(client: OpenAIClient) -> RequestFailed:
        with pytest.raises(RequestFailed) as info:
            await send_with_retries(client, CHAT, _body(), policy=FAST, timeout=5.0)
        return info.value

    failed = _run([server.url], fail)
    assert failed.reason.endswith("(gave up after 3 attempts)")
    assert failed.kind == "server_errors" and failed.attempts == 3


def test_a_client_error_is_sent_once(server: OpenAITestServer) -> None:
    server.script(Reply.error(404, "no such model"))

    async def fail(client: OpenAIClient) -> RequestFailed:
        with pytest.raises(RequestFailed) as info:
            await send_with_retries(client, CHAT, _body(), policy=FAST, timeout=5.0)
        return info.value

    failed = _run([server.url], fail)
    assert failed.attempts == 1
    assert "gave up" not in failed.reason and "HTTP 404 (no such model)" in failed.reason
    assert server.stats()["completions"] == 1


def test_the_deadline_stops_retries_that_could_not_finish(server: OpenAITestServer) -> None:
    server.script(Reply.rate_limited(5.0))

    async def fail(client: OpenAIClient) -> RequestFailed:
        deadline = asyncio.get_running_loop().time() + 1.0
        policy = RetryPolicy(retries=3, retry_after_max=10.0)
        with pytest.raises(RequestFailed) as info:
            await send_with_retries(
                client, CHAT, _body(), policy=policy, timeout=5.0, deadline=deadline
            )
        return info.value

    failed = _run([server.url], fail)
    assert "no time left to retry before the deadline" in failed.reason
    assert failed.kind == "rate_limited" and failed.attempts == 1

    async def late(client: OpenAIClient) -> RequestFailed:
        deadline = asyncio.get_running_loop().time() - 1.0
        with pytest.raises(RequestFailed) as info:
            await send_with_retries(
                client, CHAT, _body(), policy=FAST, timeout=5.0, deadline=deadline
            )
        return info.value

    expired = _run([server.url], late)
    assert expired.kind == "deadline" and expired.attempts == 0


def test_a_retry_goes_to_another_replica(server: OpenAITestServer) -> None:
    dead = _dead_url()

    async def work(client: OpenAIClient) -> Completion:
        client.pick()  # the next pick without a preference would be the live replica
        return await send_with_retries(
            client, CHAT, _body(), policy=FAST, timeout=2.0, rng=random.Random(0)
        )

    answer = _run([dead, server.url], work)
    assert answer.text.endswith('{"score": 3}')
    assert server.stats()["completions"] == 1


def test_the_semaphore_caps_requests_in_flight(server: OpenAITestServer) -> None:
    server.configure(latency=0.05)

    async def work(client: OpenAIClient) -> None:
        cap = asyncio.Semaphore(3)
        await asyncio.gather(
            *(
                send_with_retries(
                    client, CHAT, _body(f"n{i}"), policy=FAST, timeout=5.0, semaphore=cap
                )
                for i in range(12)
            )
        )

    _run([server.url], work)
    stats = server.stats()
    assert stats["completions"] == 12
    assert stats["max_active"] == 3


def test_backoff_grows_is_jittered_and_capped() -> None:
    policy = RetryPolicy(backoff=0.5, backoff_max=4.0, retry_after_max=3.0)
    rng = random.Random(7)
    for attempt, base in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(50)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1
    assert policy.delay(0, 2.0, rng) == 2.0  # Retry-After wins over a shorter backoff
    assert policy.delay(0, 60.0, rng) == 3.0  # and is capped


def test_retry_after_headers() -> None:
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"Retry-After": "-4"}) == 0.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None
    http_date = retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert http_date == 0.0  # a date in the past: no wait


def test_no_url_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one URL"):
        OpenAIClient([], "EMPTY", timeout=1.0)


def test_the_core_imports_without_openai_and_names_the_extra_when_it_is_needed() -> None:
    code = (
        "import sys; sys.modules['openai'] = None\n"  # makes `import openai` fail
        "import icdreward, icdreward.openai_client as oc, icdreward.generation\n"
        "try:\n"
        "    oc.OpenAIClient(['http://127.0.0.1:1/v1'], 'k', timeout=1.0)\n"
        "except oc.OpenAIMissingError as exc:\n"
        "    print(isinstance(exc, ImportError), exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("True ")
    assert 'pip install "icdreward[judge]"' in out
