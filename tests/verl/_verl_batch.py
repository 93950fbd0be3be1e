"""Build verl ``DataProto`` batches the way verl's rollout lays them out.

``prompts`` are left-padded, ``responses`` right-padded, ``attention_mask`` covers
both, and the non-tensor columns come from the training parquet (``data_source``,
``reward_model``, ``extra_info``) plus GRPO's ``uid`` per prompt group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from verl import DataProto

from icdreward.prompts import build_messages


def rollout_batch(
    tokenizer: Any,
    samples: Sequence[dict[str, Any]],
    *,
    response_length: int | None = None,
) -> DataProto:
    """One row per sample: ``{"note", "gold", "completion", "group"}``.

    The completion is tokenized and closed with EOS (as a finished generation is);
    ``response_length`` pads every response to that width (default: the longest).
    """
    prompt_ids = [_prompt_ids(tokenizer, s["note"]) for s in samples]
    response_ids = [
        [*tokenizer.encode(s["completion"], add_special_tokens=False), tokenizer.eos_token_id]
        for s in samples
    ]
    prompt_width = max(len(p) for p in prompt_ids)
    width = response_length or max(len(r) for r in response_ids)
    pad = tokenizer.pad_token_id
    size = len(samples)
    prompts = torch.full((size, prompt_width), pad, dtype=torch.long)
    responses = torch.full((size, width), pad, dtype=torch.long)
    mask = torch.zeros((size, prompt_width + width), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        r = r[:width]
        prompts[i, prompt_width - len(p) :] = torch.tensor(p)
        responses[i, : len(r)] = torch.tensor(r)
        mask[i, prompt_width - len(p) : prompt_width + len(r)] = 1
    input_ids = torch.cat([prompts, responses], dim=1)
    position_ids = torch.clamp(torch.cumsum(mask, dim=1) - 1, min=0)
    rows = [_row(s, i) for i, s in enumerate(samples)]
    non_tensors = {key: np.array([r[key] for r in rows], dtype=object) for key in rows[0]}
    non_tensors["uid"] = np.array(
        [str(s.get("group", i)) for i, s in enumerate(samples)], dtype=object
    )
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": position_ids,
        },
        non_tensors=non_tensors,
    )


def agent_loop_request(tokenizer: Any, sample: dict[str, Any]) -> DataProto:
    """One response as verl 0.9's agent loop sends it to a reward worker.

    ``AgentLoopWorker._compute_score`` builds an unpadded batch of one (prompt ids,
    response ids without EOS, an all-ones attention mask) and the dataset row's fields
    as numpy arrays of one element.
    """
    prompt = _prompt_ids(tokenizer, sample["note"])
    response = tokenizer.encode(sample["completion"], add_special_tokens=False)
    prompts = torch.tensor([prompt], dtype=torch.int64)
    responses = torch.tensor([response], dtype=torch.int64)
    input_ids = torch.cat([prompts, responses], dim=1)
    mask = torch.ones_like(input_ids)
    non_tensors = {key: np.array([value]) for key, value in _row(sample, 0).items()}
    non_tensors["__num_turns__"] = np.array([2])
    non_tensors["tool_extra_fields"] = np.array([{}], dtype=object)
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "attention_mask": mask,
            "input_ids": input_ids,
            "position_ids": torch.arange(input_ids.shape[1]).unsqueeze(0),
        },
        non_tensors=non_tensors,
    )


def valid_lengths(batch: DataProto) -> torch.Tensor:
    """The number of real (unpadded) response tokens of each row."""
    prompt_width = batch.batch["prompts"].shape[1]
    lengths: torch.Tensor = batch.batch["attention_mask"][:, prompt_width:].sum(dim=1)
    return lengths


def _prompt_ids(tokenizer: Any, note: str) -> list[int]:
    # As verl renders a prompt of the prepared data: the user turn, then a new
    # assistant turn (add_generation_prompt=True).
    ids: list[int] = tokenizer.apply_chat_template(
        build_messages(note, prefill_think=False),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    return ids


def _row(sample: dict[str, Any], index: int) -> dict[str, Any]:
    """The non-tensor fields of a prepared training row for ``sample``."""
    return {
        "data_source": "icdreward/icd10cm",
        "reward_model": {"style": "rule", "ground_truth": _codes(sample["gold"])},
        "extra_info": {"split": "train", "index": index, "note": sample["note"]},
    }


def _codes(gold: Any) -> np.ndarray:
    # Parquet gives verl the ground-truth list as a numpy array of strings.
    codes = [gold] if isinstance(gold, str) else list(gold)
    return np.array(codes, dtype=object)
