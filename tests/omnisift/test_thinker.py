"""The compressing thinker: generate on kept tokens at original positions, stats, retention, loading layouts.

The oracle is a greedy decode written here: the thinker's own towers and language model, fed only the
tokens the per-chunk reference keeps, at their positions from `get_rope_index` over the *uncompressed*
sequence, with generated text continuing where the uncompressed layout would.
"""

from __future__ import annotations

import contextlib

import omnisift_reference as ref
import pytest
import torch
from omnisift_helpers import make_clip, rope_positions
from safetensors.torch import load_file

import omnisift
from omnisift import CheckpointError
from omnisift.inputs import processor_inputs
from omnisift.loading import load_model

MAX_NEW = 6


@contextlib.contextmanager
def ratios(thinker, **kwargs):
    saved = thinker.ratios, thinker.retention, thinker.saliency_dtype
    thinker.configure_compression(**kwargs)
    try:
        yield
    finally:
        thinker.ratios, thinker.retention, thinker.saliency_dtype = saved


def embed_by_hand(thinker, inputs) -> torch.Tensor:
    """Token embeddings with the audio and video tower outputs put at their placeholder tokens: [B, L, D]."""
    ids = inputs["input_ids"]
    embeds = thinker.get_input_embeddings()(ids).clone()
    audio = thinker.model.get_audio_features(inputs["input_features"], inputs["feature_attention_mask"],
                                             return_dict=True).last_hidden_state
    video = torch.cat(thinker.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"],
                                                       return_dict=True).pooler_output)
    embeds[ids == thinker.config.audio_token_id] = audio
    embeds[ids == thinker.config.video_token_id] = video
    return embeds


def reference_keep(thinker, inputs, embeds, rho_video, rho_audio) -> torch.Tensor:
    grid = inputs["video_grid_thw"][0]
    return ref.chunkwise_keep(
        embeds[0], inputs["input_ids"][0], thinker.compressor, rho_video, rho_audio,
        video_token_id=thinker.config.video_token_id, audio_token_id=thinker.config.audio_token_id,
        tokens_per_frame=int(grid[1] * grid[2]) // 4, frames=int(grid[0]),
    )


@torch.no_grad()
def manual_greedy(thinker, inputs, keep: torch.Tensor, steps: int) -> tuple[list[int], torch.Tensor]:
    """Greedy decode on the kept tokens at their original positions; returns tokens and first logits."""
    lm = thinker.model.language_model
    embeds = embed_by_hand(thinker, inputs)[0]  # [L, D]
    positions = rope_positions(thinker, inputs)[:, 0]  # [3, L]
    out = lm(inputs_embeds=embeds[keep][None], position_ids=positions[:, keep][:, None], use_cache=True)
    logits = thinker.lm_head(out.last_hidden_state[:, -1])  # [1, V]
    first_logits = logits[0]
    next_pos = int(positions.max()) + 1  # where the uncompressed layout continues
    cache, tokens = out.cache, []
    for step in range(steps):
        token = int(logits.argmax(-1))
        tokens.append(token)
        if token == thinker.config.text_config.eos_token_id:
            break
        pos = torch.full((3, 1, 1), next_pos + step, device=embeds.device)
        ids = torch.tensor([[token]], device=embeds.device)
        out = lm(inputs_embeds=thinker.get_input_embeddings()(ids), position_ids=pos,
                 cache=cache, use_cache=True)
        cache = out.cache
        logits = thinker.lm_head(out.last_hidden_state[:, -1])
    return tokens, first_logits


@torch.no_grad()
def generate(thinker, inputs, **kwargs):
    return thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=MAX_NEW, do_sample=False,
                            output_scores=True, return_dict_in_generate=True, **kwargs)


