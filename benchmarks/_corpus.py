"""Realistic synthetic completions for the benchmarks (about 2.3 KB each)."""

from __future__ import annotations

import random

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
    """A plausible reasoning trace of about ``size`` characters."""
    parts: list[str] = []
    total = 0
    while total < size:
        template = rng.choice(_SENTENCES)
        sentence = template.format(**{k: rng.choice(v) for k, v in _FILL.items()})
        parts.append(sentence)
        total += len(sentence) + 1
    return " ".join(parts)[:size]


def completions(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """``n`` completions of ~2.3 KB (trace + one diagnosis), their golds and notes."""
    rng = random.Random(seed)
    notes = [trace(rng, 1500) for _ in GOLDS]
    out, golds, note_col = [], [], []
    for i in range(n):
        k = (i // 8) % len(GOLDS)  # groups of 8 samples share a prompt, like GRPO
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
