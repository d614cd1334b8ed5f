"""A tiny Qwen2.5-Omni, written with `save_pretrained`, for tests and the offline demo.

No weights can be downloaded on the machines this project is tested on, so tests load this model
through exactly the `from_pretrained` path a user's `Qwen/Qwen2.5-Omni-7B` goes through: a composite
`qwen2_5_omni` config with a thinker (audio tower, vision tower, text model; no talker), a byte-level
BPE tokenizer built here that carries Qwen's special tokens, and the full processor (Whisper log-mel
features, Qwen2-VL image and video processors, a chat template in Qwen's format). Its weights are
random, so its answers are meaningless; its shapes, token layout and code paths are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>",
    "<|IMAGE|>", "<|VIDEO|>",
]

# Qwen's chat format: <|im_start|>role\n...<|im_end|>\n, media as bos/placeholder/eos triples.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- elif part['type'] == 'audio' -%}{{ '<|audio_bos|><|AUDIO|><|audio_eos|>' }}"
    "{%- elif part['type'] == 'image' -%}{{ '<|vision_bos|><|IMAGE|><|vision_eos|>' }}"
    "{%- elif part['type'] == 'video' -%}{{ '<|vision_bos|><|VIDEO|><|vision_eos|>' }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

_CORPUS = [
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech.",
    "What is the person holding? Is someone shouting? What colour is on the screen?",
    "Answer with the option's letter from the given choices directly. A. B. C. D. yes no",
    "The person is holding a red cup. A dog barks near the door. Nobody is in the room.",
    "system user assistant question answer video audio image frame sound tone beep shape moving",
    "0 1 2 3 4 5 6 7 8 9 10 seconds minutes left right up down red green blue yellow white black",
]


def build_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer trained on a few sentences, with Qwen2.5-Omni's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return Qwen2TokenizerFast(
        tokenizer_object=bpe, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, padding_side="left",
        extra_special_tokens={
            "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
            "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
            "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
        },
    )


def tiny_config(tokenizer, hidden_size: int = 64, text_layers: int = 2):
    """A small `Qwen2_5OmniConfig` (thinker only) whose token ids match `tokenizer`."""
    from transformers import Qwen2_5OmniConfig

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    heads = 4
    head_dim = hidden_size // heads
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]  # (t, h, w) frequency split, sums to head_dim / 2
    thinker = {
        "audio_config": {
            "num_mel_bins": 128, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
            "d_model": 32, "output_dim": hidden_size, "n_window": 100, "max_source_positions": 1500,
        },
        "vision_config": {
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "in_channels": 3,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "out_hidden_size": hidden_size, "fullatt_block_indexes": [1],
        },
        "text_config": {
            "vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": text_layers, "num_attention_heads": heads, "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope},
            "tie_word_embeddings": False,
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        },
        "audio_token_index": ids["<|AUDIO|>"], "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"], "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"], "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"], "position_id_per_seconds": 25, "seconds_per_chunk": 2,
        "pad_token_id": ids["<|endoftext|>"],
    }
    # No talker is built (no audio output), but its default config carries 7B vocabulary ids; give it
    # ids inside its own vocabulary so configuration checks stay quiet.
    talker = {name: i + 1 for i, name in enumerate([
        "tts_text_start_token_id", "tts_text_end_token_id", "tts_text_pad_token_id", "vision_start_token_id",
        "vision_end_token_id", "audio_start_token_id", "audio_end_token_id"])}
    return Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, enable_audio_output=False)


def build_processor(tokenizer, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112):
    """The full Qwen2.5-Omni processor around `tokenizer`, with small default frame sizes."""
    from transformers import (
        Qwen2_5OmniProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, WhisperFeatureExtractor,
    )

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=14, temporal_patch_size=2, merge_size=2),
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=14, temporal_patch_size=2, merge_size=2),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                                  chunk_length=30, n_fft=400),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def make_tiny_omni(path: str | Path, *, seed: int = 0, with_selector: bool = True,
                   hidden_size: int = 64) -> Path:
    """Write a tiny random Qwen2.5-Omni (and its processor) to `path`; returns the path.

    With `with_selector=True` the checkpoint also holds a random VGAS selector under
    `thinker.compressor.`, the layout of the public OmniSIFT-7B checkpoint.
    """
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2_5OmniForConditionalGeneration

    from omnisift.checkpoint import PREFIX
    from omnisift.selector import VisionGuidedAudioSelector

    path = Path(path)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = Qwen2_5OmniForConditionalGeneration(tiny_config(tokenizer, hidden_size=hidden_size))
    model.save_pretrained(path)
    build_processor(tokenizer).save_pretrained(path)
    if with_selector:
        weights = path / "model.safetensors"
        state = load_file(str(weights))
        selector = VisionGuidedAudioSelector(hidden_size)
        state.update({PREFIX + k: v.contiguous() for k, v in selector.state_dict().items()})
        save_file(state, str(weights), metadata={"format": "pt"})
    return path


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
