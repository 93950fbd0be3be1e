from collections.abc import Mapping, Sequence
from typing import Any

def trace_counts(
    trace: str,
    note_terms: Sequence[str],
    code_terms: Sequence[str],
    sentence_chars: int,
    tail_chars: int,
    /,
) -> tuple[int, int, int, int, int, int] | None: ...
def well_formed_rows(
    texts: Sequence[object], endings: Mapping[str, Any], ending_chars: int, /
) -> tuple[list[Any], list[int]]: ...
