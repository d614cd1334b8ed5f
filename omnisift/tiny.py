"""A tiny Qwen2.5-Omni, written with `save_pretrained`: what runs when real weights are not on the machine.

No weights can be downloaded on the machines this project is tested on, so tests load this model
through exactly the `from_pretrained` path a user's `Qwen/Qwen2.5-Omni-7B` goes through: a composite
`qwen2_5_omni` config with a thinker (audio tower, vision tower, text model; no talker), a byte-level
BPE tokenizer built here that carries Qwen's special tokens, and the full processor (Whisper log-mel
features, Qwen2-VL image and video processors, a chat template in Qwen's format). Its weights are
random, so its answers are meaningless; its shapes, token layout and code paths are the real ones.

`resolve_model` is the one place that decides between a configured model and this one (the demo,
`omnisift infer`, the pipeline with `fallback_tiny`, `omnisift viz`, `omnisift bench`, the benchmarks),
and `tiny_banner` the one text that says so. The name `tiny` asks for this model wherever a model is
named. The tiny model is built once into a cache folder and reused.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import torch

TINY = "tiny"  # the model name that always means the tiny random model (`--model tiny`)
TINY_BANNER = (
    "=" * 78 + "\n{model} weights are not on this machine: running the TINY RANDOM model.\n"
    "Its answers are meaningless; everything else (decoding, the towers, OmniSIFT, the live KV cache)\n"
    "is the real code path.\n" + "=" * 78
)


def tiny_banner(model: str | None) -> str:
    """`TINY_BANNER` for a run that asked for `model` (None: none asked for; `tiny`: the tiny one asked for)."""
    if model is None or str(model) == TINY:
        head = "no model given" if model is None else "--model tiny"
        return TINY_BANNER.replace("{model} weights are not on this machine", head)
    return TINY_BANNER.format(model=model)


DEFAULT_CACHE = Path.home() / ".cache" / "omnisift"

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


def tiny_config(tokenizer, hidden_size: int = 64, text_layers: int = 2, overrides: dict | None = None):
    """A small `Qwen2_5OmniConfig` (thinker only) whose token ids match `tokenizer`; `overrides` replaces
    entries of its `text_config`, `vision_config` and `audio_config` before the config is built."""
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
    for sub, values in (overrides or {}).items():
        thinker[sub] = {**thinker[sub], **values}
    # No talker is built (no audio output), but its default config carries 7B vocabulary ids; give it
    # ids inside its own vocabulary so configuration checks stay quiet.
    talker = {name: i + 1 for i, name in enumerate([
        "tts_text_start_token_id", "tts_text_end_token_id", "tts_text_pad_token_id", "vision_start_token_id",
        "vision_end_token_id", "audio_start_token_id", "audio_end_token_id"])}
    return Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, enable_audio_output=False)


def real_width_config(tokenizer, layers: int | None = 1, real_vocab: bool = False):
    """A `Qwen2_5OmniConfig` at the real 7B widths and head counts (`omnisift.qwen_sizes`) with `layers`
    layers in each stack (None: the real 28 / 32 / 32), token ids from `tokenizer`. `real_vocab=True` keeps
    the 152,064-row embedding and head (2 x 545M parameters); otherwise the tokenizer's small vocabulary."""
    from omnisift.qwen_sizes import AUDIO_7B, TEXT_7B, VISION_7B

    text = {k: v for k, v in TEXT_7B.items() if k != "vocab_size" or real_vocab}
    vision, audio = dict(VISION_7B), dict(AUDIO_7B)
    if layers is not None:
        text["num_hidden_layers"], audio["encoder_layers"] = layers, layers
        vision.update(depth=layers, fullatt_block_indexes=[layers - 1])
    return tiny_config(tokenizer, hidden_size=TEXT_7B["hidden_size"], text_layers=text["num_hidden_layers"],
                       overrides={"text_config": text, "vision_config": vision, "audio_config": audio})


def build_processor(tokenizer, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112):
    """The full Qwen2.5-Omni processor around `tokenizer`, with small default frame sizes."""
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
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
    tokenizer = build_tokenizer()
    return write_omni(path, tiny_config(tokenizer, hidden_size=hidden_size), build_processor(tokenizer),
                      seed=seed, with_selector=with_selector)


def make_real_width_omni(path: str | Path, *, layers: int = 1, real_vocab: bool = False, seed: int = 0,
                         with_selector: bool = True, max_shard_size: str = "2GB",
                         dtype: torch.dtype | None = None) -> Path:
    """Write a random Qwen2.5-Omni at the real 7B widths with `layers` layers per stack, and a processor
    with the released frame bounds (so frames have their real token counts); returns the path. Sharded
    like the released checkpoint when larger than `max_shard_size`."""
    from omnisift.qwen_sizes import MAX_PIXELS_7B, MIN_PIXELS_7B

    tokenizer = build_tokenizer()
    config = real_width_config(tokenizer, layers=layers, real_vocab=real_vocab)
    return write_omni(path, config, build_processor(tokenizer, MIN_PIXELS_7B, MAX_PIXELS_7B), seed=seed,
                      with_selector=with_selector, max_shard_size=max_shard_size, dtype=dtype)


