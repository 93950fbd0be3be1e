"""The judge's HTTP side: the core's OpenAI-compatible client, built from ``JudgeParams``.

Everything that talks to the network lives in :mod:`icdreward.openai_client`, which
``icdreward generate`` shares; this module only builds that client from the judge's
parameters. It is imported on the first request (by the runner), so loading the
plugin does not pay for importing ``openai``. The clients are created inside the
judge's event loop and only ever used there, because an async client is bound to the
loop it first runs on.

Every failure is an :class:`~icdreward.openai_client.AttemptFailed` that says whether a
retry can help (timeouts, connection errors, 429, 5xx, malformed bodies) or not
(other 4xx); its ``kind`` names the :class:`JudgeStats` counter it increments.
"""

from __future__ import annotations

from icdreward.openai_client import (
    AttemptFailed,
    Completion,
    OpenAIClient,
    retry_after_seconds,
    root_cause,
)

from ._params import JudgeParams

__all__ = ["AttemptFailed", "Completion", "Transport", "retry_after_seconds", "root_cause"]


class Transport(OpenAIClient):
    """The clients of the judge's replicas (``base_url``); call only from the judge's loop.

    Args:
        params: the judge's parameters (its URLs, ``timeout`` and ``http_backend``).
        api_key: the resolved API key.
    """

    def __init__(self, params: JudgeParams, api_key: str) -> None:
        super().__init__(
            params.urls, api_key, timeout=params.timeout, http_backend=params.http_backend
        )
