"""The :class:`CodeSet`: validation, hierarchy and tensor encoding of ICD-10-CM codes.

Rewards call :meth:`CodeSet.validate_many`, :meth:`CodeSet.encode` and
:meth:`CodeSet.level_ids` once per batch, so those three are written for speed: one
dictionary lookup per code in the common case, per-code results memoized (codes repeat
a lot within and across batches), and tensors built from a single bytes buffer.
"""

from __future__ import annotations

import functools
import operator
import struct
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from itertools import compress

import attrs
import torch

from icdreward.codeset._constants import CODE_WIDTH, DEFAULT_YEAR, LEVELS
from icdreward.codeset._freetext import TextMatch, TextMatcher
from icdreward.codeset._normalize import normalize_code
from icdreward.codeset._table import Table, available_years, read_table, read_terms

__all__ = ["CodeInfo", "CodeSet", "load_codeset"]

_MEMO_LIMIT = 1 << 18
"""Entries kept per memo before it is cleared (bounds memory on adversarial input)."""

_TEXT_CACHE_SIZE = 65536
_NO_LEVELS = array("i", [-1] * len(LEVELS)).tobytes()


@attrs.frozen
class CodeInfo:
    """Everything the code set knows about one category or code.

    Attributes:
        code: normalized code (``"M5116"``).
        kind: ``"category"`` (3 characters) or ``"subcategory"``.
        billable: whether the code is valid on a claim (a leaf of the tabular list).
        description: its title in the tabular list.
        parent: the block of a category, else the parent code.
        chapter: chapter number as a string (``"13"``).
        chapter_title: title of the chapter.
        block: block id (``"M50-M54"``).
        block_title: title of the block.
        category: the 3-character category.
        ancestors: chapter, block, category, ... down to the parent (the code itself
            excluded): ``CodeSet.hierarchy(code) == (*info.ancestors, info.code)``.
    """

    code: str
    kind: str
    billable: bool
    description: str
    parent: str | None
    chapter: str
    chapter_title: str
    block: str
    block_title: str
    category: str
    ancestors: tuple[str, ...]


