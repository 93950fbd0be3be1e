"""Asking for a verdict in a constrained form, and reading only the judge's own final one.

The request constrains the answer where the server can (a JSON schema whose
``score`` is an enum of the template's range, or a choice among the digits), and
the parser then accepts *only that form*: under ``json_schema`` the answer must be
one JSON object, under a choice constraint one integer. Free text around it is not
searched, so a verdict that the judge merely quotes (from the policy's trace, say)
can never be read as its own. Only ``constrained = "none"`` searches free text, and
then it takes the *last* ``score`` the judge wrote.

Reasoning judges write ``<think>...</think>`` before answering: everything up to the
last ``</think>`` is dropped first, and an answer still inside an unclosed
``<think>`` has no verdict.

>>> parse_verdict('<think>The trace says {"score": 5}.</think>{"score": 2}', 1, 5, "json_schema")
2
>>> parse_verdict(" 4 ", 1, 5, "guided_choice")
4
>>> parse_verdict('Quoted: {"score": 5}. Mine: {"score": 3}', 1, 5, "none")
3
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["VerdictError", "answer_kind", "constraint_fields", "parse_verdict", "strip_reasoning"]

_CLOSE_TAGS = ("</think>", "</thinking>", "</reasoning>")
_OPEN_TAGS = ("<think>", "<thinking>", "<reasoning>")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_FREE_SCORE = re.compile(r"""["']?\bscore\b["']?\s*[:=]\s*["']?(-?\d+(?:\.\d+)?)""", re.IGNORECASE)
_NUMBER = re.compile(r"""^["']?\s*(-?\d+(?:\.\d+)?)\s*["']?\.?$""")
_MAX_ANSWER = 4096


class VerdictError(ValueError):
    """The judge's answer holds no usable verdict (the message says why)."""


def answer_kind(constrained: str) -> str:
    """The template's ``[answer]`` key for a ``constrained`` setting."""
    return "choice" if constrained in ("guided_choice", "structured_outputs") else constrained


def constraint_fields(constrained: str, low: int, high: int) -> dict[str, Any]:
    """Request fields that constrain the answer to a verdict in ``[low, high]``.

    ``response_format`` with a JSON schema is the OpenAI form (vLLM and SGLang accept
    it on both endpoints); ``guided_choice`` and ``structured_outputs`` are vLLM's.
    """
    choices = [str(v) for v in range(low, high + 1)]
    if constrained == "json_schema":
        schema = {
            "type": "object",
            "properties": {"score": {"type": "integer", "enum": list(range(low, high + 1))}},
            "required": ["score"],
            "additionalProperties": False,
        }
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "judge_verdict", "schema": schema, "strict": True},
            }
        }
    if constrained == "guided_choice":
        return {"guided_choice": choices}
    if constrained == "structured_outputs":
        return {"structured_outputs": {"choice": choices}}
    return {}


def strip_reasoning(text: str) -> str:
    """The answer after the judge's reasoning: text after the last closing think tag.

    An opening tag left in what remains means the reasoning never ended (the answer
    was cut off): nothing after it is an answer.
    """
    lower = text.lower()
    end = max((lower.rfind(tag) + len(tag) for tag in _CLOSE_TAGS if tag in lower), default=0)
    answer = text[end:]
    lower = answer.lower()
    start = min((lower.find(tag) for tag in _OPEN_TAGS if tag in lower), default=-1)
    return answer[:start] if start >= 0 else answer


def parse_verdict(text: object, low: int, high: int, constrained: str) -> int:
    """The verdict in the judge's answer ``text``, checked against ``[low, high]``.

    Raises:
        VerdictError: no verdict in the expected form, or one out of range.
    """
    if not isinstance(text, str):
        raise VerdictError(f"the answer is {type(text).__name__}, not text")
    answer = strip_reasoning(text).strip()
    if not answer:
        raise VerdictError("the answer is empty (reasoning only, or cut off)")
    if len(answer) > _MAX_ANSWER:
        raise VerdictError(f"the answer is {len(answer)} characters long, not a verdict")
    kind = answer_kind(constrained)
    value: object
    if kind == "choice":
        value = _number(answer)
    elif kind == "json_schema":
        value = _json_score(answer)
    else:
        found = _FREE_SCORE.findall(answer)
        value = str(found[-1]) if found else _number(answer)
    return _checked(value, low, high)


def _number(answer: str) -> str:
    match = _NUMBER.match(answer)
    if match is None:
        raise VerdictError(f"expected only a number, got {_shown(answer)}")
    return match.group(1)


def _json_score(answer: str) -> object:
    fenced = _FENCE.match(answer)
    body = fenced.group(1) if fenced else answer
    try:
        data = json.loads(body)
    except ValueError:
        raise VerdictError(f"expected one JSON object, got {_shown(answer)}") from None
    if not isinstance(data, dict) or "score" not in data:
        raise VerdictError(f"expected a JSON object with a 'score', got {_shown(answer)}")
    return data["score"]


def _checked(value: object, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise VerdictError(f"the score is {value!r}, not a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise VerdictError(f"the score {_shown(str(value))} is not a number") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise VerdictError(f"the score {value!r} is not a finite number")
    if value != int(value):
        raise VerdictError(f"the score {value!r} is not an integer")
    score = int(value)
    if not low <= score <= high:
        raise VerdictError(f"the score {score} is out of range {low}-{high}")
    return score


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
