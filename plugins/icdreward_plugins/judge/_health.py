"""The start-up check: is the judge reachable, and does it serve the configured model?

A judge that is down when training starts should be noticed in the first second,
not as a column of failed samples an hour later. The check is one ``GET /models``
per replica with a short timeout, in parallel; ``on_unreachable`` decides whether a
problem is a warning, an error or ignored (``"ignore"`` skips the check entirely,
so building the component stays instant and does not import ``openai``).
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor

from icdreward.errors import IcdRewardError
from icdreward.openai_client import require_openai, root_cause

from ._params import JudgeParams

__all__ = ["JudgeUnreachableError", "JudgeUnreachableWarning", "check_judge", "probe"]

log = logging.getLogger("icdreward.judge")


class JudgeUnreachableError(IcdRewardError, RuntimeError):
    """The judge did not answer the start-up check (``on_unreachable = "raise"``)."""


class JudgeUnreachableWarning(UserWarning):
    """The judge did not answer the start-up check (``on_unreachable = "warn"``)."""


def probe(url: str, model: str, api_key: str, timeout: float) -> str | None:
    """One replica's problem (naming its URL), or None when it serves ``model``."""
    openai = require_openai()
    client = openai.OpenAI(base_url=url, api_key=api_key, max_retries=0, timeout=timeout)
    try:
        served = [m.id for m in client.models.list().data]
    except openai.APIStatusError as exc:
        return f"LLM judge at {url} answered GET /models with HTTP {exc.status_code}"
    except openai.APIError as exc:
        return f"LLM judge at {url} is unreachable ({root_cause(exc)})"
    finally:
        client.close()
    if model not in served:
        listed = ", ".join(served[:10]) or "none"
        return f"LLM judge at {url} does not serve model {model!r} (it serves: {listed})"
    return None


def check_judge(params: JudgeParams, api_key: str) -> list[str]:
    """Probe every replica (in parallel) and act on problems per ``on_unreachable``.

    Returns:
        The problems found (empty when all is well or the check is off).

    Raises:
        JudgeUnreachableError: with ``on_unreachable = "raise"`` and a problem.
    """
    if params.on_unreachable == "ignore":
        return []
    urls = params.urls
    with ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="judge-probe") as pool:
        found = list(
            pool.map(lambda u: probe(u, params.model, api_key, params.health_timeout), urls)
        )
    problems = [p for p in found if p is not None]
    if not problems:
        return []
    message = "; ".join(problems)
    if len(problems) < len(urls):
        message += f" ({len(urls) - len(problems)} of {len(urls)} replicas are fine)"
    if params.on_unreachable == "raise":
        raise JudgeUnreachableError(message)
    log.warning("%s", message)
    warnings.warn(message, JudgeUnreachableWarning, stacklevel=4)
    return problems
