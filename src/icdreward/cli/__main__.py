"""``python -m icdreward.cli``: the same as the ``icdreward`` console script."""

from __future__ import annotations

import sys

from icdreward.cli import main

if __name__ == "__main__":
    sys.exit(main())
