"""Synthetic completions for the benchmarks, seeded.

:func:`completions` is the default corpus and is meant to look like a training batch:
golds are billable codes drawn from the whole shipped code set (thousands of distinct
ones), predictions are realistic near misses of them (the same code, the same category,
block or chapter, another chapter, a well-shaped code that does not exist, free text),
traces differ from each other (0 to 3 KB, words from the code descriptions), and a share
of completions is malformed. Samples come in groups of 8 that share a gold and a note,
like GRPO's n = 8.

:func:`repetitive_completions` is the earlier corpus (ten predicted codes, five golds and
about 85 distinct sentences), kept as an explicitly named case: every memo table of the
plugins answers nearly everything there, so it shows the best case, not the usual one.
"""

from __future__ import annotations

import functools
import random

import attrs

from icdreward.codeset import load_codeset

__all__ = [
    "GOLDS",
    "adversarial",
    "completions",
    "repetitive_completions",
    "trace",
]

GROUP = 8
"""Samples per prompt (GRPO's n)."""

# -- the varied corpus -------------------------------------------------------------------

# How a predicted code relates to its gold, with its share of the samples.
_OUTCOMES = {
    "exact": 0.30,
    "category": 0.16,
    "block": 0.12,
    "chapter": 0.10,
    "other_chapter": 0.17,
    "invalid": 0.07,
    "free_text": 0.04,
    "no_code": 0.04,
}
# How a completion is laid out, with its share; all but "well_formed" are malformed.
_LAYOUTS = {
    "well_formed": 0.86,
    "code_in_sentence": 0.03,
    "unclosed_think": 0.02,
    "no_diagnosis": 0.02,
    "unclosed_diagnosis": 0.01,
    "extra_pair": 0.015,
    "outside_text": 0.015,
    "repeated_think_tag": 0.01,
    "loop": 0.005,
    "empty": 0.005,
}
_TEMPLATES = [
    "The presentation is most consistent with {d}.",
    "Findings on admission suggest {d}, given the history.",
    "{D} is considered but the course argues against it.",
    "There is a documented history of {d}.",
    "Laboratory and imaging results support {d}.",
    "The most specific code should describe {d}.",
    "Alternative explanations such as {d} are less likely.",
    "The note mentions {d} during the previous admission.",
    "On examination there is evidence of {d}, and vital signs are stable.",
    "Treatment was started for {d} and the patient improved",
    "{D} remains on the differential until cultures return.",
    "Given age {n} and these findings, {d} explains the symptoms best.",
]
_DIGITS = "0123456789"
_FREE_TEXT_POOL = 48
_SENTENCE_POOL = 6000


@attrs.frozen
class _Codes:
    """The shipped code set, indexed for drawing golds and near misses."""

    billable: tuple[str, ...]
    by_category: dict[str, tuple[str, ...]]
    by_block: dict[str, tuple[str, ...]]
    by_chapter: dict[str, tuple[str, ...]]
    place: dict[str, tuple[str, str]]  # category -> (chapter, block)
    describe: dict[str, str]
    members: frozenset[str]
    free_text: tuple[str, ...]  # diagnoses a model writes in words (a fixed pool)
    sentences: tuple[str, ...]


@functools.cache
def _codes() -> _Codes:
    cs = load_codeset()
    every = list(cs.codes())
    describe = {code: cs.describe(code) or "" for code in every}
    billable = tuple(code for code in every if cs.is_billable(code))
    place: dict[str, tuple[str, str]] = {}
    by_category: dict[str, list[str]] = {}
    by_block: dict[str, list[str]] = {}
    by_chapter: dict[str, list[str]] = {}
    for code in billable:
        category = code[:3]
        if category not in place:
            chapter, block = cs.hierarchy(category)[:2]
            place[category] = (chapter, block)
        chapter, block = place[category]
        by_category.setdefault(category, []).append(code)
        by_block.setdefault(block, []).append(code)
        by_chapter.setdefault(chapter, []).append(code)
    rng = random.Random(2026)
    # Free text is a fixed pool: the code set's matcher takes milliseconds per new text
    # (and caches each), and a model that answers in words repeats a few phrases.
    free_text = tuple(describe[code] for code in rng.sample(billable, _FREE_TEXT_POOL))
    # Sentences with the words of many code descriptions: the vocabulary of the traces.
    lowered = [describe[code].lower() for code in rng.sample(billable, _SENTENCE_POOL)]
    sentences = tuple(
        rng.choice(_TEMPLATES).format(d=d, D=d[:1].upper() + d[1:], n=rng.randint(18, 95))
        for d in lowered
    )
    return _Codes(
        billable=billable,
        by_category={k: tuple(v) for k, v in by_category.items()},
        by_block={k: tuple(v) for k, v in by_block.items()},
        by_chapter={k: tuple(v) for k, v in by_chapter.items()},
        place=place,
        describe=describe,
        members=frozenset(every),
        free_text=free_text,
        sentences=sentences,
    )


