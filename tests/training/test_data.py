"""Dataset records: the JSONL format and the five benchmark layouts (fixtures use the published field
names, see ../shared/benchmark-layouts), bad records skipped and counted."""

from __future__ import annotations

import json

import pytest

from omnisift.data import detect_layout, load_dataset, split_options

OPTS = ["First thing.", "Second thing.", "Third thing.", "Fourth thing."]
MC_TEXT = "What happens?\n" + "\n".join(f"{letter}. {o}" for letter, o in zip("ABCD", OPTS, strict=True))
PROMPT = ("Select the best answer to the following multiple-choice question based on the video. Respond with only "
          "the letter (A, B, C, or D) of the correct option.\n" + MC_TEXT + "\nThe best answer is:")


def _records(media):
    return {
        "worldsense": {"video_path": media, "duration": "60s", "domain": "Music", "question": MC_TEXT,
                       "answer": "B", "prompt": PROMPT},
        "videomme": {"video_id": "x", "video_path": media, "duration": "short", "domain": "Knowledge",
                     "task_type": "Counting Problem", "sub_category": "x", "answer": "C", "prompt": PROMPT},
        "dailyomni": {"Question": "What happens?",
                      "Choice": [f"{letter}. {o}" for letter, o in zip("ABCD", OPTS, strict=True)],
                      "Answer": "D", "video_id": media, "Type": "AV Event Alignment", "video_duration": "30s"},
        "omnivideobench": {"dataset": "OmniVideoBench", "videos": media, "duration": "03:28",
                           "conversations": [{"from": "human", "value": "What happens?\n" + "\n".join(
                               f"{letter}.{o}" for letter, o in zip("ABCD", OPTS, strict=True)) + "\n"},
                               {"from": "gpt", "value": "A"}]},
        "video_salmonn": {"video": media, "conversations": [
            {"from": "human", "value": "<image>\nPlease describe the video."},
            {"from": "gpt", "value": "A man pours water into a glass."}]},
        "jsonl": {"media": media, "question": "What happens?", "options": OPTS, "answer": "B"},
    }


EXPECTED = {"worldsense": "B", "videomme": "C", "dailyomni": "D", "omnivideobench": "A", "jsonl": "B"}


@pytest.mark.parametrize("layout", ["worldsense", "videomme", "dailyomni", "omnivideobench", "video_salmonn", "jsonl"])
def test_each_layout_parses(tmp_path, layout):
    media = "vid/clip.mp4"
    if layout == "dailyomni":  # <id>/<id>_video.mp4
        (tmp_path / "vid1").mkdir()
        (tmp_path / "vid1" / "vid1_video.mp4").write_bytes(b"x")
        record = _records("vid1")[layout]
    else:
        (tmp_path / "vid").mkdir()
        (tmp_path / media).write_bytes(b"x")
        record = _records(media)[layout]
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert detect_layout(record) == layout
    for given in ("auto", layout):
        samples, summary = load_dataset(path, given)
        assert summary.kept == 1 and summary.n_skipped == 0
        s = samples[0]
        assert s.media.is_file() and s.media.is_relative_to(tmp_path)
        if layout == "video_salmonn":
            assert not s.is_multiple_choice
            assert s.answer == "A man pours water into a glass."
            assert "<image>" not in s.question
        else:
            assert s.options == tuple(OPTS)
            assert s.answer == EXPECTED[layout]
            assert s.question == "What happens?"
            assert s.prompt().count("\n") == len(OPTS) + 2


def test_bad_records_are_skipped_and_counted(tmp_path):
    (tmp_path / "ok.mp4").write_bytes(b"x")
    lines = [
        json.dumps({"media": "ok.mp4", "question": "q?", "answer": "yes"}),
        json.dumps({"media": "missing.mp4", "question": "q?", "answer": "yes"}),  # missing file
        json.dumps({"media": "ok.mp4", "question": "q?"}),  # no answer
        "{not json",
        json.dumps({"video_path": "ok.mp4", "question": MC_TEXT, "answer": "Z"}),  # answer is no option
        json.dumps({"Question": "q", "Choice": ["A. x", "B. y"], "Answer": "", "video_id": "ok"}),
        json.dumps({"videos": "ok.mp4", "conversations": [{"from": "human", "value": MC_TEXT}]}),  # no gpt turn
        "",
        json.dumps({"media": "ok.mp4", "question": "q2?", "options": ["a", "b"], "answer": "b"}),
    ]
    path = tmp_path / "meta.jsonl"
    path.write_text("\n".join(lines))
    samples, summary = load_dataset(path)
    assert [s.answer for s in samples] == ["yes", "B"]
    assert summary.read == 8 and summary.kept == 2 and summary.n_skipped == 6
    assert summary.skipped["missing file"] == 1 and summary.skipped["bad json"] == 1
    assert summary.skipped["no answer"] == 4
    assert "6 skipped" in summary.line()


def test_split_options_keeps_the_stem_and_drops_the_tail():
    stem, options, letters = split_options(PROMPT)
    assert stem == "What happens?" and options == OPTS and letters == list("ABCD")
