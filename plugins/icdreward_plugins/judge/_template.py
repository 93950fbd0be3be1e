"""Versioned judge prompt templates, shipped as TOML files in ``templates/``.

A template is data, not code: wording changes are reviewed as text, and each file
carries a ``name`` and ``version`` that go into every cached verdict's key, so a
verdict given under one wording is never served for another. Placeholders use
:class:`string.Template` syntax (``$note``); substitution is a single pass, so a
``$trace`` inside the policy's text is never expanded.
"""

from __future__ import annotations

import functools
import string
import tomllib
from importlib import resources
from pathlib import Path
from typing import TypeVar

import attrs

__all__ = ["PLACEHOLDERS", "Template", "load_template"]

PLACEHOLDERS = frozenset(
    {
        "note",
        "trace",
        "code",
        "code_dotted",
        "code_status",
        "description",
        "chapter",
        "chapter_title",
        "block",
        "block_title",
        "category",
        "category_title",
        "year",
        "min_score",
        "max_score",
        "answer_format",
    }
)
"""The names a template may use."""

_ANSWER_KEYS = ("json_schema", "choice", "none")


@attrs.frozen
class Template:
    """One judge prompt template.

    Attributes:
        name, version: the template's identity (``ident`` is ``"name@vN"``).
        system, user: the chat messages (for ``style = "completions"`` they are
            joined, followed by ``completion_cue``).
        answer: the answer instruction per constraint kind (``json_schema``,
            ``choice``, ``none``), substituted for ``$answer_format``.
        min_score, max_score: the verdict's range (inclusive).
        source: where the template was read from.
    """

    name: str
    version: int
    system: string.Template
    user: string.Template
    answer: dict[str, str]
    completion_cue: str
    min_score: int
    max_score: int
    source: str

    @property
    def ident(self) -> str:
        """``"name@vN"``: what the cache key records."""
        return f"{self.name}@v{self.version}"


@functools.lru_cache(maxsize=32)
def load_template(spec: str) -> Template:
    """The packaged template ``spec`` (``"clinical_validity_v1"``) or a ``.toml`` file.

    Raises:
        ValueError: the template does not exist, is not valid TOML, misses a field or
            uses an unknown placeholder (the message names the file and the problem).
    """
    if spec.endswith(".toml"):
        path = Path(spec).expanduser()
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"judge template {source}: cannot read it ({exc.strerror})") from None
    else:
        source = f"icdreward_plugins.judge/templates/{spec}.toml"
        entry = resources.files(__package__).joinpath("templates", f"{spec}.toml")
        if not entry.is_file():
            names = sorted(
                p.name.removesuffix(".toml")
                for p in resources.files(__package__).joinpath("templates").iterdir()
                if p.name.endswith(".toml")
            )
            raise ValueError(
                f"no packaged judge template {spec!r} (available: {', '.join(names)}; "
                "or give the path of a .toml file)"
            )
        text = entry.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"judge template {source}: malformed TOML: {exc}") from None
    return _build(data, source)


def _build(data: dict[str, object], source: str) -> Template:
    answer = data.get("answer")
    if not isinstance(answer, dict) or not all(
        isinstance(answer.get(k), str) for k in _ANSWER_KEYS
    ):
        raise ValueError(
            f"judge template {source}: [answer] needs the texts {', '.join(_ANSWER_KEYS)}"
        )
    system = string.Template(_get(data, "system", str, source).strip())
    user = string.Template(_get(data, "user", str, source).strip())
    answers = {k: str(answer[k]).strip() for k in _ANSWER_KEYS}
    parts = {"system": system, "user": user}
    parts.update({f"answer.{k}": string.Template(v) for k, v in answers.items()})
    for key, part in parts.items():
        unknown = set(part.get_identifiers()) - PLACEHOLDERS
        if unknown or not part.is_valid():
            problem = f"unknown placeholders {sorted(unknown)}" if unknown else "a stray '$'"
            raise ValueError(
                f"judge template {source}: {key} has {problem} "
                f"(allowed: {', '.join(sorted(PLACEHOLDERS))}; write $$ for a dollar sign)"
            )
    low, high = _get(data, "min_score", int, source), _get(data, "max_score", int, source)
    if low >= high:
        raise ValueError(f"judge template {source}: min_score must be below max_score")
    return Template(
        name=_get(data, "name", str, source),
        version=_get(data, "version", int, source),
        system=system,
        user=user,
        answer=answers,
        completion_cue=str(data.get("completion_cue", "Verdict:")),
        min_score=low,
        max_score=high,
        source=source,
    )


_V = TypeVar("_V", str, int)


def _get(data: dict[str, object], key: str, kind: type[_V], source: str) -> _V:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"judge template {source}: {key!r} must be a {kind.__name__}")
    return value
