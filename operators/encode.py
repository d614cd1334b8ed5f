"""Encode: Qwen2.5-Omni's vision and audio towers, one chunk at a time.

The vision tower never attends across a temporal grid step and the audio tower attends within
2-second windows (`2 * n_window` mel frames), so encoding chunk by chunk gives the whole-clip outputs.
"""

from __future__ import annotations

import torch

from operators.chunks import EncodedChunk, PreprocessedChunk


class Encoder:
    """Runs the thinker's towers on preprocessed chunks."""

    def __init__(self, thinker) -> None:
        self.thinker = thinker
        self.merge = thinker.config.vision_config.spatial_merge_size

    @torch.inference_mode()
    def process(self, chunk: PreprocessedChunk) -> EncodedChunk:
        video = audio = grid_hw = features = None
        dtype = self.thinker.model.visual.dtype
        if chunk.pixel_values is not None:
            grid_t, grid_h, grid_w = chunk.grid_thw
            grid = torch.tensor([chunk.grid_thw], device=chunk.pixel_values.device)
            out = self.thinker.model.get_video_features(chunk.pixel_values.to(dtype), grid, return_dict=True)
            grid_hw = (grid_h // self.merge, grid_w // self.merge)
            video = out.pooler_output[0].view(grid_t, grid_hw[0] * grid_hw[1], -1)  # [grid_t, n_p, D]
        if chunk.features is not None:
            features = chunk.features.unsqueeze(0).to(dtype)  # [1, 128, n_mel]
            mask = torch.ones(features.shape[::2], dtype=torch.long, device=features.device)  # [1, n_mel]
            audio = self.thinker.model.get_audio_features(features, mask, return_dict=True).last_hidden_state
        return EncodedChunk(chunk.index, video, audio, grid_hw,
                            audio_features=None if features is None else features[0],
                            audio_tower=None if features is None else self.thinker.model.audio_tower)

    def reset(self) -> None:
        """Stateless."""
