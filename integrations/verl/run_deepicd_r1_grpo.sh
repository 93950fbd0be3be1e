#!/usr/bin/env bash
# DeepICD-R1-7B GRPO with verl 0.9 on one node of 4 GPUs, rewarded by icdreward.
#
# Usage:
#   integrations/verl/run_deepicd_r1_grpo.sh --model Qwen/Qwen2.5-7B-Instruct \
#       --train DATA/train.parquet --val DATA/val.parquet --output runs/deepicd-r1 \
#       [--judge-url http://127.0.0.1:8001/v1 --judge-model meta-llama/Llama-3.1-8B-Instruct] \
#       [--dry-run] [-- extra Hydra overrides, e.g. trainer.logger=[console,wandb]]
#
# It runs `python -m icdreward_verl.recipe` with the same arguments (`--help` lists them
# all: --n-gpus, --nnodes, --preset or --config, --logger, --save-freq, ...). The recipe
# sets the model card's hyperparameters at their verl 0.9.1 keys, checks the result with
# verl's own configuration code, prints the verl command and replaces itself with
# `python -m verl.trainer.main_ppo ...`. With --dry-run it only composes and validates
# verl's configuration and prints it: no GPU, no Ray, nothing started.
# DATA comes from `icdreward prepare` (train.parquet and val.parquet).
# `python` is the interpreter on PATH: activate the environment that has icdreward
# and verl installed first.
#
# The LLM judge is optional. Without --judge-url the reward has no judge component
# (the rule-based rewards of the preset only). With it, start an OpenAI-compatible
# server for the judge beside training before you launch, and wait until it answers
# on http://127.0.0.1:8001/v1/models:
#
#   - on a 5th GPU, which training does not use (training takes GPUs 0-3):
#       CUDA_VISIBLE_DEVICES=4 vllm serve meta-llama/Llama-3.1-8B-Instruct --port 8001
#     and launch training with CUDA_VISIBLE_DEVICES=0,1,2,3;
#   - or sharing a training GPU: the judge then holds its memory for the whole run,
#     while verl frees the rollout's 40 % (gpu_memory_utilization 0.4) between
#     generation and training. An 8B model in bf16 needs about 16 GB of weights plus
#     its KV cache, e.g. on an 80 GB GPU:
#       CUDA_VISIBLE_DEVICES=0 vllm serve meta-llama/Llama-3.1-8B-Instruct --port 8001 \
#           --gpu-memory-utilization 0.25 --max-model-len 8192
#     If training then runs out of memory on that GPU, give the judge its own GPU or
#     pass `-- actor_rollout_ref.rollout.gpu_memory_utilization=0.3`.
#
# Then add: --judge-url http://127.0.0.1:8001/v1 --judge-model meta-llama/Llama-3.1-8B-Instruct
# (the model name as the server's /v1/models lists it). A judge that is down or slow
# makes the judge component abstain for those samples; it does not stop training.

set -euo pipefail

exec python -m icdreward_verl.recipe "$@"
