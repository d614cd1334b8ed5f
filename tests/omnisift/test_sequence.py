"""compress_sequence over real processor layouts equals the per-chunk decisions (docs/design.md sections 2, 3).

Sequences come from the real Qwen2.5-Omni processor (`omnisift.inputs.processor_inputs` with the tiny
model) and positions from the thinker's own `get_rope_index(..., use_audio_in_video=True)`. The expected
keep-mask is computed chunk by chunk in `omnisift_reference.chunkwise_keep`, slicing chunks from the
token layout by counting tokens, not from positions.
"""

from __future__ import annotations

import copy

import omnisift_reference as ref
import pytest
import torch
from omnisift_helpers import make_clip, rope_positions

import omnisift
from omnisift.inputs import processor_inputs


def ids_of(tiny):
    return tiny.thinker.config.video_token_id, tiny.thinker.config.audio_token_id


def tokens_per_frame(grid_row: torch.Tensor) -> int:
    return int(grid_row[1] * grid_row[2]) // 4  # 2x2 merger


def real_embeddings(thinker, inputs) -> torch.Tensor:
    with torch.no_grad():
        return thinker.embed_multimodal(inputs["input_ids"], inputs["input_features"],
                                        inputs["feature_attention_mask"], inputs["pixel_values_videos"],
                                        inputs["video_grid_thw"])


def left_pad_batch(tiny, items: list) -> dict:
    """Left-pad separately processed clips into one batch, as a padded batch reaches the model."""
    pad = tiny.processor.tokenizer.pad_token_id
    length = max(x["input_ids"].shape[1] for x in items)
    frames = max(x["input_features"].shape[-1] for x in items)
    ids, mask, feats, fmask = [], [], [], []
    for x in items:
        n = length - x["input_ids"].shape[1]
        ids.append(torch.cat([torch.full((1, n), pad), x["input_ids"]], 1))
        mask.append(torch.cat([torch.zeros(1, n, dtype=torch.long), x["attention_mask"]], 1))
        m = frames - x["input_features"].shape[-1]
        feats.append(torch.nn.functional.pad(x["input_features"], (0, m)))
        fmask.append(torch.nn.functional.pad(x["feature_attention_mask"], (0, m)))
    return {
        "input_ids": torch.cat(ids), "attention_mask": torch.cat(mask),
        "input_features": torch.cat(feats), "feature_attention_mask": torch.cat(fmask),
        "pixel_values_videos": torch.cat([x["pixel_values_videos"] for x in items]),
        "video_grid_thw": torch.cat([x["video_grid_thw"] for x in items]),
        "video_second_per_grid": torch.cat([x["video_second_per_grid"] for x in items]),
    }


