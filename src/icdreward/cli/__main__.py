"""``python -m icdreward.cli``: the same as the ``icdreward`` console script."""

from __future__ import annotations

from icdreward.cli import run

if __name__ == "__main__":
    run()
