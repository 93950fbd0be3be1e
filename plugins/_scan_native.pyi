from collections.abc import Sequence

def trace_counts(
    trace: str,
    note_terms: Sequence[str],
    code_terms: Sequence[str],
    sentence_chars: int,
    tail_chars: int,
    /,
) -> tuple[int, int, int, int, int, int] | None: ...
def think_spans(texts: Sequence[object], /) -> tuple[list[int], list[int], list[int]]: ...
