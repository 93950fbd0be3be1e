"""Completions for admission notes, with the training prompt, ready for ``score`` and ``eval``.

Two back ends share the input rows (:func:`read_note_rows`), the output format
(:func:`sample_records`) and resuming (:func:`prepare_output`):

* :func:`generate_endpoint`: an OpenAI-compatible chat endpoint (``vllm serve``),
  through the core's :mod:`icdreward.openai_client` (which the LLM judge uses too),
  with a concurrency cap, timeouts and retries with backoff;
* :func:`generate_hf`: a local ``transformers`` causal LM (:func:`load_hf`), batched
  ``generate`` with left padding, on CPU or GPU.

See ``docs/generation.md`` and ``icdreward generate --help``.
"""

from __future__ import annotations

from ._endpoint import EndpointOptions, generate_endpoint, request_body
from ._hf import generate_hf, load_hf
from ._output import RowWriter, prepare_output, sample_records
from ._params import SamplingParams
from ._rows import NoteRow, read_note_rows, row_key

__all__ = [
    "EndpointOptions",
    "NoteRow",
    "RowWriter",
    "SamplingParams",
    "generate_endpoint",
    "generate_hf",
    "load_hf",
    "prepare_output",
    "read_note_rows",
    "request_body",
    "row_key",
    "sample_records",
]
