"""From one sample (note, trace, predicted code) to the exact request and its cache key.

The predicted code is grounded with what the code set knows (its description, its
category, block and chapter titles, whether it is billable or exists at all), so
the judge does not have to recall ICD-10-CM from memory. The untrusted texts are
clipped and neutralised (:mod:`._escape`) before they enter the template.

The cache key is a SHA-256 of everything that decides the verdict: the template's
name and version, the model, the sampling settings, the answer constraint, the
``extra_body`` and the rendered text. Replica URLs, timeouts and retries are left
out, so they can change without losing the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import string
from collections import OrderedDict
from typing import Any

from icdreward.codeset import CodeSet

from ._escape import clip, neutralize
from ._params import JudgeParams
from ._template import Template
from ._verdict import answer_kind, constraint_fields

__all__ = ["CACHE_FORMAT", "PromptRenderer", "Request"]

CACHE_FORMAT = 1
"""Bumped when the key derivation changes (old cache entries are then never hit)."""

_MEMO_SIZE = 8192

Request = tuple[str, dict[str, Any]]
"""``(endpoint path, JSON body)`` of one judge request."""


class PromptRenderer:
    """Renders judge requests for one configuration (thread-safe, memoised).

    :meth:`key` is what every sample costs on a cache hit: the texts are clipped,
    and a memo maps ``(trace, note, code)`` to the key, so a batch whose prompts
    were all seen before is never re-rendered.
    """

    def __init__(self, params: JudgeParams, template: Template, codeset: CodeSet) -> None:
        self.params = params
        self.template = template
        self.codeset = codeset
        self.path = "/chat/completions" if params.style == "chat" else "/completions"
        kind = answer_kind(params.constrained)
        bounds = {"min_score": str(template.min_score), "max_score": str(template.max_score)}
        self._answer_format = _substitute(template.answer[kind], bounds)
        self._fixed: dict[str, Any] = {
            "model": params.model,
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            **({} if params.seed is None else {"seed": params.seed}),
            **constraint_fields(params.constrained, template.min_score, template.max_score),
            **dict(params.extra_body),
        }
        self._key_prefix = json.dumps(
            [CACHE_FORMAT, template.ident, self.path, self._fixed], sort_keys=True, default=str
        )
        self._memo: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def inputs(self, trace: str, note: str, code: str) -> tuple[str, str, str]:
        """The clipped texts that the prompt holds (the memo's key)."""
        p = self.params
        return clip(trace, p.max_trace_chars), clip(note, p.max_note_chars), code

    def key(self, inputs: tuple[str, str, str]) -> str:
        """The cache key of the request for ``inputs`` (from the memo when seen)."""
        memo = self._memo
        key = memo.get(inputs)
        if key is None:
            key = self._key(self.request(inputs))
            memo[inputs] = key
            if len(memo) > _MEMO_SIZE:
                with contextlib.suppress(KeyError):  # another thread emptied it first
                    memo.popitem(last=False)
        return key

    def request(self, inputs: tuple[str, str, str]) -> Request:
        """The endpoint path and JSON body asking for the verdict on ``inputs``."""
        trace, note, code = inputs
        fields = self._fields(trace, note, code)
        system = _substitute(self.template.system, fields)
        user = _substitute(self.template.user, fields)
        body = dict(self._fixed)
        if self.params.style == "chat":
            body["messages"] = [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ]
        else:
            body["prompt"] = f"{system}\n\n{user}\n\n{self.template.completion_cue}"
        return self.path, body

    def _key(self, request: Request) -> str:
        body = request[1]
        text = body["messages"] if "messages" in body else body["prompt"]
        payload = json.dumps(text, ensure_ascii=False)
        digest = hashlib.sha256(self._key_prefix.encode())
        digest.update(payload.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def _fields(self, trace: str, note: str, code: str) -> dict[str, str]:
        template = self.template
        info = self.codeset.lookup(code)
        code = neutralize(code)
        fields = {
            "note": neutralize(note) if note.strip() else "(no admission note was provided)",
            "trace": neutralize(trace),
            "code": code,
            "code_dotted": f"{code[:3]}.{code[3:]}" if len(code) > 3 else code,
            "year": str(self.codeset.year),
            "min_score": str(template.min_score),
            "max_score": str(template.max_score),
            "answer_format": self._answer_format,
        }
        unknown = "(unknown)"
        if info is not None:
            status = "billable code" if info.billable else "not billable: a category or header"
            fields.update(
                code_status=f"{status}, ICD-10-CM FY{self.codeset.year}",
                description=info.description,
                chapter=info.chapter,
                chapter_title=info.chapter_title,
                block=info.block,
                block_title=info.block_title,
                category=info.category,
                category_title=self.codeset.describe(info.category) or unknown,
            )
            return fields
        # A well-shaped code that this year lacks keeps the levels that do exist.
        levels = self.codeset.hierarchy(code)
        chapter, block = (levels[0], levels[1]) if len(levels) >= 2 else ("", "")
        fields.update(
            code_status=f"NOT a code of ICD-10-CM FY{self.codeset.year}",
            description="(no such code)",
            chapter=chapter or unknown,
            chapter_title=self.codeset.chapter_title(chapter) if chapter else unknown,
            block=block or unknown,
            block_title=self.codeset.block_title(block) if block else unknown,
            category=code[:3],
            category_title=self.codeset.describe(code[:3]) or "(no such category)",
        )
        return fields


def _substitute(template: string.Template | str, fields: dict[str, str]) -> str:
    """Single-pass substitution: text inserted for one placeholder is never rescanned."""
    if isinstance(template, str):
        template = string.Template(template)
    return template.substitute(fields)
