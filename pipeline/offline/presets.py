"""Named presets of `omnisift train` (`preset:` in configs/train.yaml) and `omnisift eval` (configs/eval.yaml).

A preset fills defaults; anything the YAML gives wins. Of two alternative fields (`epochs` / `steps`,
`global_batch_size` / `grad_accum`, `warmup_ratio` / `warmup_steps`) the one the YAML gives wins, else the
one the preset sets; the other is cleared.

Where the numbers come from:

- `selector_only`: this project's recipe (the field defaults of `OptimConfig`): the selector alone, lr 1e-4,
  rho_video 0.8 / rho_audio 0.3 (about 25% of audio+video tokens kept).
- train `release`: the public OmniSIFT release's recipe as its issue states it: the language model trained
  with the selector (full fine-tune, towers frozen), lr 1e-5, cosine schedule, warm-up 5% of the steps,
  1 epoch, global batch 128, max length 32768, bf16, rho_video 0.7 / rho_audio 0.3. Two readings are this
  project's: "cosine" decays to 0 (`min_lr_ratio: 0`, as the usual `cosine` schedulers do), and warm-up
  steps are `ceil(0.05 * steps)`. Weight decay, gradient clipping and the per-worker micro-batch are not
  given and keep the project's defaults (0.01, 1.0, 1). Sequences longer than `max_length` (counted before
  compression) are skipped and counted, not truncated: a cut would separate media from its answer.
- eval `release`: the frames cap and pixel bounds are transformers' Qwen2.5-Omni defaults, since the
  release states none: `Qwen2VLVideoProcessor.max_frames = 768` and `Qwen2_5OmniProcessor.videos_kwargs`
  `size = {shortest_edge: 128*28*28, longest_edge: 768*28*28}` (transformers 5.24). Greedy decoding is the
  issue's. 25% retention is the paper's table (docs/design.md section 3). `saliency_dtype: input` is the
  release's STVP arithmetic (in the tokens' dtype, bf16 on a GPU), which the OmniSIFT-7B checkpoint was
  trained with.
"""

from __future__ import annotations

from typing import Any

from omnisift.token_layout import PIXELS_PER_TOKEN

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "selector_only": {},
    "release": {
        "trainable": "full",
        "lr": 1.0e-5,
        "min_lr_ratio": 0.0,
        "warmup_ratio": 0.05,
        "epochs": 1,
        "global_batch_size": 128,
        "max_length": 32768,
        "precision": "bf16",
        "rho_video": 0.7,
        "rho_audio": 0.3,
    },
}

EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "release": {
        "model": {"min_pixels": 128 * PIXELS_PER_TOKEN, "max_pixels": 768 * PIXELS_PER_TOKEN, "max_frames": 768},
        "do_sample": False,
        "retention": 0.25,
        "saliency_dtype": "input",
    },
}

# pairs of alternative fields: a config gives one of each pair, the other is None
ALTERNATIVES = (("epochs", "steps"), ("global_batch_size", "grad_accum"), ("warmup_ratio", "warmup_steps"))


def with_preset(given: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
    """`given` over `preset`, recursively for nested sections. Of two alternative fields, the one `given`
    names wins (the other is set to None, whatever its default or the preset's); when `given` names neither,
    the one the preset sets wins the same way."""
    out = {k: v for k, v in preset.items() if not isinstance(v, dict)}
    for pair in ALTERNATIVES:
        chosen = [f for f in pair if f in given] or [f for f in pair if f in preset]
        if len(chosen) == 1:
            other = pair[1 - pair.index(chosen[0])]
            out[other] = None
    for key, value in preset.items():
        if isinstance(value, dict):
            out[key] = with_preset(dict(given.get(key) or {}), value)
    return {**out, **{k: v for k, v in given.items() if not isinstance(preset.get(k), dict)}}
