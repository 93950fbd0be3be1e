"""What a degenerate strategy is, and the honest row it starts from."""

from __future__ import annotations

import bisect
import random
import zlib
from typing import ClassVar

import attrs

from icdreward.codeset import CodeSet

__all__ = ["AuditRow", "Strategy"]


@attrs.frozen
class AuditRow:
    """One honest completion and what a strategy may use to degrade it.

    Attributes:
        note: the admission note.
        golds: the gold codes, normalized, primary first.
        completion: the honest completion, as given.
        think: its reasoning trace, as the audited engine's parser read it.
        answer: the text of its diagnosis block, as written (``"M51.16"``).
        code: its predicted code, normalized (``"M5116"``); never empty.
        codeset: the audited engine's code set.
        index: the row's position in the audit's input (seeds :meth:`rng`).
    """

    note: str
    golds: tuple[str, ...]
    completion: str
    think: str
    answer: str
    code: str
    codeset: CodeSet
    index: int = 0

    @property
    def opens_think(self) -> bool:
        """Whether the honest completion opens its own ``<think>`` (else the prompt did)."""
        return self.completion.lstrip().startswith("<think>")

    def completion_with(
        self, *, think: str | None = None, answer: str | None = None, after: str = ""
    ) -> str:
        """A completion shaped like the honest one, with its trace or answer replaced.

        Args:
            think: the trace (default: the honest trace).
            answer: the text of the diagnosis block (default: the honest answer).
            after: text appended after the closing ``</diagnosis>``.

        >>> from icdreward.codeset import load_codeset
        >>> row = AuditRow("Note.", ("M5116",), "Disc.</think><diagnosis>M51.16</diagnosis>",
        ...                "Disc.", "M51.16", "M5116", load_codeset())
        >>> row.completion_with(answer="M51.16 or M51.17")
        'Disc.</think>\\n<diagnosis>M51.16 or M51.17</diagnosis>'
        """
        trace = self.think if think is None else think
        block = self.answer if answer is None else answer
        head = "<think>" if self.opens_think else ""
        return f"{head}{trace}</think>\n<diagnosis>{block}</diagnosis>{after}"

    def rng(self, salt: str) -> random.Random:
        """A generator seeded by the row and ``salt``: the same audit builds the same text."""
        return random.Random(zlib.crc32(f"{self.index}:{salt}".encode()))

    def other_codes(self, count: int) -> list[str]:
        """Up to ``count`` valid codes near :attr:`code` (same category first), not it.

        Codes are returned in dotted form (``"M51.17"``), the way a model writes them.
        """
        found: list[str] = []
        for prefix in (self.code[:4], self.code[:3], self.code[:1]):
            for candidate in _codes_starting(self.codeset, prefix):
                if candidate != self.code and candidate not in found:
                    found.append(candidate)
                    if len(found) == count:
                        return [_dotted(c) for c in found]
        return [_dotted(c) for c in found]


class Strategy:
    """A degenerate way of answering that a reward must not pay as much as honesty.

    A strategy turns an honest :class:`AuditRow` into a completion that keeps the
    honest predicted code but games some part of the reward (copying the note,
    stuffing keywords, hedging with several codes, ...). ``icdreward audit`` scores
    both with the same engine: a strategy that reaches the honest score on some row
    is an exploit a GRPO policy will find.

    Subclasses set :attr:`name` and :attr:`description` and implement :meth:`build`;
    a plugin registers them with the ``icdreward_register_strategies`` hook.
    """

    name: ClassVar[str] = ""
    """Unique name, shown in the audit table."""

    description: ClassVar[str] = ""
    """One line: what the strategy does."""

    def build(self, row: AuditRow) -> str | None:
        """The degenerate completion for ``row``, or ``None`` where it does not apply."""
        raise NotImplementedError


def _dotted(code: str) -> str:
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _codes_starting(codeset: CodeSet, prefix: str) -> list[str]:
    # A scan of the ~98,000 codes costs about 10 ms: nearly every row wants a few
    # neighbours, so the sorted table is built once per code set and searched by bisection.
    table = _SORTED.get(codeset.year)
    if table is None:
        table = _SORTED[codeset.year] = sorted(codeset.codes())
    start = bisect.bisect_left(table, prefix)
    out: list[str] = []
    for code in table[start : start + 64]:
        if not code.startswith(prefix):
            break
        out.append(code)
    return out


_SORTED: dict[int, list[str]] = {}
