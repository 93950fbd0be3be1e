"""A few GRPO steps with TRL on CPU, rewarded by icdreward: no GPU, no download.

Builds everything offline: a byte-level BPE tokenizer trained with ``tokenizers`` on the
synthetic notes, a ChatML chat template (which supports ``continue_final_message``), a
tiny randomly initialised Qwen2 causal LM, and a dataset of the notes in
``examples/notes.jsonl`` rendered with icdreward's prompt template
(:func:`icdreward.prompts.build_messages`, the same one as the verl data, ending with
an opened ``<think>``). Then it runs ``GRPOTrainer`` for a few steps with one reward
function per icdreward component and prints what TRL logged.

    pip install -e ".[test]"       # trl, transformers, datasets, tokenizers
    python examples/trl_grpo_cpu.py --output-dir /tmp/icd-grpo --steps 3 --preset default

A random model writes gibberish, so the rewards are low; the point is the plumbing: the
rewards reach the trainer, are logged per component and move the weights. Swap
:func:`build_model` and :func:`build_tokenizer` for ``from_pretrained`` to train a real
model with the same dataset and reward functions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from icdreward import RewardEngine
from icdreward.prompts import SYSTEM_PROMPT, THINK_PREFILL, USER_TEMPLATE
from icdreward_trl import TRLRewards, render_prompt

NOTES = Path(__file__).with_name("notes.jsonl")
COMPLETIONS = Path(__file__).with_name("completions.jsonl")

# ChatML, as Qwen2.5 writes it. Every message's content is rendered verbatim, so
# transformers' ``continue_final_message=True`` can cut the text right after the
# prefilled "<think>" of the final assistant message.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Text the policy is meant to write, so that its pieces are tokens of the vocabulary.
_ANSWER_TEXT = (
    "<think>The findings support the diagnosis.</think>\n<diagnosis>M51.16</diagnosis>\n"
    "<think>Chest pain with ST depression.</think>\n<diagnosis>I21.4</diagnosis>\n"
    "<think>Hyperglycaemia in type 2 diabetes.</think>\n<diagnosis>E11.65</diagnosis>\n"
)


def load_notes(path: Path = NOTES) -> list[dict[str, Any]]:
    """The synthetic admission notes: ``id``, ``note`` and gold ``codes`` (primary first)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_completions(path: Path = COMPLETIONS) -> list[dict[str, Any]]:
    """Example completions of the notes (``note``, ``completion``, ``gold``), good and bad."""
    return load_notes(path)


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 768) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus``, with a ChatML chat template.

    Returns a ``transformers`` fast tokenizer; ``<|im_end|>`` ends a turn (EOS) and
    ``<|endoftext|>`` pads, as in Qwen2.5.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(
        [SYSTEM_PROMPT, USER_TEMPLATE, THINK_PREFILL, _ANSWER_TEXT, *corpus], trainer
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def build_model(
    tokenizer: Any, *, hidden_size: int = 64, num_layers: int = 2, seed: int = 0
) -> Any:
    """A randomly initialised Qwen2-style causal LM sized for ``tokenizer``."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return model


def warm_start(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    *,
    steps: int = 40,
    learning_rate: float = 5e-3,
    context: int = 32,
    seed: int = 0,
) -> list[float]:
    """A few supervised steps on example completions, so the policy writes the format.

    A random model writes gibberish: every completion gets the same (low) reward, every
    GRPO advantage is zero and nothing is learned. A short warm start on
    ``examples/completions.jsonl`` (good and bad answers, loss on the completion only)
    makes it sample answers of varying quality, which is what GRPO needs. Returns the
    losses.
    """
    torch.manual_seed(seed)
    eos = tokenizer.eos_token
    rows = []
    for ex in examples:
        # The end of the prompt is enough context to learn the answer format, and keeps
        # these steps cheap.
        prompt = tokenizer(render_prompt(tokenizer, ex["note"]))["input_ids"][-context:]
        answer = tokenizer(ex["completion"] + eos)["input_ids"]
        rows.append((prompt + answer, [-100] * len(prompt) + answer))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def build_dataset(tokenizer: Any, notes: Sequence[dict[str, Any]], repeat: int = 4) -> Any:
    """A ``datasets.Dataset``: ``prompt`` (text ending with ``<think>``), ``note``, ``codes``.

    The prompt is :func:`icdreward.prompts.build_messages` rendered with
    ``continue_final_message=True`` (:func:`icdreward.prompts.render_prompt`): TRL 1.16 would
    render a conversational prompt with ``add_generation_prompt=True`` and close the
    prefilled ``<think>``. ``note`` and ``codes`` reach the reward functions as columns.
    """
    from datasets import Dataset

    rows = [
        {
            "prompt": render_prompt(tokenizer, n["note"]),
            "note": n["note"],
            "codes": list(n["codes"]),
            "id": n["id"],
        }
        for n in notes
    ]
    return Dataset.from_list(rows * repeat)


def build_config(
    output_dir: str | Path,
    *,
    steps: int = 3,
    num_generations: int = 4,
    prompts_per_step: int = 2,
    max_completion_length: int = 48,
    reward_weights: Sequence[float] | None = None,
    seed: int = 0,
) -> Any:
    """A ``GRPOConfig`` for a CPU run of ``steps`` optimizer steps."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=num_generations * prompts_per_step,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        reward_weights=list(reward_weights) if reward_weights is not None else None,
        learning_rate=1e-3,  # a random tiny model: take visible steps
        temperature=1.0,
        use_cpu=True,
        bf16=False,
        fp16=False,
        use_vllm=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=seed,
    )


