"""The release training recipe: presets, what trains (full, LoRA), the exported model folder, and the
FSDP run on Ray Train with two CPU workers."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from omnisift.loading import load_model
from omnisift.training import LoraSettings, Trainer, TrainSettings, apply_lora
from pipeline.cli import main
from pipeline.offline.config import TrainConfig, load_config
from pipeline.offline.train_local import train_settings
from pipeline.ray.local import start_local_ray
from tests.training.test_commands import _dataset
from tests.training.test_training import _batch

TOWERS = ("model.audio_tower.", "model.visual.")


def _config(tmp_path, data: dict):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"path": "d.jsonl"}, "cache_dir": "c", "out_dir": "o", **data}))
    return path


def test_release_preset_fills_the_release_recipe(tmp_path):
    cfg = load_config(_config(tmp_path, {"preset": "release"}), TrainConfig)
    t = cfg.train
    # the table: LM + selector, lr 1e-5, cosine, warm-up 5%, 1 epoch, batch 128, 32768, bf16, 0.7 / 0.3
    assert (t.trainable, t.lr, t.warmup_ratio, t.epochs, t.global_batch_size, t.max_length, t.precision) == \
        ("full", 1e-5, 0.05, 1, 128, 32768, "bf16")
    assert (t.rho_video, t.rho_audio, t.min_lr_ratio) == (0.7, 0.3, 0.0)
    assert t.steps is None and t.grad_accum is None and t.warmup_steps is None


def test_selector_only_preset_is_the_project_recipe(tmp_path):
    t = load_config(_config(tmp_path, {}), TrainConfig).train
    assert (t.trainable, t.lr, t.steps, t.grad_accum, t.warmup_steps, t.rho_video, t.rho_audio) == \
        ("selector", 1e-4, 1000, 8, 50, 0.8, 0.3)


def test_yaml_overrides_a_preset_field_and_its_alternative(tmp_path):
    cfg = load_config(_config(tmp_path, {"preset": "release", "train": {"lr": 2e-5, "steps": 3, "grad_accum": 2,
                                                                          "trainable": "lora"}}), TrainConfig)
    t = cfg.train
    assert (t.lr, t.steps, t.epochs, t.grad_accum, t.global_batch_size, t.trainable) == (2e-5, 3, None, 2, None, "lora")
    assert t.warmup_ratio == 0.05 and t.precision == "bf16"  # the rest of the preset stays


def test_an_alternative_given_in_the_yaml_clears_the_default_one(tmp_path):
    t = load_config(_config(tmp_path, {"train": {"epochs": 2, "global_batch_size": 16}}), TrainConfig).train
    assert (t.epochs, t.steps, t.global_batch_size, t.grad_accum) == (2, None, 16, None)


@pytest.mark.parametrize(("data", "field"), [
    ({"preset": "fast"}, "preset"),
    ({"train": {"steps": 3, "epochs": 1}}, "train"),
    ({"preset": "release", "train": {"trainable": "towers"}}, "train.trainable"),
])
def test_bad_preset_or_recipe_names_the_field(tmp_path, data, field):
    with pytest.raises(ValueError, match=rf": {field}: "):
        load_config(_config(tmp_path, data), TrainConfig)


def test_settings_resolve_epochs_global_batch_and_warmup(tmp_path):
    cfg = load_config(_config(tmp_path, {"preset": "release"}), TrainConfig)
    s = train_settings(cfg, n_examples=1000, world=2)
    # global 128 = 1 per micro-batch x 64 accumulated x 2 workers; 1 epoch of 1000 = ceil(1000 / 128) = 8 steps;
    # warm-up ceil(0.05 * 8) = 1
    assert (s.grad_accum, s.steps, s.warmup_steps, s.trainable, s.precision) == (64, 8, 1, "full", "bf16")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 3})})  # configs are frozen
    with pytest.raises(ValueError, match="global_batch_size"):
        train_settings(cfg, n_examples=1000, world=2)


def _changed(before: dict, thinker) -> set[str]:
    return {k for k, v in thinker.state_dict().items() if k in before and not torch.equal(before[k], v)}


def test_full_fine_tune_trains_language_model_and_selector_not_towers(tiny_path):
    model = load_model(tiny_path, device="cpu", dtype="float32")
    thinker = model.thinker
    before = copy.deepcopy(thinker.state_dict())
    trainer = Trainer(thinker, TrainSettings(steps=2, lr=1e-3, warmup_steps=0, rho_video=0.5, rho_audio=0.7,
                                             trainable="full"))
    trainer.step(_batch(model))
    changed = _changed(before, thinker)
    lm = {k for k in before if k.startswith(("model.language_model.", "lm_head.")) and "rotary" not in k}
    selector = {k for k in before if k.startswith("compressor.")}
    # every LM tensor that takes part in a step changes; embeddings change only at the tokens seen
    assert selector <= changed and "lm_head.weight" in changed
    assert {k for k in lm if ".layers." in k} <= changed
    assert not any(k.startswith(TOWERS) for k in changed)
    assert changed <= lm | selector


def test_lora_trains_only_the_adapters_and_the_selector(tiny_path):
    model = load_model(tiny_path, device="cpu", dtype="float32")
    thinker = model.thinker
    apply_lora(thinker, LoraSettings(rank=4, alpha=8, dropout=0.0))
    before = copy.deepcopy(thinker.state_dict())
    trainer = Trainer(thinker, TrainSettings(steps=2, lr=1e-3, warmup_steps=0, rho_video=0.5, rho_audio=0.7,
                                             trainable="lora"))
    trainer.step(_batch(model))
    changed = _changed(before, thinker)
    # LoRA B starts at zero, so after one step B has moved (A's gradient is B^T ... = 0 at the first step)
    assert any(".lora_B." in k for k in changed) and any(k.startswith("compressor.") for k in changed)
    assert all(".lora_" in k or k.startswith("compressor.") for k in changed)
    n_lora = sum(p.numel() for n, p in thinker.named_parameters() if ".lora_" in n)
    n_trained = sum(p.numel() for p in trainer.params)
    assert n_trained == n_lora + sum(p.numel() for p in thinker.compressor.parameters())


def test_lora_merge_equals_peft_merge_and_unload(tiny_path):
    from peft import LoraConfig, get_peft_model

    from omnisift.training import TrainableCore
    from omnisift.training.export import merge_lora

    model = load_model(tiny_path, device="cpu", dtype="float32")
    settings = LoraSettings(rank=4, alpha=12, dropout=0.0, targets=("q_proj", "down_proj"))
    apply_lora(model.thinker, settings)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.thinker.named_parameters():
            if ".lora_" in name:
                p.normal_(0, 0.1)  # B is zero at init: give both matrices values
    ours = merge_lora(TrainableCore(model.thinker).state_dict(), settings.scaling)
    # peft's own merge of the same adapter weights, on a separate copy of the language model
    fresh = load_model(tiny_path, device="cpu", dtype="float32").thinker.model.language_model
    peft_model = get_peft_model(fresh, LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj", "down_proj"]))
    ours = {k.removeprefix("language_model."): v for k, v in ours.items() if k.startswith("language_model.")}
    adapters = {k: v for k, v in TrainableCore(model.thinker).state_dict().items() if ".lora_" in k}
    loaded = peft_model.base_model.model.load_state_dict(
        {k.removeprefix("language_model."): v for k, v in adapters.items()}, strict=False)
    assert not loaded.unexpected_keys
    merged = peft_model.merge_and_unload().state_dict()
    for key, value in merged.items():
        torch.testing.assert_close(ours[key], value, msg=key)


def test_exported_folder_loads_and_differs_from_the_base_only_where_trained(tiny_path, tmp_path, clips, capsys):
    from pipeline.session import OmniSession

    model = load_model(tiny_path, device="cpu", dtype="float32")
    base = copy.deepcopy(model.thinker.state_dict())
    trainer = Trainer(model.thinker, TrainSettings(steps=2, lr=1e-3, warmup_steps=0, rho_video=0.5,
                                                   rho_audio=0.7, trainable="full"),
                      base_model=tiny_path)
    trainer.step(_batch(model))
    folder = trainer.save(tmp_path / "checkpoint-1") / "model"
    trained = model.thinker.state_dict()
    loaded = load_model(folder, device="cpu", dtype="float32")
    for key, value in loaded.thinker.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0, msg=key)  # the trained weights
        if key.startswith(TOWERS):
            assert torch.equal(value, base[key]), key  # frozen: bit for bit the base's
    assert not torch.equal(loaded.thinker.lm_head.weight, base["lm_head.weight"])
    assert not torch.equal(loaded.thinker.compressor.v_proj.weight, base["compressor.v_proj.weight"])
    keys = set(load_file(folder / "model.safetensors"))
    assert keys == set(load_file(tiny_path / "model.safetensors"))  # the base's layout, selector inside
    assert {p.name for p in tiny_path.iterdir()} <= {p.name for p in folder.iterdir()}  # processor files too
    session = OmniSession.from_pretrained(str(folder), device="cpu", dtype="float32")
    assert torch.equal(session.model.thinker.lm_head.weight, trained["lm_head.weight"])
    _, paths = clips
    assert main(["infer", str(paths[0]), "-q", "Which pitch?", "--model", str(folder), "--max-new-tokens", "2"]) == 0
    assert "2 chunks" in capsys.readouterr().err


def test_lora_export_is_merged_and_loads_without_peft(tiny_path, tmp_path):
    model = load_model(tiny_path, device="cpu", dtype="float32")
    settings = TrainSettings(steps=2, lr=1e-2, warmup_steps=0, rho_video=0.5, rho_audio=0.7, trainable="lora",
                             lora=LoraSettings(rank=4, alpha=8, dropout=0.0))
    apply_lora(model.thinker, settings.lora)
    trainer = Trainer(model.thinker, settings, base_model=tiny_path)
    for seed in range(2):
        trainer.step(_batch(model, seed=seed))
    folder = trainer.save(tmp_path / "final")
    state = model.thinker.state_dict()
    q = "model.language_model.layers.0.self_attn.q_proj"
    expected = state[f"{q}.base_layer.weight"] + 2.0 * state[f"{q}.lora_B.default.weight"] @ \
        state[f"{q}.lora_A.default.weight"]
    loaded = load_model(folder / "model", device="cpu", dtype="float32").thinker
    torch.testing.assert_close(loaded.state_dict()[f"{q}.weight"], expected)
    assert not torch.equal(loaded.state_dict()[f"{q}.weight"], state[f"{q}.base_layer.weight"])
    adapter = load_file(folder / "model" / "adapter" / "adapter_model.safetensors")
    assert "layers.0.self_attn.q_proj.lora_A.default.weight" in adapter
    assert json.loads((folder / "model" / "adapter" / "adapter_config.json").read_text())["r"] == 4


def test_full_run_resumes_with_its_language_model(tiny_path, tmp_path):
    settings = TrainSettings(steps=4, lr=1e-3, warmup_steps=1, rho_video=0.5, rho_audio=0.7, trainable="full")
    model = load_model(tiny_path, device="cpu", dtype="float32")
    trainer = Trainer(model.thinker, settings)
    batches = [_batch(model, seed=s, n=2) for s in range(4)]
    for b in batches[:2]:
        trainer.step(b)
    folder = trainer.save(tmp_path / "checkpoint-2")
    resumed_model = load_model(tiny_path, device="cpu", dtype="float32")
    resumed = Trainer(resumed_model.thinker, settings)
    resumed.resume(folder)
    for b in batches[2:]:
        trainer.step(b)
        resumed.step(b)
    for key, value in model.thinker.state_dict().items():
        torch.testing.assert_close(resumed_model.thinker.state_dict()[key], value, msg=key)


def _release_config(tmp_path, tiny_path, data, workers: int, **train):
    cfg = {"preset": "release", "model": {"path": str(tiny_path), "device": "cpu", "dtype": "float32"},
           "dataset": {"path": str(data)}, "cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "run"),
           "train": {"rho_video": 0.5, "rho_audio": 0.7, "lr": 1e-3, "global_batch_size": 2, "batch_size": 1,
                     "steps": 2, "save_every": 0, "precision": "fp32", **train},
           "ray": {"num_workers": workers}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_release_preset_on_ray_fsdp_matches_one_process(tmp_path, tiny_path, clips, capsys):
    """Two FSDP workers with one example each per step give the weights one process gets with the same two
    examples accumulated: the sharded run is the same optimisation, split."""
    import ray

    folder, paths = clips
    data = _dataset(folder, paths)
    start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["train", str(_release_config(tmp_path / "ray", tiny_path, data, 2)), "--no-progress"]) == 0
    finally:
        ray.shutdown()
    assert main(["train", str(_release_config(tmp_path / "one", tiny_path, data, 0)), "--no-progress"]) == 0
    workers = [json.loads((tmp_path / "ray" / "run" / f"worker-{r}.json").read_text()) for r in (0, 1)]
    one = load_model(tmp_path / "one" / "run" / "final" / "model", device="cpu", dtype="float32").thinker
    total = sum(p.numel() for n, p in one.named_parameters() if not n.startswith(TOWERS))
    assert [w["sharded"] for w in workers] == [True, True] and [w["world"] for w in workers] == [2, 2]
    assert sum(w["local_trainable_numel"] for w in workers) == total  # each worker holds a part
    assert max(w["local_trainable_numel"] for w in workers) < 0.6 * total
    steps = json.loads((tmp_path / "ray" / "run" / "final" / "trainer_state.json").read_text())["optimizer_step"]
    assert steps == workers[0]["optimizer_step"] == 2
    sharded = load_model(tmp_path / "ray" / "run" / "final" / "model", device="cpu", dtype="float32").thinker
    base = load_model(tiny_path, device="cpu", dtype="float32").thinker.state_dict()
    for key, value in sharded.state_dict().items():
        torch.testing.assert_close(value, one.state_dict()[key], rtol=1e-4, atol=1e-5, msg=key)
        if key.startswith(TOWERS):
            assert torch.equal(value, base[key]), key
    assert not torch.equal(sharded.lm_head.weight, base["lm_head.weight"])
    capsys.readouterr()
    assert main(["infer", str(paths[1]), "-q", "Which pitch?", "--model", str(tmp_path / "ray" / "run" / "final"
                                                                           / "model"), "--max-new-tokens", "2"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("trainable", ["full", "lora"])
def test_release_preset_as_given_trains_on_ray_and_loads_in_infer(tmp_path, tiny_path, clips, capsys, trainable):
    """`omnisift train` with the release preset's own precision (bf16) on two FSDP workers, full or LoRA: the
    language model and the selector move, the towers do not, and `omnisift infer` answers with the folder."""
    import ray

    folder, paths = clips
    config = _release_config(tmp_path, tiny_path, _dataset(folder, paths), 2, precision="bf16", trainable=trainable,
                             lora={"rank": 4, "alpha": 8})
    start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["train", str(config), "--no-progress"]) == 0
    finally:
        ray.shutdown()
    model_dir = tmp_path / "run" / "final" / "model"
    assert f"model: {model_dir}" in capsys.readouterr().out
    trained = load_model(model_dir, device="cpu", dtype="float32").thinker.state_dict()
    base = load_model(tiny_path, device="cpu", dtype="float32").thinker.state_dict()
    moved = {k for k, v in trained.items() if not torch.equal(v, base[k])}
    assert "compressor.v_proj.weight" in moved and "model.language_model.layers.1.mlp.down_proj.weight" in moved
    assert ("lm_head.weight" in moved) == (trainable == "full")  # LoRA adapts the layers' projections only
    assert not any(k.startswith(TOWERS) for k in moved)
    assert main(["infer", str(paths[2]), "-q", "Which pitch?", "--model", str(model_dir), "--max-new-tokens", "2"]) == 0
