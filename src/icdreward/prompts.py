"""The prompt the policy sees: one template for training data, generation and evaluation.

Every place that builds a policy prompt (training data, the TRL example, generation
for evaluation) uses :func:`build_messages`, so a model is evaluated with exactly the
prompt it was trained on. Render the messages with the tokenizer's
``continue_final_message=True`` (not ``add_generation_prompt=True``, which would close
the prefilled assistant turn). The assistant turn is prefilled with an
opened ``<think>``: the completion continues the reasoning, and the ``tags``
parser (``prefilled_think = true``) reads ``"<think>" + completion``.

>>> messages = build_messages("65-year-old with crushing chest pain.")
>>> [m["role"] for m in messages]
['system', 'user', 'assistant']
>>> messages[-1]["content"]
'<think>'
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = [
    "PROMPT_VERSION",
    "SYSTEM_PROMPT",
    "THINK_PREFILL",
    "USER_TEMPLATE",
    "ChatTokenizer",
    "build_messages",
    "render_prompt",
]

PROMPT_VERSION = "1"
"""Bumped whenever the wording changes, so data and results can record which one they used."""

THINK_PREFILL = "<think>"
"""The opened tag the assistant turn starts with."""

SYSTEM_PROMPT = (
    "You are a clinical coding assistant. Read the admission note and determine the "
    "patient's primary diagnosis as one ICD-10-CM code. First reason step by step inside "
    "<think> and </think>, citing the findings in the note that support the diagnosis. Then "
    "give exactly one ICD-10-CM code, as specific as the note allows, inside <diagnosis> and "
    "</diagnosis>, and nothing after it."
)

USER_TEMPLATE = "Admission note:\n{note}\n\nWhat is the primary diagnosis as an ICD-10-CM code?"


def build_messages(note: str, *, prefill_think: bool = True) -> list[dict[str, str]]:
    """Chat messages asking for the primary diagnosis of ``note``.

    Args:
        note: the admission note (inserted verbatim).
        prefill_think: end with an assistant message holding an opened ``<think>`` that
            the model continues (render it with the tokenizer's
            ``continue_final_message=True``). Without it the model must open the tag
            itself; score such completions with ``prefilled_think = false``.
    """
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_TEMPLATE.format(note=note)},
    ]
    if prefill_think:
        messages.append({"role": "assistant", "content": THINK_PREFILL})
    return messages


class ChatTokenizer(Protocol):
    """What :func:`render_prompt` needs of a tokenizer: a ``transformers`` chat template."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        """Render ``conversation`` (see ``PreTrainedTokenizerBase.apply_chat_template``)."""


def render_prompt(tokenizer: ChatTokenizer, note: str, *, prefill_think: bool = True) -> str:
    """The policy prompt for ``note`` as text, ready for a TRL ``prompt`` column.

    This is :func:`build_messages` rendered with the tokenizer's chat
    template and ``continue_final_message=True``: the text ends with the opened
    ``<think>`` the model continues. Use it instead of a conversational ``prompt``
    column: TRL 1.16's ``GRPOTrainer`` renders conversational prompts with
    ``add_generation_prompt=True``, which closes the prefilled assistant turn and opens
    a new one, so the model would never continue the ``<think>``.

    Args:
        tokenizer: a ``transformers`` tokenizer (or processor) with a chat template.
        note: the admission note.
        prefill_think: end with the opened ``<think>`` (see ``build_messages``); without
            it the prompt ends with the generation prompt of a new assistant turn.

    Raises:
        TypeError: the tokenizer did not render text.
    """
    messages = build_messages(note, prefill_think=prefill_think)
    if prefill_think:
        text = tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    else:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, not str")
    return text
