"""Fixtures of the verl integration tests: a real tokenizer built offline, on disk.

verl loads tokenizers by path (``hf_tokenizer``), so the tiny byte-level BPE tokenizer
of the TRL example (ChatML template, ``<|im_end|>`` as EOS, as in Qwen2.5) is trained
on the example notes and completions and saved once per test session. No hub access.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _trl_example() -> ModuleType:
    name = "trl_grpo_cpu"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / "trl_grpo_cpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _rows(name: str) -> list[dict[str, Any]]:
    with (EXAMPLES / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def example_notes() -> list[dict[str, Any]]:
    """``examples/notes.jsonl``: ``id``, ``note`` and gold ``codes`` (primary first)."""
    return _rows("notes.jsonl")


@pytest.fixture(scope="session")
def example_completions() -> list[dict[str, Any]]:
    """``examples/completions.jsonl``: ``completion``, ``gold`` and ``note`` rows."""
    return _rows("completions.jsonl")


@pytest.fixture(scope="session")
def tokenizer_dir(
    tmp_path_factory: pytest.TempPathFactory,
    example_notes: list[dict[str, Any]],
    example_completions: list[dict[str, Any]],
) -> Path:
    """A directory holding a saved tiny tokenizer, loadable with ``AutoTokenizer``."""
    corpus = [n["note"] for n in example_notes] + [c["completion"] for c in example_completions]
    tokenizer = _trl_example().build_tokenizer(corpus)
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(str(path))
    return path
