#!/usr/bin/env bash
# Set up icdreward in ./.venv and score the bundled examples with the default preset.
#
#   scripts/setup.sh            set up (if needed) and run the example job
#   scripts/setup.sh --no-run   set up only
#
# PyTorch: on a machine without an NVIDIA GPU the CPU build torch==2.13.0 is installed
# first, so that pip never pulls the multi-gigabyte CUDA build; with a GPU (nvidia-smi
# present) pip keeps or installs the CUDA build. An existing torch is never replaced.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
run_job=1
[[ "${1:-}" == "--no-run" ]] && run_job=0

python_bin="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$python_bin" -m venv .venv
fi
py=.venv/bin/python
"$py" -m pip install --quiet --upgrade pip >/dev/null

if ! "$py" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found; pip will install the CUDA build of torch" >&2
    else
        echo "setup: no GPU; installing the CPU build torch==2.13.0" >&2
        "$py" -m pip install --quiet "torch==2.13.0"
    fi
fi

"$py" -m pip install --quiet -e ".[test,lint]"
echo "setup: icdreward $("$py" -c 'import icdreward; print(icdreward.__version__)') is ready in .venv" >&2

if [[ $run_job == 1 ]]; then
    .venv/bin/icdreward score examples/completions.jsonl --preset default \
        --output examples/scores.jsonl
    echo "setup: per-sample scores written to examples/scores.jsonl" >&2
fi