@pytest.mark.parametrize("rho_video,rho_audio", [(0.7, 0.3), (0.8, 0.5)])
def test_generate_equals_manual_decode_on_kept_tokens_at_original_positions(tiny, clip_inputs, rho_video, rho_audio,
                                                                             target):
    thinker = tiny.thinker
    with ratios(thinker, rho_video=rho_video, rho_audio=rho_audio):
        result = generate(thinker, clip_inputs)
    prompt = clip_inputs["input_ids"].shape[1]
    with torch.no_grad():
        keep = reference_keep(thinker, clip_inputs, embed_by_hand(thinker, clip_inputs), rho_video, rho_audio)
    assert not keep.all()
    tokens, first_logits = manual_greedy(thinker, clip_inputs, keep, MAX_NEW)
    torch.testing.assert_close(result.scores[0][0].float(), first_logits.float(),
                               **target.tol(float32=(1e-4, 1e-4), bfloat16=(0.05, 0.02)))
    assert result.sequences[0, prompt:].tolist()[: len(tokens)] == tokens


def test_compression_changes_what_the_model_sees(tiny, clip_inputs):
    # Guard for the test above: the full sequence gives different first logits than the kept tokens.
    thinker = tiny.thinker
    with ratios(thinker, rho_video=0.7, rho_audio=0.3):
        compressed = generate(thinker, clip_inputs).scores[0]
    with ratios(thinker, enabled=False):
        full = generate(thinker, clip_inputs).scores[0]
    assert not torch.allclose(compressed, full, atol=1e-4)


def test_last_stats_report_counts_per_modality(tiny, clip_inputs):
    thinker = tiny.thinker
    with ratios(thinker, rho_video=0.7, rho_audio=0.3):
        generate(thinker, clip_inputs)
    stats = thinker.last_stats
    n_p = int(clip_inputs["video_grid_thw"][0, 1] * clip_inputs["video_grid_thw"][0, 2]) // 4  # 6
    frames = int(clip_inputs["video_grid_thw"][0, 0])  # 5
    audio_chunks = [50, 50, 25]
    assert (stats.video_before, stats.audio_before) == (n_p * frames, sum(audio_chunks))
    assert stats.video_after == frames * (n_p - ref.dropped(n_p, 0.7))
    assert stats.audio_after == sum(n - ref.dropped(n, 0.3) for n in audio_chunks)
    assert stats.retention == pytest.approx((stats.video_after + stats.audio_after) / (n_p * frames + 125))


def test_retention_quarter_keeps_about_25_percent_of_audio_and_video(tiny):
    thinker = tiny.thinker
    frames, audio = make_clip(4, seed=8, height=224, width=224)  # 64 tokens per frame, 2 full chunks
    inputs = processor_inputs(tiny, frames, audio, "What happens?", max_pixels=224 * 224)
    with ratios(thinker, retention=0.25):
        generate(thinker, inputs)
    stats = thinker.last_stats
    assert stats.video_before == 4 * 64 and stats.audio_before == 100
    assert stats.retention == pytest.approx(0.25, abs=0.02)
    assert stats.audio_after == 2 * (50 - 15)  # audio stays at the release ratio


def test_padded_batch_generate_equals_each_clip_alone(tiny):
    thinker = tiny.thinker
    clips = [make_clip(5, seed=9), make_clip(3, seed=10)]
    questions = ["What is there?", "Is it loud or quiet right now?"]
    items = [processor_inputs(tiny, f, a, q) for (f, a), q in zip(clips, questions, strict=True)]
    alone = [generate(thinker, item).sequences[0, item["input_ids"].shape[1]:].tolist() for item in items]
    tokenizer = tiny.processor.tokenizer
    text = [tiny.processor.apply_chat_template(omnisift.inputs.conversation(q), add_generation_prompt=True,
                                               tokenize=False) for q in questions]
    batch = tiny.processor(
        text=text, videos=[c[0] for c in clips], audio=[c[1] for c in clips], padding=True,
        load_audio_from_video=True, audio_from_video_indices=[0, 1], return_tensors="pt",
        videos_kwargs={"fps": 2.0, "do_sample_frames": False, "cap_pixels_per_frame": False,
                       "size": dict(tiny.processor.video_processor.size)},
        audio_kwargs={"max_length": 5 * 16000, "truncation": False, "sampling_rate": 16000},
    )
    assert tokenizer.padding_side == "left" and (batch["attention_mask"][1] == 0).any()
    out = generate(thinker, batch).sequences[:, batch["input_ids"].shape[1]:]
    for row, expected in enumerate(alone):
        got = out[row].tolist()[: len(expected)]
        assert got == expected, row


