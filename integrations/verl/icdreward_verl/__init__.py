"""icdreward as the reward of a verl GRPO run.

verl finds everything here by configuration, never by registration:

- :func:`icdreward_verl.reward_function.compute_score` for
  ``reward.custom_reward_function.path=pkg://icdreward_verl.reward_function`` (verl 0.9's
  per-sample call, and the batched call of verl < 0.7's batch reward manager);
- :class:`icdreward_verl.reward_manager.IcdRewardManager` for verl's reward loop
  (``reward.reward_manager.source=importlib``): concurrent per-sample calls are scored
  as batches;
- :mod:`icdreward_verl.recipe`: the DeepICD-R1 4-GPU GRPO launch, with a dry run that
  composes and validates verl's own configuration without GPUs;
- :mod:`icdreward_verl.data`: admission notes with codes to verl's training parquet
  (``icdreward prepare``).

The settings that both reward routes take are :class:`RewardSettings`. Only the reward
manager and the recipe's composition import verl, so this package and the data
preparation import without it.
"""

from __future__ import annotations

from icdreward_verl._settings import DEFAULT_PRESET, RewardSettings

__all__ = ["DEFAULT_PRESET", "RewardSettings"]
