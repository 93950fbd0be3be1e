"""The first and a later batch of 256 responses on a fresh reward manager, as JSON.

Run in a fresh process (``python _verl_first_batch.py TOKENIZER_DIR warm|cold``): a
fresh verl reward worker has a fresh engine, so whatever the engine builds on first
use lands on its first batch unless the manager warmed it. ``cold`` skips the warm-up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "verl"))
sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")


def main(tokenizer_dir: str, mode: str) -> None:
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    from icdreward_verl import recipe
    from icdreward_verl import reward_manager as module

    from _corpus import completions
    from _verl_batch import agent_loop_request

    if mode == "cold":
        module.warm_engine = lambda engine: 0.0  # type: ignore[assignment]
    options = recipe.RecipeOptions(tokenizer_dir, "t.parquet", "v.parquet", "o", preset="default")
    config = recipe.compose(recipe.overrides(options))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    texts, golds, notes = completions(512)
    requests = [
        agent_loop_request(tokenizer, {"completion": t, "gold": g, "note": n})
        for t, g, n in zip(texts, golds, notes, strict=True)
    ]
    started = time.perf_counter()
    manager = load_reward_manager(config, tokenizer)
    built = time.perf_counter() - started
    # verl builds the workers well before the first response arrives.
    warm = manager.warmup.result() if mode == "warm" else 0.0

    async def batch(part: list[object]) -> float:
        began = time.perf_counter()
        await asyncio.gather(*(manager.run_single(r) for r in part))
        return time.perf_counter() - began

    first = manager.loop.run_until_complete(batch(requests[:256]))
    later = manager.loop.run_until_complete(batch(requests[256:]))
    figures = {"build_s": built, "warmup_s": warm, "first_s": first, "later_s": later}
    print(json.dumps({"mode": mode, **figures}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
