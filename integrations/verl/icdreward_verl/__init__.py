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

The modules import verl only where they need it, so this package imports without it.
"""

from __future__ import annotations

__all__: list[str] = []