def _other(rng: random.Random, pool: tuple[str, ...], avoid: set[str]) -> str | None:
    """A code of ``pool`` outside ``avoid`` (None when there is none)."""
    for _ in range(8):
        code = rng.choice(pool)
        if code not in avoid:
            return code
    rest = [code for code in pool if code not in avoid]
    return rng.choice(rest) if rest else None


def _near_miss(rng: random.Random, codes: _Codes, gold: str, outcome: str) -> str:
    """A predicted code (or text) that relates to ``gold`` as ``outcome`` says."""
    chapter, block = codes.place[gold[:3]]
    if outcome == "category":
        same = _other(rng, codes.by_category[gold[:3]], {gold})
        return same or gold[:3]
    if outcome == "block":
        same_category = set(codes.by_category[gold[:3]])
        return _other(rng, codes.by_block[block], same_category) or gold[:3]
    if outcome == "chapter":
        same_block = set(codes.by_block[block])
        return _other(rng, codes.by_chapter[chapter], same_block) or gold[:3]
    if outcome == "other_chapter":
        while True:
            code = rng.choice(codes.billable)
            if codes.place[code[:3]][0] != chapter:
                return code
    if outcome == "invalid":  # the shape of a code, but no such code this year
        # Subdivisions that do not exist, and 7th characters where none belongs (what
        # models get wrong), in a category that exists or one that does not.
        while True:
            tail = "".join(rng.choices(_DIGITS, k=rng.randint(1, 3)))
            if rng.random() < 0.3:
                tail += rng.choice("ADS")
            code = gold[:3] + tail if rng.random() < 0.7 else rng.choice("UWXY") + gold[1:3] + tail
            if code not in codes.members:
                return code
    if outcome == "free_text":
        return rng.choice(codes.free_text)
    if outcome == "no_code":
        return rng.choice(["unknown", "see above", "not sure", "N/A", "?", "diagnosis"])
    return gold


def _written(rng: random.Random, code: str) -> str:
    """``code`` as a model writes it: usually dotted, sometimes not, sometimes lower case."""
    roll = rng.random()
    dotted = code[:3] + "." + code[3:] if len(code) > 3 and roll < 0.75 else code
    return dotted.lower() if roll > 0.93 else dotted


def _trace(rng: random.Random, codes: _Codes, size: int, mentions: list[str]) -> str:
    """A trace of about ``size`` characters that differs from every other one."""
    if size <= 0:
        return ""
    count = size // 60 + 2
    parts = rng.choices(codes.sentences, k=count)
    for d in mentions:  # the gold's or the prediction's description, somewhere
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(_TEMPLATES[:6]).format(
            d=d.lower(), D=d, n=rng.randint(18, 95)))  # fmt: skip
    separators = rng.choices([" ", " ", " ", "\n", "\n\n"], k=len(parts))
    text = "".join(p + s for p, s in zip(parts, separators, strict=True))
    return text[:size].rstrip()


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.03:
        return 0
    if roll < 0.10:
        return rng.randint(1, 200)
    return rng.randint(200, 3000)


