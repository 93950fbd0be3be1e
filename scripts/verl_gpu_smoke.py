"""Two real GRPO steps of a tiny random Qwen2 with verl + vLLM on 1 GPU (issue #11, item 5).

Everything is built offline: a byte-level BPE tokenizer and a randomly initialised
Qwen2 (hidden size 64, 2 layers; examples/trl_grpo_cpu.py), 16 training and 4
validation rows in verl's parquet schema. The run goes through the recipe (so the
dry-run checks run first) with icdreward's reward manager and sampler, and the step
logs are checked for ``icdreward/score``, ``icdreward/exact_match`` and
``icdreward/group/all_equal``. CI never runs it (it needs a GPU and vLLM)::

    python scripts/verl_gpu_smoke.py --workdir /tmp/icdreward-smoke          # run
    python scripts/verl_gpu_smoke.py --workdir /tmp/icdreward-smoke --dry-run  # CPU

Exit status 0 when both steps logged the component metrics.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ("icdreward/score", "icdreward/exact_match", "icdreward/group/all_equal")
PROMPTS, N, STEPS = 4, 4, 2


def _example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "trl_grpo_cpu", ROOT / "examples" / "trl_grpo_cpu.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["trl_grpo_cpu"] = module
    spec.loader.exec_module(module)
    return module


def build_inputs(workdir: Path) -> tuple[Path, Path, Path]:
    """The tiny model directory and the train/val parquet files under ``workdir``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from icdreward.prompts import build_messages

    example = _example()
    notes = [
        json.loads(line) for line in (ROOT / "examples" / "notes.jsonl").open() if line.strip()
    ]
    tokenizer = example.build_tokenizer([n["note"] for n in notes])
    model_dir = workdir / "tiny-qwen2"
    example.build_model(tokenizer).save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))

    def rows(count: int, split: str) -> Path:
        picked = [notes[i % len(notes)] for i in range(count)]
        table = pa.table(
            {
                "data_source": ["icdreward/icd10cm"] * count,
                "prompt": [build_messages(n["note"], prefill_think=False) for n in picked],
                "ability": ["clinical_coding"] * count,
                "reward_model": [
                    {"style": "rule", "ground_truth": list(n["codes"])} for n in picked
                ],
                "extra_info": [
                    {"split": split, "index": i, "note": n["note"]} for i, n in enumerate(picked)
                ],
            }
        )
        path = workdir / f"{split}.parquet"
        pq.write_table(table, path)
        return path

    return model_dir, rows(PROMPTS * STEPS * 2, "train"), rows(4, "val")


def smoke_args(workdir: Path, model: Path, train: Path, val: Path) -> list[str]:
    """The recipe's command line for 2 steps on 1 GPU, extra overrides after ``--``."""
    return [
        "--model",
        str(model),
        "--train",
        str(train),
        "--val",
        str(val),
        "--output",
        str(workdir / "out"),
        "--n-gpus",
        "1",
        "--preset",
        "default",
        "--save-freq",
        "-1",
        "--test-freq",
        "-1",
        "--",
        f"data.train_batch_size={PROMPTS}",
        "data.max_prompt_length=1024",
        "data.max_response_length=64",
        f"actor_rollout_ref.rollout.n={N}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={PROMPTS}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.actor.use_torch_compile=false",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=false",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
        "actor_rollout_ref.rollout.enforce_eager=true",
        f"trainer.total_training_steps={STEPS}",
        "trainer.val_before_train=false",
    ]


def metrics_in(log: str) -> list[set[str]]:
    """The ``icdreward/*`` keys of each ``step:N`` line of verl's console logger."""
    steps = []
    for line in log.splitlines():
        if re.match(r"\s*step:\d+ ", line):
            steps.append(set(re.findall(r"(icdreward/[\w/]+):", line)))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="build and check only (CPU)")
    ns = parser.parse_args(argv)
    ns.workdir.mkdir(parents=True, exist_ok=True)
    args = smoke_args(ns.workdir, *build_inputs(ns.workdir))
    recipe = [sys.executable, "-m", "icdreward_verl.recipe"]
    if ns.dry_run:
        return subprocess.run([*recipe, "--dry-run", *args], check=False).returncode
    done = subprocess.run([*recipe, *args], capture_output=True, text=True, check=False)
    (ns.workdir / "train.log").write_text(done.stdout + done.stderr)
    steps = metrics_in(done.stdout)
    ok = done.returncode == 0 and len(steps) >= STEPS and all(set(EXPECTED) <= s for s in steps)
    print(f"smoke: exit {done.returncode}, {len(steps)} steps logged, ok={ok}")
    for i, keys in enumerate(steps, 1):
        print(f"  step {i}: {', '.join(sorted(keys)) or 'no icdreward/* metric'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
