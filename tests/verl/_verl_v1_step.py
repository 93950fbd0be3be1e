"""One real training step of verl's v1 trainer on CPU, printing its step metrics as JSON.

Run as a script (``python _verl_v1_step.py TOKENIZER_DIR COMPLETIONS_JSON``) so the
test that calls it can kill it on a time limit: it starts a local Ray cluster and
TransferQueue, which must never hang a test run.

Real: the composed recipe configuration (with icdreward's sampler), verl's
``PPOTrainerSync`` with its ``_build_replay_buffer`` (which loads the sampler by
``pkg://`` path), its ``step`` / ``_step_once`` and ``MetricsAggregator`` merging the
sampler's metrics, TransferQueue on local Ray, and ``IcdRewardManager`` scoring every
response through verl's agent-loop layout. Stood in, because they need GPUs and
vLLM: the rollout (it writes the trajectories into TransferQueue with their rewards,
as ``AgentLoopWorkerTQ._agent_loop_postprocess`` does), the weight sync
(``checkpoint_manager``), and the stages after sampling that run actor workers
(balance, old log-probs, advantage, actor update).
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

warnings.filterwarnings("ignore")


def main(tokenizer_dir: str, completions_json: str) -> None:
    import ray
    import torch
    import transfer_queue as tq
    from transformers import AutoTokenizer
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    from icdreward_verl import recipe
    from icdreward_verl.reward_manager import IcdRewardManager

    from _verl_batch import agent_loop_request

    samples: list[dict[str, Any]] = json.loads(Path(completions_json).read_text())
    n, prompts = 4, 2
    options = recipe.RecipeOptions(
        tokenizer_dir,
        completions_json,  # never read: the stand-in rollout feeds the step
        completions_json,
        "/tmp/icdreward-v1-step",
        n_gpus=1,
        extra_overrides=(
            f"data.train_batch_size={prompts}",
            f"actor_rollout_ref.rollout.n={n}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1",
            "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
            "+reward.reward_kwargs.max_wait_ms=5",
        ),
    )
    config = recipe.compose(recipe.overrides(options))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    manager = IcdRewardManager(config, tokenizer, None)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    config.transfer_queue.enable = True
    tq.init(config.transfer_queue)
    try:
        trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config=config)
        records: list[dict[str, Any]] = []

        class Rollout:  # stands in for vLLM and AgentLoopManagerTQ
            def generate_sequences(self, batch: Any) -> None:
                uids = [str(u) for u in batch["uid"]]
                tq.kv_batch_put(
                    keys=uids, partition_id="train", tags=[{"status": "running"}] * len(uids)
                )
                keys, fields, tags = [], [], []
                for p, uid in enumerate(uids):
                    for s in range(n):
                        sample = samples[(p * n + s) % len(samples)]
                        request = agent_loop_request(tokenizer, sample)
                        out = asyncio.run(manager.run_single(request))
                        info = out["reward_extra_info"]
                        if p == 0 and s == 0:
                            info = {**info, "exact_match": float("nan")}  # malformed value
                        records.append({"uid": uid, **info})
                        response = request.batch["responses"][0]
                        rm = torch.zeros(len(response))
                        rm[-1] = out["reward_score"]
                        keys.append(f"{uid}_{s}_0")
                        fields.append(
                            {
                                "prompts": request.batch["prompts"][0],
                                "responses": response,
                                "response_mask": torch.ones_like(response),
                                "rm_scores": rm,
                                "extra_fields": {"reward_extra_info": info},
                            }
                        )
                        tags.append({"status": "success", "global_steps": trainer.global_steps})
                tq.kv_batch_put(
                    keys=keys,
                    partition_id="train",
                    fields=list_of_dict_to_tensordict(fields),
                    tags=tags,
                )
                tq.kv_batch_put(
                    keys=uids, partition_id="train", tags=[{"status": "finished"}] * len(uids)
                )

        class Weights:  # stands in for the vLLM weight sync
            def sleep_replicas(self) -> None:
                return None

        class Rewards:  # rewards were computed in the rollout (verl's streaming path)
            reward_loop_worker_handles = (object(),)

        def unchanged(batch: Any, metrics: dict[str, Any], **_: Any) -> Any:
            return batch

        note = samples[0]["note"]
        messages = [{"role": "user", "content": note}]
        trainer.train_dataloader = [
            {
                "raw_prompt": np.array([messages] * prompts + [[]], dtype=object)[:prompts],
                "data_source": np.array(["icdreward/icd10cm"] * prompts, dtype=object),
            }
        ]
        trainer.train_dataloader_it = None
        trainer.agent_loop_manager = Rollout()
        trainer.checkpoint_manager = Weights()
        trainer.reward_loop_manager = Rewards()
        for stage in ("_balance_batch", "_compute_old_log_prob", "_compute_advantage"):
            setattr(trainer, stage, unchanged)
        trainer._update_actor = unchanged
        trainer.use_reference_policy = trainer.use_critic = False
        trainer.global_steps = 1
        trainer.curr_step_profile = False
        metrics: dict[str, Any] = {}
        batch = trainer.step(metrics, {})
        print(
            json.dumps(
                {
                    "sampler": type(trainer.replay_buffer).__name__,
                    "keys": len(batch.keys),
                    "metrics": {k: v for k, v in metrics.items() if k.startswith("icdreward/")},
                    "records": records,
                }
            )
        )
    finally:
        tq.close()
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