def _completion(rng: random.Random, codes: _Codes, gold: str) -> str:
    outcome = rng.choices(list(_OUTCOMES), weights=list(_OUTCOMES.values()))[0]
    layout = rng.choices(list(_LAYOUTS), weights=list(_LAYOUTS.values()))[0]
    predicted = _near_miss(rng, codes, gold, outcome)
    answer = predicted if outcome in ("free_text", "no_code") else _written(rng, predicted)
    mentions = [codes.describe.get(code, "") for code in (gold, predicted) if rng.random() < 0.5]
    think = _trace(rng, codes, _size(rng), [m for m in mentions if m])
    end = rng.choice(["\n</think>\n", "</think>\n", "\n</think>\n\n", "</think>"])
    if layout == "empty":
        return ""
    if layout == "loop":
        sentence = rng.choice(codes.sentences) + " "
        return sentence * (3000 // len(sentence)) + f"{end}<diagnosis>{answer}</diagnosis>"
    if layout == "code_in_sentence" and outcome not in ("free_text", "no_code"):
        words = codes.describe.get(predicted, "the site given above")
        return f"{think}{end}<diagnosis>{answer} ({words.lower()})</diagnosis>"
    if layout == "unclosed_think":
        return f"{think}\n<diagnosis>{answer}</diagnosis>"
    if layout == "no_diagnosis":
        return f"{think}{end}The diagnosis is {answer}."
    if layout == "unclosed_diagnosis":
        return f"{think}{end}<diagnosis>{answer}"
    base = f"{think}{end}<diagnosis>{answer}</diagnosis>"
    if layout == "extra_pair":
        second = _written(rng, rng.choice(codes.billable))
        return f"{base}\n<think>On reflection.</think>\n<diagnosis>{second}</diagnosis>"
    if layout == "outside_text":
        return f"{base}\nFinal answer: {answer}"
    if layout == "repeated_think_tag":
        return f"<think>\n{base}"
    return base


def completions(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """``n`` varied completions (see the module docstring), their golds and notes.

    The same ``seed`` gives the same corpus; different seeds give different golds,
    predictions and traces.
    """
    codes = _codes()
    rng = random.Random(seed)
    out: list[str] = []
    golds: list[str] = []
    notes: list[str] = []
    for start in range(0, n, GROUP):
        gold = rng.choice(codes.billable)
        note = _trace(rng, codes, rng.randint(800, 2500), [codes.describe[gold]])
        written = gold[:3] + "." + gold[3:] if len(gold) > 3 and rng.random() < 0.5 else gold
        for _ in range(min(GROUP, n - start)):
            out.append(_completion(rng, codes, gold))
            golds.append(written)
            notes.append(note)
    return out, golds, notes


# -- the repetitive corpus (the earlier one) ---------------------------------------------

_SENTENCES = [
    "The patient is a {age}-year-old {sex} admitted with {complaint}.",
    "On examination there is {finding}, and vital signs are stable apart from mild tachycardia.",
    "Laboratory results show {lab}, which supports the working diagnosis.",
    "Imaging demonstrates {imaging}, consistent with the clinical picture.",
    "The history includes {history}, which is relevant to the differential.",
    "Alternative explanations such as {alt} are less likely given the course.",
    "The symptoms started {onset} and progressed despite outpatient treatment.",
    "Given these findings the most specific code describes {summary}.",
]
_FILL = {
    "age": ["34", "52", "67", "71", "80"],
    "sex": ["man", "woman"],
    "complaint": [
        "low back pain radiating to the left leg",
        "productive cough and fever",
        "chest pain on exertion",
        "polyuria and polydipsia",
        "acute confusion",
    ],
    "finding": [
        "reduced ankle reflex on the left",
        "crackles at the right lung base",
        "a systolic murmur",
        "dry mucous membranes",
        "asterixis",
    ],
    "lab": [
        "an elevated white cell count",
        "a glucose of 312 mg/dL",
        "a raised troponin",
        "hyponatraemia of 128 mmol/L",
        "an elevated ammonia level",
    ],
    "imaging": [
        "a herniated disc at L4-L5 compressing the nerve root",
        "a right lower lobe consolidation",
        "an anterior wall motion abnormality",
        "no acute intracranial abnormality",
        "a nodular liver contour",
    ],
    "history": [
        "type 2 diabetes mellitus",
        "chronic obstructive pulmonary disease",
        "hypertension and hyperlipidaemia",
        "alcohol use disorder",
        "atrial fibrillation",
    ],
    "alt": [
        "spinal stenosis",
        "pulmonary embolism",
        "pericarditis",
        "urinary tract infection",
        "stroke",
    ],
    "onset": ["three days ago", "a week ago", "this morning", "two months ago", "yesterday"],
    "summary": [
        "lumbar disc disorder with radiculopathy",
        "lobar pneumonia",
        "non-ST elevation myocardial infarction",
        "diabetes with hyperglycaemia",
        "hepatic encephalopathy",
    ],
}
_CODES = ["M5116", "J181", "I214", "E1165", "K7682", "M5117", "J189", "I2109", "E119", "K7290"]
GOLDS = ["M5116", "J181", "I214", "E1165", "K7682"]


def trace(rng: random.Random, size: int = 2250) -> str:
    """A plausible reasoning trace of about ``size`` characters, from ~85 sentences."""
    parts: list[str] = []
    total = 0
    while total < size:
        template = rng.choice(_SENTENCES)
        sentence = template.format(**{k: rng.choice(v) for k, v in _FILL.items()})
        parts.append(sentence)
        total += len(sentence) + 1
    return " ".join(parts)[:size]


def repetitive_completions(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """``n`` well-formed completions of ~2.3 KB over ten codes and five golds (the best
    case for memo tables), their golds and notes."""
    rng = random.Random(seed)
    notes = [trace(rng, 1500) for _ in GOLDS]
    out, golds, note_col = [], [], []
    for i in range(n):
        k = (i // GROUP) % len(GOLDS)
        code = rng.choice(_CODES)
        dotted = code[:3] + "." + code[3:] if len(code) > 3 else code
        out.append(f"{trace(rng)}\n</think>\n<diagnosis>{dotted}</diagnosis>")
        golds.append(GOLDS[k])
        note_col.append(notes[k])
    return out, golds, note_col


def adversarial(size: int = 1_000_000) -> str:
    """About ``size`` characters of runs of newlines and thousands of unclosed tags."""
    unit = "\n" * 200 + "<think>" * 50 + "<diagnosis>" * 50 + "</think" + "<diag" * 20
    return (unit * (size // len(unit) + 1))[:size]