def test_omnisift_7b_layout_loads_selector_from_model_checkpoint(tiny, tiny_dir):
    on_disk = load_file(str(tiny_dir / "model.safetensors"))
    state = tiny.thinker.compressor.state_dict()
    assert tiny.has_selector
    for k, v in state.items():
        assert torch.equal(v.cpu(), on_disk["thinker.compressor." + k].to(v.dtype)), k


def test_base_model_plus_separate_selector_file_loads_and_compresses(tiny_base_dir, tmp_path, clip_inputs, target):
    torch.manual_seed(123)
    selector = omnisift.VisionGuidedAudioSelector(64)
    path = omnisift.save_selector(selector, tmp_path / "selector.safetensors")
    model = load_model(tiny_base_dir, selector=path, **target.load())
    assert model.has_selector
    for k, v in selector.state_dict().items():
        assert torch.equal(model.thinker.compressor.state_dict()[k].cpu(), v.to(target.torch_dtype)), k
    with torch.no_grad():
        model.thinker.generate(**clip_inputs, use_audio_in_video=True, max_new_tokens=2, do_sample=False)
    stats = model.thinker.last_stats
    assert stats.audio_after < stats.audio_before and stats.video_after < stats.video_before


def test_missing_selector_is_a_checkpoint_error_naming_the_key(tiny_base_dir, target):
    with pytest.raises(CheckpointError, match=r"compressor\.[a-z_]+\.[0-9a-z_.]+"):
        load_model(tiny_base_dir, **target.load())


def test_base_model_without_selector_runs_uncompressed_audio_or_full_model(tiny_base_dir, clip_inputs, target):
    video_only = load_model(tiny_base_dir, rho_audio=0.0, **target.load())
    with torch.no_grad():
        video_only.thinker.generate(**clip_inputs, use_audio_in_video=True, max_new_tokens=1, do_sample=False)
    stats = video_only.thinker.last_stats
    assert stats.audio_after == stats.audio_before and stats.video_after < stats.video_before
    full = load_model(tiny_base_dir, compress=False, **target.load())
    full.thinker.last_stats = None
    with torch.no_grad():
        full.thinker.generate(**clip_inputs, use_audio_in_video=True, max_new_tokens=1, do_sample=False)
    assert full.thinker.last_stats is None


def test_selector_file_of_wrong_width_is_refused(tiny_base_dir, tmp_path, target):
    path = omnisift.save_selector(omnisift.VisionGuidedAudioSelector(32), tmp_path / "narrow.safetensors")
    with pytest.raises(CheckpointError, match="d_model 32"):
        load_model(tiny_base_dir, selector=path, **target.load())


def test_configured_saliency_dtype_reaches_the_decisions(tiny, clip_inputs, monkeypatch):
    import omnisift.thinker as thinker_module

    seen = []
    real = thinker_module.decide_sequence
    monkeypatch.setattr(thinker_module, "decide_sequence",
                        lambda *a, **kw: seen.append(kw["saliency_dtype"]) or real(*a, **kw))
    with ratios(tiny.thinker, rho_video=0.7, rho_audio=0.3, saliency_dtype="input"):
        generate(tiny.thinker, clip_inputs)
    assert seen[0] == "input"


def test_an_unknown_saliency_dtype_is_refused_when_configured(tiny):
    with pytest.raises(ValueError, match="saliency_dtype must be one of float32, input"):
        tiny.thinker.configure_compression(saliency_dtype="half")
