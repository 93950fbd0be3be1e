"""Benchmark helpers: per-item figures recorded next to pytest-benchmark's own stats."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
