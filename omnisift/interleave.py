"""Whole Qwen2.5-Omni sequences laid out as the model's own processor lays them out, without media.

Offline compression (`omnisift.sequence`) works on interleaved sequences of video and audio tokens with the
TMRoPE positions `get_rope_index` gives them. Tests and benchmarks need such sequences at any length, fps and
frame size without encoding real clips: `interleaved_input_ids` builds the token ids the processor would
(checked against the real processor in the tests) and `rope_positions_of` asks the thinker's own
`get_rope_index` for their positions.
"""

from __future__ import annotations

import torch

from omnisift.tiny import build_tokenizer, tiny_config


def tiny_thinker(hidden_size: int = 64):
    """An in-memory tiny thinker (random weights, nothing written), for its config and `get_rope_index`."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    config = tiny_config(build_tokenizer(), hidden_size=hidden_size).thinker_config
    return Qwen2_5OmniThinkerForConditionalGeneration(config).eval()


def interleaved_input_ids(
    config, grid_t: int, rows: int, cols: int, audio_tokens: int, seconds_per_grid: float = 1.0,
    *, prefix_text: int = 3, suffix_text: int = 3, text_id: int = 100,
) -> torch.Tensor:
    """input_ids [1, L] of one video with its audio, interleaved exactly as the Qwen2.5-Omni processor
    lays it out with `use_audio_in_video` (its own `get_chunked_index` cuts both streams into windows of
    `position_id_per_seconds * seconds_per_chunk` time positions; video window j, then audio window j).

    config: the thinker config (token ids, `position_id_per_seconds`, `seconds_per_chunk`).
    grid_t frames of rows x cols merged tokens, `seconds_per_grid` seconds apart; audio_tokens at 25 a second.
    Positions for these ids come from `get_rope_index` with `video_grid_thw = [[grid_t, 2 rows, 2 cols]]`
    and `audio_seqlens = [4 * audio_tokens]` (the audio tower's length rule maps that back to audio_tokens).
    """
    import numpy as np
    from transformers import Qwen2_5OmniProcessor

    per_second = config.position_id_per_seconds
    window = int(per_second * config.seconds_per_chunk)
    video_t = np.repeat(np.arange(grid_t) * seconds_per_grid * per_second, rows * cols)
    video_windows = Qwen2_5OmniProcessor.get_chunked_index(None, video_t, window)
    audio_windows = Qwen2_5OmniProcessor.get_chunked_index(None, np.arange(audio_tokens), window)
    ids = [text_id] * prefix_text + [config.vision_start_token_id, config.audio_start_token_id]
    for j in range(max(len(video_windows), len(audio_windows))):
        if j < len(video_windows):
            ids += [config.video_token_id] * (video_windows[j][1] - video_windows[j][0])
        if j < len(audio_windows):
            ids += [config.audio_token_id] * (audio_windows[j][1] - audio_windows[j][0])
    ids += [config.audio_end_token_id, config.vision_end_token_id] + [text_id] * suffix_text
    return torch.tensor([ids])


def rope_positions_of(thinker, input_ids: torch.Tensor, grid_t: int, rows: int, cols: int, audio_tokens: int,
                      seconds_per_grid: float = 1.0) -> torch.Tensor:
    """TMRoPE positions [3, 1, L] of `interleaved_input_ids(...)` from the thinker's own `get_rope_index`."""
    positions, _ = thinker.get_rope_index(
        input_ids, None, torch.tensor([[grid_t, 2 * rows, 2 * cols]]), torch.ones_like(input_ids),
        use_audio_in_video=True, audio_seqlens=torch.tensor([4 * audio_tokens]),
        second_per_grids=torch.tensor([seconds_per_grid]),
    )
    return positions
