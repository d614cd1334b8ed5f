"""Offline training of the VGAS selector on cached tower outputs (docs/design.md section 3).

The frozen towers ran once (the feature cache in `pipeline.offline.features`); here each clip's per-chunk
vision and audio tokens are laid out as Qwen2.5-Omni lays them out (`[chunk 0 video][chunk 0 audio]...`
between the bos and eos tokens, then the question and the answer) with TMRoPE positions by the rules of
docs/design.md section 2 (a test checks them against `get_rope_index`). `compressed_forward` decides what to
keep with `decide_sequence`, runs the frozen language model on the kept tokens at their original
positions and takes the next-token loss on the answer; the straight-through mask carries the gradient
to the selector either through the kept audio embeddings (`gate="embedding"`, docs/design.md section 3) or
through every attention layer's keys (`gate="attention"`, `omnisift.key_gate`), and the scores pass it
to the selector's logits centred per chunk (`omnisift.sequence.straight_through_scores`). The selector
learns; with `TrainSettings.trainable` "full" or "lora" the language model learns with it (the release
recipe; `trainable`), sharded across workers with FSDP (`sharding`), and checkpoints also hold a model
folder in `save_pretrained` layout with the selector inside (`export`). The towers never train.

`Trainer.step()` does one micro-batch (and an optimizer step every `grad_accum` micro-batches);
`Trainer.run()` loops, shows a progress bar, writes checkpoints and the learning curve. Checkpoints
are a folder: `selector.safetensors` (official `thinker.compressor.` layout, loadable by
`load_selector`), `optimizer.safetensors` (AdamW state, no pickle) and `trainer_state.json`.

Modules: `layout` (examples and batches), `forward` (the compressed forward and its estimator),
`trainer` (settings, schedule, checkpoints, the loop), `trainable` (what trains; LoRA), `sharding` (FSDP),
`export` (the model folder).
"""

from __future__ import annotations

from omnisift.training.forward import (
    GATES,
    ForwardResult,
    RandomScorer,
    compressed_forward,
    embed_batch,
    option_logits,
)
from omnisift.training.layout import (
    Batch,
    ClipFeatures,
    Example,
    PromptTemplate,
    av_layout,
    build_example,
    collate,
)
from omnisift.training.trainable import TRAINABLE, LoraSettings, TrainableCore, apply_lora, set_trainable
from omnisift.training.trainer import (
    History,
    StepResult,
    Trainer,
    TrainSettings,
    batch_stream,
    cosine_with_warmup,
    freeze_all_but_selector,
    latest_checkpoint,
    optimizer_from_safetensors,
    optimizer_to_safetensors,
    plot_curve,
    selector_parameters_changed,
)

__all__ = [
    "GATES",
    "TRAINABLE",
    "LoraSettings",
    "TrainableCore",
    "apply_lora",
    "set_trainable",
    "Batch",
    "ClipFeatures",
    "Example",
    "ForwardResult",
    "History",
    "PromptTemplate",
    "RandomScorer",
    "StepResult",
    "TrainSettings",
    "Trainer",
    "av_layout",
    "batch_stream",
    "build_example",
    "collate",
    "compressed_forward",
    "cosine_with_warmup",
    "embed_batch",
    "freeze_all_but_selector",
    "latest_checkpoint",
    "optimizer_from_safetensors",
    "optimizer_to_safetensors",
    "option_logits",
    "plot_curve",
    "selector_parameters_changed",
]
