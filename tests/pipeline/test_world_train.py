"""Training the tiny model on the world: a few steps write a model folder that loads through `load_model`
and holds what was trained (language model and audio projection changed, the towers' other weights not), and
the card and report say how it was made."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from omnisift.tiny import tiny_model_dir
from pipeline.offline.world.train import WorldTrainSettings, model_card, train_world_model, window_features


def test_window_features_are_the_last_chunks():
    chunks = [(torch.full((2, 4, 3), float(k)), torch.full((50, 3), float(k)), (2, 2)) for k in range(6)]
    f = window_features(chunks, 4, 3)  # chunks 2, 3, 4
    assert f.video[:, 0, 0].tolist() == [2, 2, 3, 3, 4, 4] and f.audio[::50, 0].tolist() == [2, 3, 4]
    assert f.chunk_steps == [2, 2, 2] and f.chunk_audio == [50, 50, 50]
    assert window_features(chunks, 1, 3).chunk_steps == [2, 2]  # fewer chunks before the first ones


@pytest.mark.slow
def test_a_short_run_writes_a_folder_that_loads_with_what_was_trained(tmp_path):
    from omnisift.loading import load_model

    settings = WorldTrainSettings(train_seeds=(1000,), test_seed=2000, minutes=0.5, window=2, steps=4,
                                  kinds=("screen_colour", "alarm"))
    report = train_world_model(tmp_path / "m", settings, progress=False)
    base = load_file(str(tiny_model_dir() / "model.safetensors"))
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert saved.keys() == base.keys()
    changed = {k for k in base if not torch.equal(base[k], saved[k])}
    assert "thinker.audio_tower.proj.weight" in changed and "thinker.lm_head.weight" in changed
    assert any(k.startswith("thinker.model.layers.") for k in changed)
    assert not any(k.startswith("thinker.visual.") or (k.startswith("thinker.audio_tower.")
                                                       and ".proj." not in k) for k in changed)
    model = load_model(tmp_path / "m", device="cpu", dtype="float32")
    assert torch.equal(model.thinker.model.audio_tower.proj.weight, saved["thinker.audio_tower.proj.weight"])
    data = json.loads((tmp_path / "m" / "training.json").read_text())
    assert len(data["losses"]) == 4 and set(data["after"]) == {"screen_colour", "alarm"}
    card = model_card(report, "python -m pipeline.offline.world --out m")
    assert "python -m pipeline.offline.world --out m" in card and "| alarm |" in card
