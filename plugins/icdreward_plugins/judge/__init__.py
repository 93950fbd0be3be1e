"""Built-in plugin: an LLM judge of the reasoning trace, over any OpenAI-compatible API.

It registers one reward component, ``judge``. For every sample with a non-empty
trace and a valid code, a judge model (vLLM's ``vllm serve``, SGLang, a hosted API)
rates 1-5 how well the trace justifies the predicted code, given the admission note
and the code's description and place in ICD-10-CM; the reward is ``scale`` times the
verdict (the published DeepICD-R1 recipe: +0.8 x s, and -0.8 for a sample without
a valid code or with an empty trace)::

    [rewards.judge]
    base_url = "http://127.0.0.1:8001/v1"
    model = "meta-llama/Llama-3.1-8B-Instruct"
    scale = 0.8
    not_sent = -1.0
    on_failure = "abstain"

It is built to stay on for a whole GRPO run: concurrent requests on one event loop
under a cap, retries with backoff (honouring ``Retry-After``), per-request timeouts
and a per-batch deadline, deduplication of identical prompts, an LRU and an
optional SQLite cache, counters (``engine.rewards["judge"].stats``), a start-up
health check, and prompts that keep the policy's text inert. A judge failure is
reported per sample, never scored 0. See ``docs/judge.md``.
"""

from __future__ import annotations

from icdreward.plugin import Register, hookimpl

from ._health import JudgeUnreachableError, JudgeUnreachableWarning
from ._params import JudgeParams
from ._reward import JudgeReward
from ._stats import JudgeStats
from ._template import Template, load_template

__all__ = [
    "JudgeParams",
    "JudgeReward",
    "JudgeStats",
    "JudgeUnreachableError",
    "JudgeUnreachableWarning",
    "Template",
    "icdreward_register_rewards",
    "load_template",
]


@hookimpl
def icdreward_register_rewards(register: Register) -> None:
    """Register the ``judge`` reward."""
    register(JudgeReward)
