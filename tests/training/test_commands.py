"""`omnisift train` (in-process and with Ray Train, two CPU workers) and `omnisift eval` on a tiny fixture."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from omnisift import load_selector
from omnisift.evaluation import parse_letter
from pipeline.cli import main
from pipeline.ray.local import start_local_ray


def _dataset(folder, paths):
    lines = [json.dumps({"media": p.name, "question": "What is the pitch of the beep?",
                         "options": ["low", "medium", "high", "very high"], "answer": "ABCD"[i % 4]})
             for i, p in enumerate(paths)]
    lines.append(json.dumps({"media": paths[0].name, "question": "Describe the clip.", "answer": "A beep."}))
    lines.append(json.dumps({"media": "broken.mp4", "question": "q", "options": ["a", "b"], "answer": "A"}))
    lines.append(json.dumps({"media": "gone.mp4", "question": "q", "answer": "x"}))
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "data.jsonl"


def _train_config(tmp_path, tiny_path, data, steps=3, workers=0):
    cfg = {"model": {"path": str(tiny_path), "device": "cpu", "dtype": "float32"},
           "dataset": {"path": str(data)}, "cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "run"),
           "train": {"steps": steps, "batch_size": 2, "grad_accum": 1, "lr": 1e-3, "warmup_steps": 1,
                     "rho_video": 0.5, "rho_audio": 0.7, "save_every": 2},
           "ray": {"num_workers": workers}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_command_writes_checkpoints_curve_and_resumes(tmp_path, tiny_path, clips, capsys):
    folder, paths = clips
    config = _train_config(tmp_path, tiny_path, _dataset(folder, paths))
    assert main(["train", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 skipped" not in out and "1 failed" in out and "1 skipped" in out
    run = tmp_path / "run"
    assert (run / "learning_curve.png").stat().st_size > 1000
    assert (run / "checkpoint-2" / "optimizer.safetensors").exists()
    first = load_selector(run / "final" / "selector.safetensors")
    assert first.d_model == 64
    assert main(["train", str(config), "--steps", "4", "--no-progress"]) == 0
    assert f"resumed from {run / 'final'} at step 3" in capsys.readouterr().out
    state = json.loads((run / "final" / "trainer_state.json").read_text())
    assert state["optimizer_step"] == 4


@pytest.mark.parametrize(("field", "value"), [("lr", -1), ("gate", "soft")])
def test_bad_train_config_names_the_field(tmp_path, tiny_path, clips, capsys, field, value):
    folder, paths = clips
    config = _train_config(tmp_path, tiny_path, _dataset(folder, paths))
    data = yaml.safe_load(config.read_text())
    data["train"][field] = value
    config.write_text(yaml.safe_dump(data))
    assert main(["train", str(config)]) == 2
    assert f"train.{field}" in capsys.readouterr().err


def test_train_command_trains_with_the_attention_gate(tmp_path, tiny_path, clips):
    from safetensors.torch import load_file

    from omnisift.loading import load_model

    folder, paths = clips
    config = _train_config(tmp_path, tiny_path, _dataset(folder, paths), steps=2)
    data = yaml.safe_load(config.read_text())
    data["train"]["gate"] = "attention"
    config.write_text(yaml.safe_dump(data))
    assert main(["train", str(config), "--no-progress"]) == 0
    trained = load_file(tmp_path / "run" / "final" / "selector.safetensors")
    start = load_model(tiny_path, device="cpu", dtype="float32").thinker.compressor.state_dict()
    assert any(not torch.equal(trained[f"thinker.compressor.{k}"], v) for k, v in start.items())


@pytest.mark.slow
def test_ray_train_runs_two_cpu_workers(tmp_path, tiny_path, clips):
    import ray

    from pipeline.offline.config import TrainConfig, load_config
    from pipeline.offline.train_local import load_for_training
    from pipeline.offline.train_ray import train_with_ray

    folder, paths = clips
    cfg = load_config(_train_config(tmp_path, tiny_path, _dataset(folder, paths), steps=2, workers=2), TrainConfig)
    load_for_training(cfg)  # the driver builds the cache
    start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = train_with_ray(cfg)
    finally:
        ray.shutdown()
    assert result.error is None
    workers = [json.loads((tmp_path / "run" / f"worker-{r}.json").read_text()) for r in (0, 1)]
    assert [w["world"] for w in workers] == [2, 2]
    assert [w["optimizer_step"] for w in workers] == [2, 2]
    assert json.loads((tmp_path / "run" / "final" / "trainer_state.json").read_text())["optimizer_step"] == 2
    selector = load_selector(tmp_path / "run" / "final" / "selector.safetensors")
    assert selector.d_model == 64


def test_eval_command_writes_the_comparison_table(tmp_path, tiny_path, clips, capsys):
    folder, paths = clips
    data = _dataset(folder, paths)
    cfg = {"model": {"path": str(tiny_path), "device": "cpu", "dtype": "float32"},
           "dataset": {"path": str(data)}, "cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "eval"),
           "methods": ["full", "random", "omnisift"], "retention": 0.25, "max_new_tokens": 3}
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["eval", str(config), "--limit", "3", "--no-progress"]) == 0
    out_dir = tmp_path / "eval"
    md = (out_dir / "comparison.md").read_text().splitlines()
    assert md[0].startswith("| method |") and len(md) == 2 + 3
    rows = {line.split("|")[1].strip(): line for line in md[2:]}
    assert set(rows) == {"full", "random", "omnisift"}
    csv_rows = (out_dir / "comparison.csv").read_text().splitlines()
    assert len(csv_rows) == 4
    header = csv_rows[0].split(",")
    kept = {r.split(",")[0]: float(r.split(",")[header.index("kept_%")]) for r in csv_rows[1:]}
    assert kept["full"] == 100.0
    assert kept["random"] == kept["omnisift"] and 20.0 <= kept["omnisift"] <= 30.0
    predictions = [json.loads(x) for x in (out_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 3 * 3
    assert all(p["scored"] in "ABCD" for p in predictions)


def test_eval_writes_open_answers_for_judges(tmp_path, tiny_path, clips):
    folder, paths = clips
    data = _dataset(folder, paths)
    cfg = {"model": {"path": str(tiny_path), "device": "cpu", "dtype": "float32"},
           "dataset": {"path": str(data)}, "cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "eval"),
           "methods": ["omnisift"], "max_new_tokens": 2, "score_options": False}
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["eval", str(config), "--no-progress"]) == 0
    answers = [json.loads(x) for x in (tmp_path / "eval" / "open_answers.jsonl").read_text().splitlines()]
    assert len(answers) == 1 and answers[0]["reference"] == "A beep." and answers[0]["method"] == "omnisift"


def test_eval_saliency_dtype_reaches_the_omnisift_compressor(tmp_path, tiny_path, clips, monkeypatch):
    import pipeline.offline.evaluate as evaluate

    built = []
    real = evaluate.make_compressor
    monkeypatch.setattr(evaluate, "make_compressor", lambda *a, **kw: built.append(real(*a, **kw)) or built[-1])
    folder, paths = clips
    cfg = {"model": {"path": str(tiny_path), "device": "cpu", "dtype": "float32"},
           "dataset": {"path": str(_dataset(folder, paths))}, "cache_dir": str(tmp_path / "cache"),
           "out_dir": str(tmp_path / "eval"), "methods": ["random", "omnisift"], "max_new_tokens": 1,
           "score_options": False, "saliency_dtype": "input"}
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["eval", str(config), "--limit", "1", "--no-progress"]) == 0
    kinds = {type(c).__name__: c for c in built}
    assert len(kinds) == 2
    assert [c.saliency_dtype for c in built if hasattr(c, "saliency_dtype")] == ["input"]


@pytest.mark.parametrize(("text", "expected"), [
    ("B", "B"), ("(C)", "C"), ("D. Because", "D"), ("The answer is A.", "A"), ("Answer: (B)", "B"),
    ("**C**", "C"), ("I think the best answer is D", "D"), ("medium", "B"), ("a cat", None), ("E", None),
    ("", None), ("very high", "D"),
])
def test_parse_letter(text, expected):
    assert parse_letter(text, ["low", "medium", "high", "very high"]) == expected
