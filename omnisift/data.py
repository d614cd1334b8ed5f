"""Dataset records for training and evaluation: one JSONL format plus five published benchmark layouts.

Every reader turns a record into a `Sample` (media path, question, answer, options for multiple
choice). Bad records (missing media, no question, no answer) are reported and skipped, never fatal,
and counted in a `DatasetSummary`. Media that exists but cannot be decoded is found later, where it is
decoded (the feature cache), and counted there.

Layouts (field names as published with the OmniSIFT release):

| layout          | media                                    | answer                                  |
|-----------------|------------------------------------------|-----------------------------------------|
| `jsonl`         | `media` (or `video`/`video_path`)        | `answer` (+ optional `options`) or `conversations` |
| `worldsense`    | `video_path`                             | `answer` letter, options inside `question` |
| `videomme`      | `video_path`                             | `answer` letter, options inside `prompt` |
| `dailyomni`     | `video_id` -> `<id>/<id>_video.mp4`      | `Answer` letter, `Choice` list          |
| `omnivideobench`| `videos`                                 | `conversations[1].value`, options in `conversations[0]` |
| `video_salmonn` | `video`                                  | open caption in `conversations`         |
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJ"
MC_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. "
                  "Respond with only the letter of the correct option.")
_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[.):]\s*(.*\S)?\s*$")


class BadRecord(ValueError):
    """A record that cannot be used; the message says why."""


@dataclass(frozen=True)
class Sample:
    """One question about one media file.

    options: option texts without their letters for multiple choice (answer is then a letter), else
    empty and `answer` is free text (open questions, scored by an external judge).
    """

    id: str
    media: Path
    question: str
    answer: str
    options: tuple[str, ...] = ()
    source: str = "jsonl"
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.options)

    @property
    def answer_index(self) -> int | None:
        return LETTERS.index(self.answer) if self.options and self.answer in LETTERS else None

    def prompt(self) -> str:
        """The text asked: the question with lettered options and the instruction, or the open question."""
        if not self.options:
            return self.question
        lines = [MC_INSTRUCTION, self.question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(self.options)]
        return "\n".join(lines + ["The best answer is:"])


@dataclass
class DatasetSummary:
    """How many records were read, kept and skipped (by reason)."""

    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason.split(":")[0]] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}")
        log.warning("skipping %s: %s", where, reason)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def line(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"{self.read} records, {self.kept} kept, {self.n_skipped} skipped ({reasons})"


def split_options(text: str) -> tuple[str, list[str], list[str]]:
    """Split `text` into the question stem, the option texts and their letters.

    Options are lines like `A. text`, `A.text`, `(B) text`, `C: text`; lines after the options (such as
    `The best answer is:`) are dropped, and so is the instruction line of the published prompts.
    """
    stem, options, letters = [], [], []
    for line in text.splitlines():
        m = _OPTION_LINE.match(line)
        if m and (m.group(1) == LETTERS[len(options)]):
            options.append((m.group(2) or "").strip())
            letters.append(m.group(1))
        elif not options:
            stem.append(line)
    stem = [s for s in stem if s.strip() and not s.startswith("Select the best answer")]
    return "\n".join(stem).strip(), options, letters


def _strip_letter(option: str, letter: str) -> str:
    m = _OPTION_LINE.match(option)
    return (m.group(2) or "").strip() if m and m.group(1) == letter else option.strip()


def _letter(answer, where: str) -> str:
    text = str(answer or "").strip()
    m = re.match(r"^\(?([A-J])\b", text)
    if not m:
        raise BadRecord(f"no answer: {where} has no option letter (got {text[:30]!r})")
    return m.group(1)


def _human_gpt(conversations) -> tuple[str, str]:
    if not isinstance(conversations, list):
        raise BadRecord("no question: conversations missing")
    human = next((c.get("value") for c in conversations if c.get("from") in ("human", "user")), None)
    gpt = next((c.get("value") for c in conversations if c.get("from") in ("gpt", "assistant")), None)
    if not human:
        raise BadRecord("no question: no human turn in conversations")
    if not gpt or not str(gpt).strip():
        raise BadRecord("no answer: no gpt turn in conversations")
    return str(human).replace("<image>", "").replace("<video>", "").strip(), str(gpt).strip()


def _mc(question_text: str, answer, where: str) -> tuple[str, str, tuple[str, ...]]:
    stem, options, _ = split_options(question_text)
    if len(options) < 2:
        raise BadRecord(f"no options: found {len(options)} lettered option lines")
    letter = _letter(answer, where)
    if LETTERS.index(letter) >= len(options):
        raise BadRecord(f"no answer: answer {letter} is not one of {len(options)} options")
    return stem, letter, tuple(options)


def _req(record: dict, key: str, reason: str = "no media") -> str:
    value = record.get(key)
    if not value or not str(value).strip():
        raise BadRecord(f"{reason}: field {key!r} missing")
    return str(value)


def parse_jsonl(r: dict) -> tuple[str, str, str, tuple[str, ...]]:
    media = next((r[k] for k in ("media", "video", "video_path", "videos", "path") if r.get(k)), None)
    if media is None:
        raise BadRecord("no media: none of media/video/video_path/videos/path")
    if "conversations" in r and "question" not in r:
        question, answer = _human_gpt(r["conversations"])
        stem, options, _ = split_options(question)
        if len(options) >= 2 and re.match(r"^\(?[A-J]\b", answer):
            return media, stem, _letter(answer, "answer"), tuple(options)
        return media, question, answer, ()
    question = str(r.get("question") or "").strip()
    if not question:
        raise BadRecord("no question: field 'question' missing")
    answer = r.get("answer")
    if answer is None or not str(answer).strip():
        raise BadRecord("no answer: field 'answer' missing")
    options = r.get("options")
    if options:
        letters = [_strip_letter(o, LETTERS[i]) for i, o in enumerate(options)]
        answer = str(answer).strip()
        if answer not in LETTERS[: len(letters)]:  # the answer may be given as the option text
            if answer in letters:
                answer = LETTERS[letters.index(answer)]
            else:
                answer = _letter(answer, "answer")
        return media, question, answer, tuple(letters)
    return media, question, str(answer).strip(), ()


def parse_worldsense(r: dict):
    return (_req(r, "video_path"), *_mc(_req(r, "question", "no question"), r.get("answer"), "answer"))


def parse_videomme(r: dict):
    return (_req(r, "video_path"), *_mc(_req(r, "prompt", "no question"), r.get("answer"), "answer"))


def parse_dailyomni(r: dict):
    vid = _req(r, "video_id")
    choices = r.get("Choice")
    if not isinstance(choices, list) or len(choices) < 2:
        raise BadRecord("no options: field 'Choice' missing")
    letter = _letter(r.get("Answer"), "Answer")
    if LETTERS.index(letter) >= len(choices):
        raise BadRecord(f"no answer: Answer {letter} is not one of {len(choices)} options")
    options = tuple(_strip_letter(c, LETTERS[i]) for i, c in enumerate(choices))
    return f"{vid}/{vid}_video.mp4", _req(r, "Question", "no question").strip(), letter, options


def parse_omnivideobench(r: dict):
    question, answer = _human_gpt(r.get("conversations"))
    return (_req(r, "videos"), *_mc(question, answer, "conversations[1].value"))


def parse_video_salmonn(r: dict):
    question, answer = _human_gpt(r.get("conversations"))
    return _req(r, "video"), question, answer, ()


LAYOUTS: dict[str, Callable[[dict], tuple]] = {
    "jsonl": parse_jsonl, "worldsense": parse_worldsense, "videomme": parse_videomme,
    "dailyomni": parse_dailyomni, "omnivideobench": parse_omnivideobench, "video_salmonn": parse_video_salmonn,
}


def detect_layout(record: dict) -> str:
    """Guess a record's layout from its fields."""
    if "Choice" in record or "Answer" in record:
        return "dailyomni"
    if "videos" in record and "conversations" in record:
        return "omnivideobench"
    if "video" in record and "conversations" in record:
        return "video_salmonn"
    if "video_path" in record and "question" in record:
        return "worldsense"
    if "video_path" in record and "prompt" in record:
        return "videomme"
    return "jsonl"


