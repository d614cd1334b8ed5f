"""What `omnisift train` does in one process: load the model, cache features, train the selector (and, with
`train.trainable` full or lora, the language model with it)."""

from __future__ import annotations

import logging
import math

from omnisift.loading import DEFAULT_SYSTEM_PROMPT, load_model
from omnisift.selector import VisionGuidedAudioSelector
from omnisift.training import (
    LoraSettings,
    PromptTemplate,
    Trainer,
    TrainSettings,
    apply_lora,
    batch_stream,
    latest_checkpoint,
)
from pipeline.offline.features import FeatureCache, dataset_with_features, training_examples

log = logging.getLogger(__name__)


def load_trainable_model(cfg):
    """The model with a selector to train: the given selector file, the checkpoint's own, or a fresh one."""
    m = cfg.model
    try:
        model = load_model(m.path, selector=m.selector, device=m.device, dtype=m.dtype,
                           local_files_only=m.local_files_only)
    except ValueError as err:  # no selector in the checkpoint: start from a fresh one
        if "no OmniSIFT selector" not in str(err):
            raise
        model = load_model(m.path, compress=False, device=m.device, dtype=m.dtype, local_files_only=m.local_files_only)
        d_model = model.thinker.config.text_config.hidden_size
        model.thinker.compressor = VisionGuidedAudioSelector(d_model).to(model.device)
        log.warning("%s has no selector: training a freshly initialised one", m.path)
    thinker = model.thinker
    thinker.compressor.float()  # fp32 master weights; bf16 autocast on GPU
    if cfg.train.trainable == "full":
        thinker.model.language_model.float()
        thinker.lm_head.float()
    elif cfg.train.trainable == "lora":
        apply_lora(thinker, lora_settings(cfg))
        for name, param in thinker.model.language_model.named_parameters():
            if ".lora_" in name:
                param.data = param.data.float()
    return model


def lora_settings(cfg) -> LoraSettings:
    lora = cfg.train.lora
    return LoraSettings(lora.rank, lora.alpha, lora.dropout, tuple(lora.targets))


def train_settings(cfg, n_examples: int, world: int = 1) -> TrainSettings:
    """The loop's settings, with steps, accumulation and warm-up resolved from epochs, global batch and
    warm-up ratio where the config gives those (raises ValueError naming the field when they do not fit)."""
    t = cfg.train
    grad_accum = t.grad_accum
    if t.global_batch_size is not None:
        per_step = t.batch_size * world
        if t.global_batch_size % per_step:
            raise ValueError(f"train.global_batch_size: {t.global_batch_size} is not a multiple of batch_size "
                             f"{t.batch_size} x {world} workers")
        grad_accum = t.global_batch_size // per_step
    global_batch = t.batch_size * grad_accum * world
    steps = t.steps if t.steps is not None else max(1, math.ceil(t.epochs * n_examples / global_batch))
    warmup = t.warmup_steps if t.warmup_steps is not None else math.ceil(t.warmup_ratio * steps)
    fields = t.model_dump(exclude={"epochs", "global_batch_size", "warmup_ratio", "max_length", "lora"})
    return TrainSettings(**{**fields, "steps": steps, "grad_accum": grad_accum, "warmup_steps": warmup,
                            "lora": lora_settings(cfg)})


def load_for_training(cfg, *, build_cache: bool = True, progress: bool = False):
    """Model, laid-out training examples and the pad id."""
    model = load_trainable_model(cfg)
    m = cfg.model
    if build_cache:
        samples, cache, line, _ = dataset_with_features(cfg.dataset, cfg.cache_dir, model, min_pixels=m.min_pixels,
                                                        max_pixels=m.max_pixels, max_frames=m.max_frames,
                                                        progress=progress)
        print(line, flush=True)
    else:
        from omnisift.data import load_dataset

        samples, _ = load_dataset(cfg.dataset.path, cfg.dataset.layout, cfg.dataset.base, limit=cfg.dataset.limit)
        cache = FeatureCache(cfg.cache_dir)
        samples = [s for s in samples if s.media in cache]
    if not samples:
        raise ValueError(f"{cfg.dataset.path}: no usable samples")
    thinker, tok = model.thinker, model.processor.tokenizer
    template = PromptTemplate.from_processor(model.processor, m.system_prompt or DEFAULT_SYSTEM_PROMPT,
                                             thinker.config.video_token_id, thinker.config.audio_token_id)
    examples = training_examples(samples, cache, template, tok)
    if cfg.train.max_length is not None:
        kept = [e for e in examples if e.input_ids.numel() <= cfg.train.max_length]
        if len(kept) < len(examples):
            print(f"max_length {cfg.train.max_length}: skipped {len(examples) - len(kept)} of {len(examples)} "
                  "examples", flush=True)
        examples = kept
    if not examples:
        raise ValueError(f"{cfg.dataset.path}: no example fits train.max_length {cfg.train.max_length}")
    return model, examples, tok.pad_token_id


def train_local(cfg, *, progress: bool = True) -> Trainer:
    """Train in this process; resumes from the newest checkpoint in `out_dir` (or `resume` path)."""
    model, examples, pad_id = load_for_training(cfg, progress=progress)
    settings = train_settings(cfg, len(examples))
    trainer = Trainer(model.thinker, settings, out_dir=cfg.out_dir, base_model=cfg.model.path)
    resume = latest_checkpoint(cfg.out_dir) if cfg.resume is True else (cfg.resume or None)
    if resume:
        trainer.resume(resume)
        print(f"resumed from {resume} at step {trainer.optimizer_step}", flush=True)
    stream = batch_stream(examples, settings.batch_size, pad_id, seed=settings.seed)
    for _ in range(trainer.micro_step):  # the data order continues where it stopped
        next(stream)
    trainer.run(stream, progress=progress)
    return trainer
