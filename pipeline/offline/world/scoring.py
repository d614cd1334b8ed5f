"""A model's free-text answer to a closed question, read as one of its options and compared with the gold.

`normalise` lower-cases, drops punctuation and articles, spells "grey" as "gray" and numbers as digits
("three" and "3" are the same answer; so are "yes." and "Yes"). `choose` takes the option the text says:
the whole text, or the one option named in it (whole words); an answer naming two options, or none,
chooses nothing and is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.offline.world.questions import Question

NUMBERS = {w: str(i) for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven",
                                             "eight", "nine"))}
SPELLING = {"grey": "gray", "colour": "color", "yeah": "yes", "yep": "yes", "nope": "no", **NUMBERS}
DROP = {"a", "an", "the"}


def normalise(text: str) -> str:
    words = re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split()
    return " ".join(SPELLING.get(w, w) for w in words if w not in DROP)


def choose(text: str, options: Sequence[str]) -> str | None:
    """The option `text` names, or None if it names none or several."""
    said = normalise(text)
    forms = {option: normalise(option) for option in options}
    exact = [o for o, f in forms.items() if f == said]
    if exact:
        return exact[0]
    padded = f" {said} "
    named = [o for o, f in forms.items() if f and f" {f} " in padded]
    return named[0] if len(named) == 1 else None


def is_correct(question: Question, text: str) -> bool:
    """Whether the free-text `text` answers `question` with its gold option."""
    return choose(text, question.options) == question.gold
