"""Evaluation helpers with no model in them: robust letter parsing, per-method metrics, comparison tables."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from omnisift.counts import TokenCounts
from omnisift.data import LETTERS

_PATTERNS = [
    r"^\s*\(?([A-J])\)?\s*$",  # just the letter
    r"(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\(?\**([A-J])\b",  # "The answer is (B)", "Answer: C"
    r"^\s*\(?\**([A-J])\**\s*[.):\]]",  # "B. text", "(C) text", "**D**."
    r"^\s*\**([A-J])\**\s",  # "B because ..."
    r"\(([A-J])\)",  # "... (C) ..."
]


def parse_letter(text: str, options: Sequence[str] = (), n_options: int | None = None) -> str | None:
    """The option letter an answer names, or None.

    Accepts `B`, `(B)`, `B.`, `B) text`, `**B**`, `The answer is B`, `Answer: (C)`, and an answer that
    repeats exactly one option's text without its letter. Letters beyond the options count are ignored.
    """
    n = n_options or len(options) or len(LETTERS)
    valid = LETTERS[:n]
    text = (text or "").replace("*", "").strip()
    for pattern in _PATTERNS:
        for m in re.finditer(pattern, text, flags=re.IGNORECASE | re.MULTILINE):
            letter = m.group(1).upper()
            if letter in valid and (m.group(1).isupper() or "answer" in pattern or "option" in pattern):
                return letter
    lowered = text.lower().strip(" .")
    names = [o.lower().strip(" .") for o in options]
    if lowered in names:
        return LETTERS[names.index(lowered)]
    hits = [i for i, o in enumerate(names) if o and o in lowered]
    hits = [i for i in hits if not any(i != j and names[i] in names[j] for j in hits)]  # longest wins
    if len(hits) == 1:
        return LETTERS[hits[0]]
    return None


@dataclass
class MethodMetrics:
    """Running totals of one compression method on one benchmark."""

    method: str
    retention: float | None
    n: int = 0
    mc: int = 0
    correct_generated: int = 0
    correct_scored: int = 0
    unparsed: int = 0
    open_answers: int = 0
    tokens: TokenCounts = TokenCounts()
    prefill_seconds: float = 0.0
    failed: int = 0

    def add(self, *, generated: str | None, scored: str | None, answer: str, multiple_choice: bool,
            counts: TokenCounts, prefill: float) -> None:
        self.n += 1
        self.tokens += counts
        self.prefill_seconds += prefill
        if not multiple_choice:
            self.open_answers += 1
            return
        self.mc += 1
        if generated is None:
            self.unparsed += 1
        self.correct_generated += generated == answer
        self.correct_scored += scored == answer

    @property
    def kept(self) -> float:
        return self.tokens.retention

    def row(self) -> dict:
        pct = lambda x: None if not self.mc else round(100.0 * x / self.mc, 2)  # noqa: E731
        return {
            "method": self.method,
            "target_retention": "full" if self.retention is None else f"{self.retention:.2f}",
            "samples": self.n,
            "acc_generate_%": pct(self.correct_generated),
            "acc_score_%": pct(self.correct_scored),
            "unparsed": self.unparsed,
            "open_answers": self.open_answers,
            "kept_%": round(100.0 * self.kept, 2),
            "video_kept": f"{self.tokens.video_after}/{self.tokens.video_before}",
            "audio_kept": f"{self.tokens.audio_after}/{self.tokens.audio_before}",
            "prefill_ms_per_sample": round(1000.0 * self.prefill_seconds / max(self.n, 1), 2),
            "failed": self.failed,
        }


def comparison_rows(metrics: Iterable[MethodMetrics]) -> list[dict]:
    return [m.row() for m in metrics]


def markdown_table(rows: Sequence[dict]) -> str:
    """A markdown table of rows (dicts with the same keys)."""
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[dict]) -> str:
    """The same rows as CSV."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