def test_processor_layout_and_positions_follow_design_section_2(tiny, clip_inputs):
    video_id, audio_id = ids_of(tiny)
    ids = clip_inputs["input_ids"][0]
    pos = rope_positions(tiny.thinker, clip_inputs)[:, 0]  # [3, L]
    t, h, w = clip_inputs["video_grid_thw"][0].tolist()
    rows, cols = h // 2, w // 2
    chunks = ref.av_chunks(ids.tolist(), video_id, audio_id, rows * cols, t)
    assert [(len(c["frames"]), len(c["audio"])) for c in chunks] == [(2, 50), (2, 50), (1, 25)]
    st = int(pos[0, chunks[0]["frames"][0][0]])
    assert ids[chunks[0]["frames"][0][0] - 2:chunks[0]["frames"][0][0]].tolist() == [
        tiny.thinker.config.vision_start_token_id, tiny.thinker.config.audio_start_token_id]
    g = 0
    for c in chunks:
        for frame in c["frames"]:
            for k, i in enumerate(frame):
                assert pos[:, i].tolist() == [st + 25 * g, st + k // cols, st + k % cols]
            g += 1
    audio = [i for c in chunks for i in c["audio"]]
    for k, i in enumerate(audio):
        assert pos[:, i].tolist() == [st + k] * 3


@pytest.mark.parametrize("rho_video,rho_audio", [(0.7, 0.3), (0.8, 0.3), (0.5, 0.5), (0.0, 0.0), (1.0, 1.0)])
def test_compress_sequence_equals_chunk_by_chunk_on_real_layout(tiny, clip_inputs, rho_video, rho_audio):
    thinker = tiny.thinker
    video_id, audio_id = ids_of(tiny)
    embeds = real_embeddings(thinker, clip_inputs)
    positions = rope_positions(thinker, clip_inputs)
    keep = omnisift.compress_sequence(
        embeds, clip_inputs["input_ids"], positions, video_token_id=video_id, audio_token_id=audio_id,
        selector=thinker.compressor, rho_video=rho_video, rho_audio=rho_audio,
        attention_mask=clip_inputs["attention_mask"],
    )
    grid = clip_inputs["video_grid_thw"][0]
    expected = ref.chunkwise_keep(
        embeds[0], clip_inputs["input_ids"][0], thinker.compressor, rho_video, rho_audio,
        video_token_id=video_id, audio_token_id=audio_id, tokens_per_frame=tokens_per_frame(grid),
        frames=int(grid[0]),
    )
    assert keep.dtype == torch.bool and keep.shape == clip_inputs["input_ids"].shape
    assert keep[0].tolist() == expected.tolist()
    is_av = (clip_inputs["input_ids"] == video_id) | (clip_inputs["input_ids"] == audio_id)
    assert keep[~is_av].all()


@pytest.mark.parametrize("video_s,audio_s", [(5, 3), (3, 5)])
def test_compress_sequence_chunks_without_audio_or_without_video(tiny, video_s, audio_s):
    thinker = tiny.thinker
    video_id, audio_id = ids_of(tiny)
    frames, _ = make_clip(video_s, seed=4)
    _, audio = make_clip(audio_s, seed=5)
    inputs = processor_inputs(tiny, frames, audio, "Anything moving?")
    embeds = real_embeddings(thinker, inputs)
    keep = omnisift.compress_sequence(
        embeds, inputs["input_ids"], rope_positions(thinker, inputs), video_token_id=video_id,
        audio_token_id=audio_id, selector=thinker.compressor, rho_video=0.7, rho_audio=0.3,
    )
    grid = inputs["video_grid_thw"][0]
    expected = ref.chunkwise_keep(embeds[0], inputs["input_ids"][0], thinker.compressor, 0.7, 0.3,
                                  video_token_id=video_id, audio_token_id=audio_id,
                                  tokens_per_frame=tokens_per_frame(grid), frames=int(grid[0]))
    assert keep[0].tolist() == expected.tolist()


def test_compress_sequence_left_padded_batch_of_two_clips(tiny):
    thinker = tiny.thinker
    video_id, audio_id = ids_of(tiny)
    clips = [make_clip(5, seed=6), make_clip(3, seed=7, height=84, width=112)]  # 6 and 12 tokens per frame
    items = [processor_inputs(tiny, f, a, q) for (f, a), q in zip(clips, ["What is there?", "Colour?"], strict=True)]
    batch = left_pad_batch(tiny, items)
    assert (batch["attention_mask"] == 0).any()
    positions = rope_positions(thinker, batch)
    g = torch.Generator().manual_seed(0)
    embeds = torch.randn(*batch["input_ids"].shape, thinker.config.text_config.hidden_size, generator=g)
    keep = omnisift.compress_sequence(
        embeds, batch["input_ids"], positions, video_token_id=video_id, audio_token_id=audio_id,
        selector=thinker.compressor, rho_video=0.7, rho_audio=0.3, attention_mask=batch["attention_mask"],
    )
    for row, item in enumerate(items):
        grid = item["video_grid_thw"][0]
        expected = ref.chunkwise_keep(
            embeds[row], batch["input_ids"][row], thinker.compressor, 0.7, 0.3, video_token_id=video_id,
            audio_token_id=audio_id, tokens_per_frame=tokens_per_frame(grid), frames=int(grid[0]),
        )
        assert keep[row].tolist() == expected.tolist(), row
        # each row alone, unpadded, gives the same decisions
        n = item["input_ids"].shape[1]
        alone = omnisift.compress_sequence(
            embeds[row:row + 1, -n:], item["input_ids"], rope_positions(thinker, item), video_token_id=video_id,
            audio_token_id=audio_id, selector=thinker.compressor, rho_video=0.7, rho_audio=0.3,
        )
        assert alone[0].tolist() == keep[row, -n:].tolist()
    assert keep[batch["attention_mask"] == 0].all()  # padding is never dropped (never audio/video)


def test_compress_sequence_without_selector_keeps_all_audio(tiny, clip_inputs):
    video_id, audio_id = ids_of(tiny)
    embeds = real_embeddings(tiny.thinker, clip_inputs)
    keep = omnisift.compress_sequence(
        embeds, clip_inputs["input_ids"], rope_positions(tiny.thinker, clip_inputs), video_token_id=video_id,
        audio_token_id=audio_id, selector=None, rho_video=0.7, rho_audio=0.3,
    )
    assert keep[clip_inputs["input_ids"] == audio_id].all()
    assert not keep[clip_inputs["input_ids"] == video_id].all()


def test_compress_sequence_accepts_bf16_embeddings(tiny, clip_inputs):
    video_id, audio_id = ids_of(tiny)
    embeds = real_embeddings(tiny.thinker, clip_inputs).bfloat16()
    grid = clip_inputs["video_grid_thw"][0]
    keep = omnisift.compress_sequence(
        embeds, clip_inputs["input_ids"], rope_positions(tiny.thinker, clip_inputs), video_token_id=video_id,
        audio_token_id=audio_id, selector=tiny.thinker.compressor, rho_video=0.7, rho_audio=0.3,
    )
    expected = ref.chunkwise_keep(embeds[0], clip_inputs["input_ids"][0], tiny.thinker.compressor, 0.7, 0.3,
                                  video_token_id=video_id, audio_token_id=audio_id,
                                  tokens_per_frame=tokens_per_frame(grid), frames=int(grid[0]))
    assert keep[0].tolist() == expected.tolist()


def test_saliency_in_blocks_of_frames_decides_like_one_block(tiny, clip_inputs, monkeypatch):
    """Long clips are scored in blocks of frames to bound memory; a block edge changes nothing."""
    import omnisift.sequence as sequence

    thinker = tiny.thinker
    video_id, audio_id = ids_of(tiny)
    embeds = real_embeddings(thinker, clip_inputs)
    positions = rope_positions(thinker, clip_inputs)
    grid = clip_inputs["video_grid_thw"][0]
    monkeypatch.setattr(sequence, "SALIENCY_BLOCK_FRAMES", 1)  # frame 1 compares across a block edge
    keep = omnisift.compress_sequence(
        embeds, clip_inputs["input_ids"], positions, video_token_id=video_id, audio_token_id=audio_id,
        selector=thinker.compressor, rho_video=0.7, rho_audio=0.3, attention_mask=clip_inputs["attention_mask"],
    )
    expected = ref.chunkwise_keep(
        embeds[0], clip_inputs["input_ids"][0], thinker.compressor, 0.7, 0.3, video_token_id=video_id,
        audio_token_id=audio_id, tokens_per_frame=tokens_per_frame(grid), frames=int(grid[0]),
    )
    assert keep[0].tolist() == expected.tolist()


def test_saturated_scores_are_ranked_like_the_double_precision_reference(tiny, clip_inputs):
    """Logits in [20, 32] make every float32 sigmoid score exactly 1.0; decisions must still follow the
    scores' order (the functional reference's float64 logits, same order as the scores), not fall back to
    the earliest tokens."""
    thinker = tiny.thinker
    video_id, audio_id = ids_of(tiny)
    embeds = real_embeddings(thinker, clip_inputs)
    positions = rope_positions(thinker, clip_inputs)
    selector = copy.deepcopy(thinker.compressor)
    seen = []
    hook = selector.score_head.register_forward_hook(lambda m, i, o: seen.append(o.detach()))

    def keep_with(sel):
        return omnisift.compress_sequence(
            embeds, clip_inputs["input_ids"], positions, video_token_id=video_id, audio_token_id=audio_id,
            selector=sel, rho_video=0.7, rho_audio=0.6, attention_mask=clip_inputs["attention_mask"])

    keep_with(selector)
    low, high = float(seen[-1].min()), float(seen[-1].max())
    scale = 12.0 / (high - low)
    with torch.no_grad():
        selector.score_head[2].weight.mul_(scale)
        selector.score_head[2].bias.mul_(scale).add_(20.0 - scale * low)
    keep = keep_with(selector)
    hook.remove()
    assert torch.all(torch.sigmoid(seen[-1]) == 1.0)  # float32 scores all tie
    grid = clip_inputs["video_grid_thw"][0]
    expected = ref.chunkwise_keep(
        embeds[0], clip_inputs["input_ids"][0],
        lambda video, audio: ref.vgas(selector, video, audio, logits=True), 0.7, 0.6,
        video_token_id=video_id, audio_token_id=audio_id, tokens_per_frame=tokens_per_frame(grid),
        frames=int(grid[0]),
    )
    assert keep[0].tolist() == expected.tolist()
