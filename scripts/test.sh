#!/usr/bin/env bash
# Run the test suite (sets up ./.venv first when needed). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
if [[ ! -x .venv/bin/pytest ]] || ! .venv/bin/python -c "import icdreward" >/dev/null 2>&1; then
    scripts/setup.sh --no-run
fi
exec .venv/bin/python -m pytest "$@"
