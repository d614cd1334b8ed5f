"""Selector checkpoints: safetensors only, the official `thinker.compressor.` key layout or bare keys."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import omnisift
from omnisift import CheckpointError

PREFIX = "thinker.compressor."


def selector(d: int = 40, seed: int = 0) -> omnisift.VisionGuidedAudioSelector:
    torch.manual_seed(seed)
    return omnisift.VisionGuidedAudioSelector(d)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def official_state(sel, prefix=PREFIX) -> dict[str, torch.Tensor]:
    return {prefix + k: v.clone().contiguous() for k, v in sel.state_dict().items()}


def test_save_then_load_round_trip(tmp_path):
    sel = selector()
    path = omnisift.save_selector(sel, tmp_path / "sel.safetensors")
    assert sorted(load_file(str(path))) == sorted(official_state(sel))  # official key names on disk
    loaded = omnisift.load_selector(path)
    assert_same_weights(sel, loaded)
    x_v, x_a = torch.randn(9, 40), torch.randn(50, 40)
    torch.testing.assert_close(loaded.eval()(x_v, x_a), sel.eval()(x_v, x_a))


def test_load_from_folder(tmp_path):
    sel = selector(seed=1)
    omnisift.save_selector(sel, tmp_path / "ckpt")  # a folder path gets selector.safetensors inside
    assert_same_weights(sel, omnisift.load_selector(tmp_path / "ckpt"))


def test_load_from_sharded_checkpoint_with_index(tmp_path):
    sel = selector(seed=2)
    state = official_state(sel)
    other = {"thinker.model.embed_tokens.weight": torch.randn(10, 40), "thinker.lm_head.weight": torch.randn(10, 40)}
    keys = sorted(state)
    embed = "thinker.model.embed_tokens.weight"
    shard1 = {**{k: state[k] for k in keys[:7]}, embed: other[embed]}
    shard2 = {**{k: state[k] for k in keys[7:]}, "thinker.lm_head.weight": other["thinker.lm_head.weight"]}
    save_file(shard1, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file(shard2, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in shard1}
    weight_map |= {k: "model-00002-of-00002.safetensors" for k in shard2}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert_same_weights(sel, omnisift.load_selector(tmp_path))


def test_load_keys_without_prefix(tmp_path):
    sel = selector(seed=3)
    save_file(official_state(sel, prefix=""), str(tmp_path / "bare.safetensors"))
    assert_same_weights(sel, omnisift.load_selector(tmp_path / "bare.safetensors"))


def test_load_selector_from_whole_model_checkpoint(tiny_dir):
    # The OmniSIFT-7B layout: selector keys among the thinker's own, in one model.safetensors.
    loaded = omnisift.load_selector(tiny_dir)
    on_disk = {k[len(PREFIX):]: v for k, v in load_file(str(tiny_dir / "model.safetensors")).items()
               if k.startswith(PREFIX)}
    assert loaded.d_model == 64
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in on_disk.items()}
    for k, v in on_disk.items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_d_model_is_read_from_the_weights(tmp_path):
    for d in (24, 72):
        path = omnisift.save_selector(selector(d), tmp_path / f"d{d}.safetensors")
        loaded = omnisift.load_selector(path)
        assert loaded.d_model == d and loaded.a_proj.in_features == d


def test_missing_key_error_names_the_key(tmp_path):
    state = official_state(selector())
    del state[PREFIX + "score_head.2.bias"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match=r"score_head\.2\.bias"):
        omnisift.load_selector(tmp_path / "partial.safetensors")


def test_missing_v_proj_error_names_the_key(tmp_path):
    state = official_state(selector())
    del state[PREFIX + "v_proj.weight"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match=r"v_proj\.weight"):
        omnisift.load_selector(tmp_path / "partial.safetensors")


def test_misshaped_key_error_names_the_key(tmp_path):
    state = official_state(selector())
    state[PREFIX + "a_proj.weight"] = torch.randn(512, 41)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"a_proj\.weight"):
        omnisift.load_selector(tmp_path / "bad.safetensors")


def test_misshaped_v_proj_error_names_the_key(tmp_path):
    state = official_state(selector())
    state[PREFIX + "v_proj.weight"] = torch.randn(512)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"v_proj\.weight"):
        omnisift.load_selector(tmp_path / "bad.safetensors")


def test_pickle_checkpoint_is_refused(tmp_path):
    path = tmp_path / "selector.bin"
    torch.save(selector().state_dict(), path)
    with pytest.raises(CheckpointError, match="safetensors"):
        omnisift.load_selector(path)
    folder = tmp_path / "only_bin"
    folder.mkdir()
    torch.save(selector().state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        omnisift.load_selector(folder)


def test_missing_path_and_checkpoint_without_selector_are_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        omnisift.load_selector(tmp_path / "nope.safetensors")
    save_file({"thinker.lm_head.weight": torch.randn(4, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"thinker\.compressor\."):
        omnisift.load_selector(tmp_path / "model.safetensors")
