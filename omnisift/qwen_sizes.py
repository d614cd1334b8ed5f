"""The sizes of the real Qwen2.5-Omni-7B thinker, from its published `config.json`, in one place.

Tests and benchmarks that must see the real shapes (tokens per frame, bytes per token, memory per actor)
build a model at these widths with fewer layers (`omnisift.tiny.make_real_width_omni`), and the memory
tables count the real layer counts on the meta device (`omnisift.qwen_sizes.thinker_config`).
"""

from __future__ import annotations

HIDDEN_7B = 3584  # language model width: every audio/video token reaching the LLM has this size

TEXT_7B = {
    "hidden_size": HIDDEN_7B, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
    "tie_word_embeddings": False,
}
VISION_7B = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_channels": 3,
    "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
    "out_hidden_size": HIDDEN_7B, "fullatt_block_indexes": [7, 15, 23, 31],
}
AUDIO_7B = {
    "num_mel_bins": 128, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120,
    "d_model": 1280, "output_dim": HIDDEN_7B, "n_window": 100, "max_source_positions": 1500,
}
# The released processor's frame bounds (preprocessor_config.json): any frame from 56x56 up to 12.8 MP
# passes at its own size, so a 640x480 frame is 391 tokens and a 1080p frame 2691.
MIN_PIXELS_7B = 3136
MAX_PIXELS_7B = 12845056

BF16_BYTES = 2


def kv_bytes_per_token(text: dict = TEXT_7B, bytes_per_value: int = BF16_BYTES) -> int:
    """Bytes of KV cache one token takes: layers x (K and V) x KV heads x head width x bytes."""
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    return text["num_hidden_layers"] * 2 * text["num_key_value_heads"] * head_dim * bytes_per_value
