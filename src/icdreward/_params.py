"""Kept for the core modules that still import :func:`structure_params` from here.

The function is public as :func:`icdreward.params.structure_params`: import it from
there.
"""

from __future__ import annotations

from icdreward.params import structure_params

__all__ = ["structure_params"]