def build_trainer(
    output_dir: str | Path,
    *,
    steps: int = 3,
    preset: str = "default",
    config: str | Path | None = None,
    total: bool = False,
    max_completion_length: int = 48,
    warm_start_steps: int = 40,
    seed: int = 0,
) -> tuple[Any, TRLRewards]:
    """The tokenizer, model, dataset, icdreward rewards and ``GRPOTrainer``, all offline.

    Args:
        output_dir: the trainer's output directory.
        steps: optimizer steps.
        preset: the icdreward preset (ignored when ``config`` is given).
        config: an icdreward configuration file.
        total: one reward function returning the weighted total instead of one per
            component.
        max_completion_length: tokens per completion.
        warm_start_steps: supervised steps on the example completions before GRPO
            (:func:`warm_start`); 0 trains the random model as it is.
        seed: seeds the model and the trainer.
    """
    from trl import GRPOTrainer

    notes = load_notes()
    examples = load_completions()
    tokenizer = build_tokenizer([n["note"] for n in notes] + [e["completion"] for e in examples])
    model = build_model(tokenizer, seed=seed)
    if warm_start_steps:
        warm_start(model, tokenizer, examples, steps=warm_start_steps, seed=seed)
    engine = RewardEngine.from_config(config) if config else RewardEngine.from_preset(preset)
    rewards = TRLRewards(engine)
    funcs = [rewards.total] if total else rewards.functions
    args = build_config(
        output_dir,
        steps=steps,
        max_completion_length=max_completion_length,
        reward_weights=None if total else rewards.weights,
        seed=seed,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=build_dataset(tokenizer, notes),
        processing_class=tokenizer,
    )
    return trainer, rewards


def reward_metrics(log_history: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Every ``rewards/...``, ``reward`` and ``icdreward/...`` value TRL logged, per key."""
    out: dict[str, list[float]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith(("rewards/", "icdreward/")) or key in ("reward", "reward_std"):
                out.setdefault(key, []).append(float(value))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output-dir", default=None, help="trainer output directory (default: a new temp dir)"
    )
    parser.add_argument("--steps", type=int, default=3, help="GRPO optimizer steps")
    parser.add_argument("--preset", default="default", help="icdreward preset")
    parser.add_argument("--config", default=None, help="icdreward configuration file")
    parser.add_argument(
        "--total", action="store_true", help="one reward function (the weighted total)"
    )
    parser.add_argument("--max-completion-length", type=int, default=48)
    parser.add_argument(
        "--warm-start-steps", type=int, default=40, help="supervised steps before GRPO"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.output_dir is None:
        args.output_dir = tempfile.mkdtemp(prefix="icdreward-trl-")

    start = time.perf_counter()
    trainer, rewards = build_trainer(
        args.output_dir,
        steps=args.steps,
        preset=args.preset,
        config=args.config,
        total=args.total,
        max_completion_length=args.max_completion_length,
        warm_start_steps=args.warm_start_steps,
        seed=args.seed,
    )
    built = time.perf_counter()
    trainer.train()
    done = time.perf_counter()
    metrics = reward_metrics(trainer.state.log_history)
    print(
        f"built offline in {built - start:.1f} s (tokenizer, model, warm start, dataset); "
        f"{trainer.state.global_step} GRPO steps in {done - built:.1f} s"
    )
    print("reward functions:")
    weights = trainer.reward_weights.tolist()
    names = trainer.reward_func_names
    print("  " + ", ".join(f"{n} (weight {w:g})" for n, w in zip(names, weights, strict=True)))
    for key, values in sorted(metrics.items()):
        shown = ", ".join("nan" if math.isnan(v) else f"{v:.4g}" for v in values)
        print(f"  {key}: {shown}")
    print(f"engine scorings: {rewards.scorings} for {rewards.calls} reward-function calls")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=2))
    print(f"log history: {out / 'log_history.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