def write_omni(path: str | Path, config, processor, *, seed: int = 0, with_selector: bool = True,
               max_shard_size: str = "2GB", dtype: torch.dtype | None = None) -> Path:
    """Save a random `Qwen2_5OmniForConditionalGeneration` of `config` and `processor` to `path`, with a
    random VGAS selector under `thinker.compressor.` (the OmniSIFT-7B layout) if `with_selector`; weights
    in `dtype` (bf16 like the released checkpoint) or fp32."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import Qwen2_5OmniForConditionalGeneration

    from omnisift.checkpoint import PREFIX
    from omnisift.device import cast_module
    from omnisift.selector import VisionGuidedAudioSelector

    path = Path(path)
    torch.manual_seed(seed)
    model = Qwen2_5OmniForConditionalGeneration(config)
    if dtype is not None:
        cast_module(model, dtype=dtype)
    model.save_pretrained(path, max_shard_size=max_shard_size)
    del model
    processor.save_pretrained(path)
    if with_selector:
        shard = sorted(path.glob("model*.safetensors"))[-1]  # the selector joins the last shard
        with safe_open(str(shard), "pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        selector = VisionGuidedAudioSelector(config.thinker_config.text_config.hidden_size)
        state.update({PREFIX + k: v.to(dtype or v.dtype).contiguous() for k, v in selector.state_dict().items()})
        save_file(state, str(shard), metadata={"format": "pt"})
        _index_selector(path, shard.name, [PREFIX + k for k in selector.state_dict()])
    return path


def _index_selector(path: Path, shard: str, keys: list[str]) -> None:
    """Name the selector's tensors in the shard index, when the checkpoint is sharded."""
    import json

    index = path / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"].update({k: shard for k in keys})
        index.write_text(json.dumps(data, indent=2))


def tiny_model_dir(cache: str | Path = DEFAULT_CACHE) -> Path:
    """The tiny model (default build), written once into `cache` and reused by every later call.

    Its weights come from a fixed seed, so a build is the same every time; the folder name carries a
    hash of this file and the `transformers` version, so a change to either builds a new one. Writes go
    to a temporary folder renamed into place, so concurrent callers never see half a model."""
    target = _tiny_target(cache)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        make_tiny_omni(building)
        building.rename(target)
    except OSError:
        if not (target / "config.json").exists():  # not a concurrent build that won the rename
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def _tiny_target(cache: str | Path = DEFAULT_CACHE) -> Path:
    import transformers

    key = hashlib.sha1(Path(__file__).read_bytes() + transformers.__version__.encode()).hexdigest()[:12]
    return Path(cache) / f"tiny-omni-{key}"


def is_tiny_model(model: str | Path) -> bool:
    """Whether `model` names the tiny random model: the name `tiny`, or the folder `tiny_model_dir` builds
    (so a run handed the resolved folder still knows, and says, that its model is the tiny one)."""
    if str(model) == TINY:
        return True
    try:
        return Path(model).resolve() == _tiny_target().resolve()
    except (OSError, ValueError):
        return False


def weights_available(model: str, *, local_files_only: bool = True) -> bool:
    """Whether `model` (a folder, or a hub id already in the local hub cache) can be loaded without a
    download. With `local_files_only=False` a hub id counts as available when it can be downloaded (it is,
    into the hub cache), and so does a name that is no hub id at all (a mistyped folder: loading it
    reports it in one line rather than a random model standing in for it)."""
    if Path(model).exists():
        return True
    if not local_files_only:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        from omnisift.loading import model_folder

        try:
            validate_repo_id(model)
        except HFValidationError:
            return True
        try:
            model_folder(model, local_files_only=False)
        except Exception:  # noqa: BLE001 - not found, offline, refused: not available
            return False
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:  # noqa: BLE001 - not a hub id, or no hub library: not available
        return False


def resolve_model(model: str | None, *, fallback_tiny: bool = True, download: bool = False) -> tuple[str, bool]:
    """(path, is_tiny): `model` if its weights are on this machine (or it is not to be replaced), else
    the tiny random model. `None` and `"tiny"` always mean the tiny one, and the tiny model's own folder
    is recognised as tiny. `download=True` tries the hub first (`weights_available(local_files_only=False)`).
    Resolve once, where the run starts, so every process loads the same weights; print `TINY_BANNER`
    when `is_tiny`."""
    if model is not None and is_tiny_model(model):
        return (str(tiny_model_dir()) if str(model) == TINY else str(model)), True
    if model is not None and (not fallback_tiny or weights_available(model, local_files_only=not download)):
        return model, False
    return str(tiny_model_dir()), True
