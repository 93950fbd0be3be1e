"""Generation with a local ``transformers`` causal LM: batched ``generate``, CPU or GPU.

Prompts are :func:`icdreward.prompts.render_prompt` (the training template rendered with
the tokenizer's chat template and ``continue_final_message=True``), padded on the
left so that every prompt of a batch ends where generation starts. Sampling is
greedy at temperature 0, else ``do_sample`` with ``temperature`` and ``top_p``; each
batch is seeded with ``seed + its first row's position``, so a row's samples do not
depend on how many rows ran before it in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from icdreward.prompts import render_prompt

from ._params import SamplingParams
from ._rows import NoteRow

__all__ = ["generate_hf", "load_hf"]


def load_hf(path: str, device: str | None = None) -> tuple[Any, Any, str]:
    """The model (in eval mode, on ``device``), its tokenizer and the device used.

    ``device`` None picks ``cuda`` when available, else ``cpu``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = "auto" if device != "cpu" else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.to(device)
    model.eval()
    return model, tokenizer, device


def generate_hf(
    rows: Sequence[NoteRow],
    params: SamplingParams,
    model: Any,
    tokenizer: Any,
    on_done: Callable[[NoteRow, list[str]], None],
    on_failed: Callable[[NoteRow, str], None],
    *,
    batch_size: int = 8,
    device: str = "cpu",
) -> None:
    """Generate ``params.n`` completions per row in batches of ``batch_size`` rows.

    A batch that raises (out of memory, ...) fails its rows through ``on_failed``;
    the next batch still runs.
    """
    import torch

    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        try:
            texts = _batch(batch, params, model, tokenizer, device, torch, start)
        except Exception as exc:  # one failing batch must not end the run
            reason = f"generate failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            for row in batch:
                on_failed(row, reason)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            continue
        for i, row in enumerate(batch):
            on_done(row, texts[i * params.n : (i + 1) * params.n])


def _batch(
    batch: Sequence[NoteRow],
    params: SamplingParams,
    model: Any,
    tokenizer: Any,
    device: str,
    torch: Any,
    position: int,
) -> list[str]:
    prompts = [render_prompt(tokenizer, row.note) for row in batch]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    encoded = {k: v.to(device) for k, v in encoded.items()}
    sampling: dict[str, Any] = {"do_sample": False}
    if params.temperature > 0:
        sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
    if params.seed is not None:
        torch.manual_seed(params.seed + position)
    with torch.inference_mode():
        output = model.generate(
            **encoded,
            max_new_tokens=params.max_tokens,
            num_return_sequences=params.n,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
    new = output[:, encoded["input_ids"].shape[1] :]
    texts: list[str] = tokenizer.batch_decode(new, skip_special_tokens=True)
    return texts