def parse_record(record: dict, layout: str, base: Path, *, check_media: bool = True) -> Sample:
    """One record as a `Sample`; raises `BadRecord` saying why it cannot be used."""
    if not isinstance(record, dict):
        raise BadRecord("not an object")
    name = detect_layout(record) if layout == "auto" else layout
    if name not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)}")
    media, question, answer, options = LAYOUTS[name](record)
    path = Path(media) if Path(media).is_absolute() else base / media
    if check_media and not path.is_file():
        raise BadRecord(f"missing file: {path}")
    key = json.dumps([str(media), question, answer], sort_keys=True)
    sid = str(record.get("id") or record.get("question_id") or "") or hashlib.sha1(key.encode()).hexdigest()[:16]
    return Sample(sid, path, question, answer, options, name)


def read_samples(records: Iterable[dict | str], layout: str = "auto", base: str | Path = ".", *,
                 check_media: bool = True, summary: DatasetSummary | None = None,
                 limit: int | None = None) -> tuple[list[Sample], DatasetSummary]:
    """Samples from records (dicts or JSON lines); bad ones are skipped and counted in the summary."""
    summary = summary or DatasetSummary()
    samples: list[Sample] = []
    seen: Counter = Counter()
    for n, record in enumerate(records, 1):
        if limit is not None and len(samples) >= limit:
            break
        if isinstance(record, str):
            if not record.strip():
                continue
            summary.read += 1
            try:
                record = json.loads(record)
            except json.JSONDecodeError as err:
                summary.skip(f"record {n}", f"bad json: {err.msg}")
                continue
        else:
            summary.read += 1
        try:
            sample = parse_record(record, layout, Path(base), check_media=check_media)
        except BadRecord as err:
            summary.skip(f"record {n}", str(err))
            continue
        seen[sample.id] += 1
        if seen[sample.id] > 1:  # the same question twice gets a distinct id
            sample = Sample(f"{sample.id}-{seen[sample.id]}", sample.media, sample.question, sample.answer,
                            sample.options, sample.source)
        samples.append(sample)
        summary.kept += 1
    return samples, summary


def load_dataset(path: str | Path, layout: str = "auto", base: str | Path | None = None, *,
                 check_media: bool = True, limit: int | None = None) -> tuple[list[Sample], DatasetSummary]:
    """Read a metadata file (JSONL, or a JSON list); media paths are relative to `base` (default: its folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dataset file")
    base = path.parent if base is None else Path(base)
    text = path.read_text()
    if text.lstrip().startswith("["):
        records: Iterable = json.loads(text)
    else:
        records = text.splitlines()
    return read_samples(records, layout, base, check_media=check_media, limit=limit)
