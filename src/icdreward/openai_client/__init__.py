"""An OpenAI-compatible client with the robustness a training run needs.

What the LLM judge (plugin ``judge``) and ``icdreward generate`` both need to talk to
``vllm serve``, SGLang or a hosted API, kept in the core so that neither imports the
other:

* :class:`OpenAIClient`: one ``AsyncOpenAI`` client of the official ``openai`` package
  per replica, its own retries off; each attempt either returns a :class:`Completion`
  or raises :class:`AttemptFailed`, which says whether another attempt may help;
* :class:`RetryPolicy` and :func:`send_with_retries`: retries with exponential
  backoff and jitter that honour a 429's ``Retry-After``, per-request timeouts, an
  optional deadline, a retry preferring another replica;
* :func:`require_openai`, :func:`root_cause`, :func:`retry_after_seconds`: the
  pieces both use on their own (a start-up probe, error messages).

The ``openai`` package is imported only when a client is made (or by
:func:`require_openai`): importing :mod:`icdreward` never needs it. Without it the
error names the extra that installs it: ``pip install "icdreward[judge]"``.
"""

from __future__ import annotations

from icdreward.openai_client._client import (
    AttemptFailed,
    Completion,
    HttpBackend,
    OpenAIClient,
    OpenAIMissingError,
    require_openai,
    retry_after_seconds,
    root_cause,
)
from icdreward.openai_client._retry import RequestFailed, RetryPolicy, send_with_retries

__all__ = [
    "AttemptFailed",
    "Completion",
    "HttpBackend",
    "OpenAIClient",
    "OpenAIMissingError",
    "RequestFailed",
    "RetryPolicy",
    "require_openai",
    "retry_after_seconds",
    "root_cause",
    "send_with_retries",
]
