"""Prompt lengths for ``icdreward prepare``, in tokens, measured the way verl measures them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from icdreward.errors import ConfigError

__all__ = ["OPTIONS", "ChatTokenizer", "load_tokenizer", "prompt_lengths"]

OPTIONS = "prepare options"
"""The ``source`` of the :class:`~icdreward.errors.ConfigError` of a bad option."""


class ChatTokenizer(Protocol):
    """What the token-length check needs: a transformers tokenizer with a chat template."""

    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def load_tokenizer(path: str) -> ChatTokenizer:
    """The tokenizer saved in the local directory ``path`` (nothing is downloaded).

    Raises:
        ConfigError: ``path`` is not a directory or holds no loadable tokenizer.
    """
    if not Path(path).is_dir():
        raise ConfigError(
            OPTIONS,
            "tokenizer",
            path,
            "not a directory; give a local tokenizer directory (nothing is downloaded)",
        )
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError(
            OPTIONS, "tokenizer", path, "needs transformers: pip install transformers"
        ) from None
    try:
        loaded: ChatTokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ConfigError(OPTIONS, "tokenizer", path, f"cannot load a tokenizer: {exc}") from None
    return loaded


def prompt_lengths(
    tokenizer: ChatTokenizer, conversations: list[list[dict[str, str]]], name: str | None
) -> list[int]:
    """The length in tokens of each conversation rendered as verl renders prompts.

    verl's ``RLHFDataset`` filters on ``apply_chat_template(messages,
    add_generation_prompt=True, tokenize=True)``: the template's own special tokens
    and nothing else. A batch of conversations renders in one call.

    Raises:
        ConfigError: the chat template fails (``name`` is the tokenizer's path).
    """
    try:
        out = tokenizer.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=False
        )
    except Exception as exc:  # jinja2 TemplateError, ValueError, ... from the template
        raise ConfigError(OPTIONS, "tokenizer", name, f"its chat template failed: {exc}") from None
    if isinstance(out, Mapping) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    return [len(ids) for ids in out]
