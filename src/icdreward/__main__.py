"""``python -m icdreward`` runs the command line interface."""

from __future__ import annotations

from icdreward.cli import run

if __name__ == "__main__":
    run()
