"""Encode: Qwen2.5-Omni's vision and audio towers, over one chunk or the chunks of several streams at once.

The vision tower never attends across a temporal grid step and the audio tower attends within
2-second windows (`2 * n_window` mel frames), so encoding chunk by chunk gives the whole-clip outputs.
The same holds across chunks packed together: the vision tower takes the patches of several videos in
one sequence with one `grid_thw` row each (its attention is cut at every video's boundary by
`cu_seqlens`, its windows never span two videos), and the audio tower takes the log-mel of several
clips with their `feature_lens` (cut into its own windows per clip, pooled per clip). So one forward
of each tower over the chunks of N streams gives each chunk what its own forward gives
(`process_many`; tests/operators/test_encode_many.py checks it to 1e-5 in float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from operators.chunks import EncodedChunk, PreprocessedChunk


class Encoder:
    """Runs the thinker's towers on preprocessed chunks."""

    def __init__(self, thinker) -> None:
        self.thinker = thinker
        self.merge = thinker.config.vision_config.spatial_merge_size

    def process(self, chunk: PreprocessedChunk) -> EncodedChunk:
        return self.process_many([chunk])[0]

    @torch.inference_mode()
    def process_many(self, chunks: Sequence[PreprocessedChunk]) -> list[EncodedChunk]:
        """Each chunk's tower outputs, from one vision forward over every chunk with video and one audio
        forward over every chunk with audio (chunks may differ in frame size and modalities)."""
        videos = self._videos([c for c in chunks if c.pixel_values is not None])
        audios = self._audios([c for c in chunks if c.features is not None])
        tower = self.thinker.model.audio_tower
        out = []
        for c in chunks:
            video, grid_hw = videos.pop(0) if c.pixel_values is not None else (None, None)
            audio = audios.pop(0) if c.features is not None else None
            features = None if c.features is None else c.features.to(tower.dtype)
            out.append(EncodedChunk(c.index, video, audio, grid_hw, audio_features=features,
                                    audio_tower=None if features is None else tower))
        return out

    def _videos(self, chunks: list[PreprocessedChunk]) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        """([grid_t, n_p, D] tokens, merged (rows, cols)) of each chunk, from one vision forward over the
        packed patches [sum of t*h*w, 1176] with one grid_thw row per chunk."""
        if not chunks:
            return []
        dtype = self.thinker.model.visual.dtype
        pixels = torch.cat([c.pixel_values.to(dtype) for c in chunks])
        grid = torch.tensor([c.grid_thw for c in chunks], device=pixels.device)  # [B, 3]
        pooled = self.thinker.model.get_video_features(pixels, grid, return_dict=True).pooler_output  # B x [t*n_p, D]
        out = []
        for c, tokens in zip(chunks, pooled, strict=True):
            grid_t, grid_h, grid_w = c.grid_thw
            grid_hw = (grid_h // self.merge, grid_w // self.merge)
            out.append((tokens.view(grid_t, grid_hw[0] * grid_hw[1], -1), grid_hw))
        return out

    def _audios(self, chunks: list[PreprocessedChunk]) -> list[torch.Tensor]:
        """[n_a, D] tokens of each chunk, from one audio forward over the log-mel of every chunk, padded to
        the longest [B, 128, n_mel] with a mask of each chunk's frames."""
        if not chunks:
            return []
        dtype = self.thinker.model.audio_tower.dtype
        lengths = [c.features.shape[-1] for c in chunks]
        features = torch.zeros(len(chunks), chunks[0].features.shape[0], max(lengths), dtype=dtype,
                               device=chunks[0].features.device)  # [B, 128, n_mel]
        mask = torch.zeros(len(chunks), max(lengths), dtype=torch.long, device=features.device)  # [B, n_mel]
        for i, (c, n) in enumerate(zip(chunks, lengths, strict=True)):
            features[i, :, :n] = c.features.to(dtype)
            mask[i, :n] = 1
        tokens = self.thinker.model.get_audio_features(features, mask, return_dict=True).last_hidden_state
        _, out_lengths = self.thinker.model.audio_tower._get_feat_extract_output_lengths(mask.sum(-1))
        return list(tokens.split(out_lengths.tolist()))  # [sum n_a, D] -> B x [n_a, D]

    def reset(self) -> None:
        """Stateless."""
