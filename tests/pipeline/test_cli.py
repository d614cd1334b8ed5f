"""`omnisift infer` end to end on generated files with the tiny model, and its bad inputs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli import main
from tests.pipeline.media import write_clip


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "webm"])
def test_infer_answers_and_reports_token_counts(tiny_model_path, tmp_path, capsys, suffix):
    clip = write_clip(tmp_path / f"clip.{suffix}", seconds=3.0)
    code = main(["infer", str(clip), "-q", "What is on screen?", "--model", str(tiny_model_path),
                 "--rho-video", "0.5", "--rho-audio", "0.3", "--max-new-tokens", "4"])
    err = capsys.readouterr().err
    assert code == 0
    # 3 s at 2 fps: 2 chunks, 1 + 1 temporal steps of 16 tokens (112 x 112 frames, 4 x 4 grid) ... per frame
    # video kept = ceil half per frame; audio: 50 + 25 tokens, int(30% of each chunk's) dropped.
    assert "2 chunks" in err
    audio_after = (50 - 15) + (25 - 7)
    assert f"audio tokens 75 -> {audio_after}" in err


def test_infer_keeps_long_audio_past_thirty_seconds(tiny_model_path, tmp_path, capsys):
    clip = write_clip(tmp_path / "long.mp4", seconds=34.0, fps=2)
    assert main(["infer", str(clip), "-q", "x", "--model", str(tiny_model_path), "--max-new-tokens", "1"]) == 0
    err = capsys.readouterr().err
    audio_before = int(err.split("audio tokens ")[1].split(" ->")[0])
    assert audio_before >= 34 * 25  # every second reached the model; the processor's default cuts at 30 s


def test_infer_warns_and_answers_a_file_without_audio(tiny_model_path, tmp_path, capsys, caplog):
    clip = write_clip(tmp_path / "silent.mp4", audio=False)
    assert main(["infer", str(clip), "-q", "x", "--model", str(tiny_model_path), "--max-new-tokens", "1"]) == 0
    assert "no audio" in caplog.text
    assert "audio tokens 0 -> 0" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "garbage", "audio_only", "bad_ratio"])
def test_infer_bad_input_is_one_line_and_exit_2(tiny_model_path, tmp_path, case):
    if case == "missing":
        path, extra = tmp_path / "nope.mp4", []
    elif case == "garbage":
        path, extra = tmp_path / "garbage.mp4", []
        path.write_bytes(b"this is not a video" * 100)
    elif case == "audio_only":
        path, extra = write_clip(tmp_path / "tone.mkv", video=False), []
    else:
        path, extra = write_clip(tmp_path / "ok.mp4"), ["--retention", "1.5"]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "infer", str(path), "-q", "x", "--model", str(tiny_model_path), *extra],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len([line for line in lines if "Traceback" in line]) == 0
    assert lines[-1].startswith("error:") and "usage:" not in result.stderr
    assert len([line for line in lines if line.startswith("error:")]) == 1


@pytest.mark.parametrize(("question", "says"), [
    ("", "error: question must be a non-empty string"),
    ("  ", "error: question must be a non-empty string"),
    ("why " * 25_000, "error: question of 100000 characters is too long: at most 4096 (512 tokens"),
])
def test_infer_refuses_an_empty_or_huge_question_before_the_model_loads(tmp_path, capsys, question, says):
    clip = write_clip(tmp_path / "ok.mp4", seconds=2.0)
    # a model path that does not exist: reaching the model would fail differently
    assert main(["infer", str(clip), "-q", question, "--model", str(tmp_path / "no-model")]) == 2
    assert capsys.readouterr().err.startswith(says)


@pytest.mark.parametrize("case", ["garbage", "audio_only"])
def test_infer_checks_the_file_before_the_model_loads(tmp_path, capsys, case):
    if case == "garbage":
        path = tmp_path / "garbage.mp4"
        path.write_bytes(b"this is not a video" * 100)
    else:
        path = write_clip(tmp_path / "tone.mkv", video=False)
    assert main(["infer", str(path), "-q", "x", "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and path.name in err and "no-model" not in err


def test_infer_with_a_folder_that_is_nowhere_names_it_in_one_line(tmp_path):
    """A path that is no folder is a mistyped model, reported, never replaced by the tiny random one."""
    import os

    clip = write_clip(tmp_path / "ok.mp4", seconds=2.0)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty hub cache, no network
    model = tmp_path / "runs" / "final" / "model"
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "infer", str(clip), "-q", "x", "--model",
                             str(model)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("omnisift infer: ")]
    assert lines == [f"error: {model}: not a local folder, and not found on the Hugging Face hub "
                     "(HFValidationError); give a folder holding the weights (config.json, *.safetensors) "
                     "or a hub id this machine can download"], result.stderr


@pytest.mark.parametrize("model", ["tiny", "no-such-org/no-such-model"])
def test_infer_without_the_weights_runs_the_tiny_model_with_the_demo_banner(tmp_path, capsys, model):
    """The README's infer command on a machine without the weights: the tiny random model, said as the demo
    says it; a selector for the real model is left out (the missing file here would fail otherwise)."""
    from omnisift.tiny import tiny_banner

    clip = write_clip(tmp_path / "clip.mp4", seconds=3.0)
    assert main(["infer", str(clip), "-q", "What is the person holding?", "--model", model, "--selector",
                 str(tmp_path / "omnisift_vgas.safetensors"), "--retention", "0.25", "--max-new-tokens", "2"]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0] == f"omnisift infer: loading {model}, then reading {clip} chunk by chunk"
    banner = tiny_banner(model)
    assert "\n".join(lines[1:1 + len(banner.splitlines())]) == banner
    head = "--model tiny" if model == "tiny" else f"{model} weights are not on this machine"
    assert banner.splitlines()[1] == f"{head}: running the TINY RANDOM model."
    assert "is left out: it belongs to the real model" in err
    assert "2 chunks" in lines[-1] and out.strip() != ""