class CodeSet:
    """One year of ICD-10-CM, loaded from the shipped table. Use :func:`load_codeset`.

    Inputs are normalized with :meth:`normalize` (so ``"m51.16 "`` finds ``M51.16``);
    chapters (``"13"``) and blocks (``"M50-M54"``) are not codes: :meth:`is_valid` is
    false for them, and :meth:`chapter_title` / :meth:`block_title` look them up.

    >>> cs = load_codeset()
    >>> cs.is_valid("m51.16"), cs.is_billable("M51"), cs.describe("E11.9")
    (True, False, 'Type 2 diabetes mellitus without complications')
    >>> cs.hierarchy("M51.16")
    ('13', 'M50-M54', 'M51', 'M511', 'M5116')
    """

    normalize = staticmethod(normalize_code)

    def __init__(self, table: Table) -> None:
        """Wrap a parsed :class:`~icdreward.codeset._table.Table`."""
        self._table = table
        self._index = table.index
        # Membership alone: a set's table is one array (a dict's is two), so a lookup
        # touches less memory, and 100,000 validations are bound by memory latency.
        self._members = frozenset(table.index)
        self._category_block = table.category_blocks
        self._padded: dict[str, bytes] = {}
        # Every code of the year, read on first use: policies answer codes from the whole
        # code set, so a memo filled one miss at a time would miss for most of a run.
        self._level_table: dict[str, bytes] | None = None
        self._levels: dict[str, bytes] = {}
        self._levels_lock = threading.Lock()
        self._matcher_lock = threading.Lock()
        self._match_cached: Callable[[str], TextMatch | None] | None = None

    @property
    def year(self) -> int:
        """Fiscal year of the code set (2026 is the April 2026 FY2026 release)."""
        return self._table.year

    def __repr__(self) -> str:
        return f"CodeSet(year={self.year}, codes={len(self)})"

    def __reduce__(self) -> tuple[Callable[[int], CodeSet], tuple[int]]:
        # Pickle as "the code set of year N": rewards holding a CodeSet are sent to
        # worker processes (Ray, multiprocessing), which then load it from the package.
        return load_codeset, (self.year,)

    def __len__(self) -> int:
        return len(self._table.codes)

    def __contains__(self, code: object) -> bool:
        return normalize_code(code) in self._members

    def codes(self) -> Iterator[str]:
        """Iterate over every category and (sub)code, billable or not, in tabular order."""
        return iter(self._table.codes)

    def chapters(self) -> Iterator[str]:
        """Iterate over the chapter ids (``"1"`` to ``"22"``) in order."""
        return iter(self._table.chapters)

    def blocks(self) -> Iterator[str]:
        """Iterate over the block ids (``"A00-A09"`` ... ``"B99"`` ...) in tabular order."""
        return iter(self._table.blocks)

    # -- validation --------------------------------------------------------------------

    def is_valid(self, code: object) -> bool:
        """Whether ``code`` is a category, subcategory or billable code of this year."""
        return normalize_code(code) in self._members

    def is_billable(self, code: object) -> bool:
        """Whether ``code`` is billable (a leaf of the tabular list)."""
        position = self._index.get(normalize_code(code))
        return position is not None and bool(self._table.billable[position])

    def validate_many(self, codes: Sequence[str]) -> list[bool]:
        """:meth:`is_valid` for many codes; normalized input takes one lookup per code."""
        members = self._members
        if not isinstance(codes, (list, tuple)):
            codes = list(codes)
        try:
            # The lookups of the codes as given run in C; only the misses (written
            # otherwise, or not codes) are normalized and, if that changed them, looked
            # up again.
            valid = list(map(members.__contains__, codes))
        except TypeError:  # an unhashable item; rare, so take the slow path for all
            return [normalize_code(code) in members for code in codes]
        if not all(valid):
            for i in compress(range(len(valid)), map(operator.not_, valid)):
                code = codes[i]
                normalized = normalize_code(code)
                valid[i] = normalized is not code and normalized in members
        return valid

    # -- descriptions and hierarchy ----------------------------------------------------

    def describe(self, code: object) -> str | None:
        """Title of a category or code, or ``None`` if it does not exist."""
        position = self._index.get(normalize_code(code))
        return None if position is None else self._table.descriptions[position]

    def chapter_title(self, chapter_id: str) -> str:
        """Title of a chapter given its number (``"13"``); ``KeyError`` if unknown."""
        key = chapter_id.strip() if isinstance(chapter_id, str) else str(chapter_id)
        entry = self._table.chapters.get(key) or self._table.chapters.get(key.lstrip("0"))
        if entry is None:
            raise KeyError(f"no chapter {chapter_id!r} in ICD-10-CM {self.year}")
        return entry[1]

    def block_title(self, block_id: str) -> str:
        """Title of a block given its id (``"M50-M54"``); ``KeyError`` if unknown."""
        key = "".join(str(block_id).split()).upper()
        entry = self._table.blocks.get(key)
        if entry is None:
            raise KeyError(f"no block {block_id!r} in ICD-10-CM {self.year}")
        return entry[1]

    def _category_path(self, code: str) -> tuple[str, str] | None:
        """(chapter, block) of the category ``code[:3]``, if that category exists."""
        block = self._category_block.get(code[:3])
        if block is None:
            return None
        return self._table.blocks[block][2], block

    def hierarchy(self, code: object) -> tuple[str, ...]:
        """Chapter, block, category, existing intermediate codes and the code itself.

        A code missing from this year (e.g. from an older year's gold labels) keeps the
        levels that exist: its chapter, block, category and existing prefixes; a code
        whose category does not exist gives ``()``.

        >>> load_codeset().hierarchy("M51.1X")  # M511 exists, M511X does not
        ('13', 'M50-M54', 'M51', 'M511')
        """
        normalized = normalize_code(code)
        path = self._category_path(normalized)
        if path is None:
            return ()
        index = self._index
        prefixes = tuple(
            normalized[:width]
            for width in range(3, len(normalized) + 1)
            if normalized[:width] in index
        )
        return (*path, *prefixes)

    def lookup(self, code: object) -> CodeInfo | None:
        """Everything known about ``code``, or ``None`` if it does not exist."""
        normalized = normalize_code(code)
        position = self._index.get(normalized)
        if position is None:
            return None
        table = self._table
        chapter, block = self._category_path(normalized) or ("", "")
        return CodeInfo(
            code=normalized,
            kind="category" if len(normalized) == 3 else "subcategory",
            billable=bool(table.billable[position]),
            description=table.descriptions[position],
            parent=table.codes[parent] if (parent := table.parents[position]) >= 0 else block,
            chapter=chapter,
            chapter_title=table.chapters[chapter][1],
            block=block,
            block_title=table.blocks[block][1],
            category=normalized[:3],
            ancestors=self.hierarchy(normalized)[:-1],
        )

    # -- tensors -----------------------------------------------------------------------

    def encode(self, codes: Sequence[str]) -> torch.Tensor:
        """``uint8 [N, CODE_WIDTH]``: ASCII bytes of each code, zero padded or truncated.

        The codes are used as given (normalize them first); ``""`` and non-strings give
        a row of zeros, non-ASCII characters become ``?``.

        >>> load_codeset().encode(["M5116", ""]).tolist()
        [[77, 53, 49, 49, 54, 0, 0], [0, 0, 0, 0, 0, 0, 0]]
        """
        memo = self._padded
        try:
            rows = [memo.get(code) or self._pad(code) for code in codes]
        except TypeError:
            rows = [self._pad(code if isinstance(code, str) else "") for code in codes]
        return _tensor(b"".join(rows), len(rows), torch.uint8, CODE_WIDTH)

    def _pad(self, code: str) -> bytes:
        if not isinstance(code, str):
            code = ""
        row = code[:CODE_WIDTH].encode("ascii", "replace").ljust(CODE_WIDTH, b"\0")
        if len(self._padded) >= _MEMO_LIMIT:
            self._padded.clear()
        self._padded[code] = row
        return row

    def level_ids(self, codes: Sequence[str]) -> torch.Tensor:
        """``int32 [N, len(LEVELS)]``: ids of each code's chapter, block, category,
        4-, 5- and 6-character prefix and of the code itself; -1 where absent.

        Ids are only comparable within a column (two codes share an ancestor at a level
        when their ids there are equal and not -1). A code missing from this year keeps
        the levels that exist, like :meth:`hierarchy`; nothing raises.

        >>> ids = load_codeset().level_ids(["M51.16", "M51.17", "M51.1X", ""])
        >>> ids.shape, ids.dtype
        (torch.Size([4, 7]), torch.int32)
        >>> ((ids[0] == ids[1]) & (ids[0] >= 0)).tolist()  # shared down to M51.1
        [True, True, True, True, False, False, False]
        >>> (ids[2] >= 0).tolist(), (ids[3] >= 0).any().item()  # M51.1X: no such code
        ([True, True, True, True, False, False, False], False)
        """
        if self._level_table is None:
            self._fill_levels()
        memo = self._levels
        try:
            rows = [memo.get(code) or self._level_row(code) for code in codes]
        except TypeError:
            rows = [
                _NO_LEVELS if not isinstance(code, str) else self._level_row(code) for code in codes
            ]
        return _tensor(b"".join(rows), len(rows), torch.int32, len(LEVELS))

    def _fill_levels(self) -> None:
        """Read the level row of every code of the year into the memo (about 0.2 s).

        The rows are those :meth:`_level_row` gives, built per category rather than
        per code: the year's codes are normalised and each has its category.
        """
        with self._levels_lock:
            if self._level_table is not None:
                return
            table, get = self._table, self._index.get
            paths = {
                category: (table.chapters[table.blocks[block][2]][0], table.blocks[block][0])
                for category, block in self._category_block.items()
            }
            pack = struct.Struct(f"={len(LEVELS)}i").pack
            rows: dict[str, bytes] = {}
            for code in table.codes:
                path = paths.get(code[:3])
                if path is None:  # (no such code in a year's table; read it as any other)
                    rows[code] = self._level_row(code)
                    continue
                n = len(code)
                rows[code] = pack(
                    path[0], path[1], get(code[:3], -1),
                    get(code[:4], -1) if n >= 4 else -1,
                    get(code[:5], -1) if n >= 5 else -1,
                    get(code[:6], -1) if n >= 6 else -1,
                    get(code, -1),
                )  # fmt: skip
            self._level_table = rows
            self._levels = dict(rows)

    def _level_row(self, code: str) -> bytes:
        normalized = normalize_code(code)
        path = self._category_path(normalized)
        if path is None:
            row = _NO_LEVELS
        else:
            chapter, block = path
            get = self._index.get
            ids = [self._table.chapters[chapter][0], self._table.blocks[block][0]]
            for width in (3, 4, 5, 6):
                found = get(normalized[:width]) if len(normalized) >= width else None
                ids.append(-1 if found is None else found)
            found = get(normalized)
            ids.append(-1 if found is None else found)
            row = array("i", ids).tobytes()
        if len(self._levels) >= _MEMO_LIMIT:
            # Misses on adversarial input are dropped, the year's codes kept.
            self._levels = dict(self._level_table or {})
        self._levels[code] = row
        return row

    # -- free text ---------------------------------------------------------------------

    def match_text(self, text: str) -> TextMatch | None:
        """Map a diagnosis written in words to its closest code, or ``None``.

        The first call loads the inclusion terms and indexes them (about 1 s); results
        are cached per text (the last 65,536 texts).

        >>> load_codeset().match_text("type 2 diabetes mellitus without complications").code
        'E119'
        """
        if not isinstance(text, str) or not text.strip():
            return None
        cached = self._match_cached
        if cached is None:
            cached = self._build_matcher()
        return cached(text)

    def _build_matcher(self) -> Callable[[str], TextMatch | None]:
        with self._matcher_lock:
            if self._match_cached is None:
                table = self._table
                entries = list(zip(table.codes, table.descriptions, strict=True))
                entries.extend(read_terms(self.year))
                billable = frozenset(
                    code for code, flag in zip(table.codes, table.billable, strict=True) if flag
                )
                matcher = TextMatcher(entries, billable)
                self._match_cached = functools.lru_cache(maxsize=_TEXT_CACHE_SIZE)(matcher.match)
            return self._match_cached


def _tensor(buffer: bytes, rows: int, dtype: torch.dtype, width: int) -> torch.Tensor:
    if rows == 0:
        return torch.empty((0, width), dtype=dtype)
    return torch.frombuffer(bytearray(buffer), dtype=dtype).view(rows, width)


@functools.cache
def _load(year: int) -> CodeSet:
    return CodeSet(read_table(year))


def load_codeset(year: int = DEFAULT_YEAR) -> CodeSet:
    """Return the code set of ``year``, loaded once per process and then shared.

    Raises:
        ValueError: no table is shipped for ``year`` (the message lists those that are).
    """
    years = available_years()
    try:
        wanted = operator.index(year)
    except TypeError:
        wanted = None
    if wanted is None or isinstance(year, bool) or wanted not in years:
        shown = ", ".join(map(str, years)) or "none"
        raise ValueError(f"no ICD-10-CM code set for year {year!r}; available years: {shown}")
    return _load(wanted)
