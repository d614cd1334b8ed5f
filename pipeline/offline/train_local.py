"""What `omnisift train` does in one process: load the model, cache features, train the selector."""

from __future__ import annotations

import logging

from omnisift.loading import DEFAULT_SYSTEM_PROMPT, load_model
from omnisift.selector import VisionGuidedAudioSelector
from omnisift.training import PromptTemplate, Trainer, TrainSettings, batch_stream, latest_checkpoint
from pipeline.offline.features import FeatureCache, dataset_with_features, training_examples

log = logging.getLogger(__name__)


def load_trainable_model(cfg):
    """The model with a selector to train: the given selector file, the checkpoint's own, or a fresh one."""
    m = cfg.model
    try:
        model = load_model(m.name, selector=m.selector, device=m.device, dtype=m.dtype,
                           local_files_only=m.local_files_only)
    except ValueError as err:  # no selector in the checkpoint: start from a fresh one
        if "no OmniSIFT selector" not in str(err):
            raise
        model = load_model(m.name, compress=False, device=m.device, dtype=m.dtype, local_files_only=m.local_files_only)
        d_model = model.thinker.config.text_config.hidden_size
        model.thinker.compressor = VisionGuidedAudioSelector(d_model).to(model.device)
        log.warning("%s has no selector: training a freshly initialised one", m.name)
    model.thinker.compressor.float()  # fp32 master weights; bf16 autocast on GPU
    return model


def load_for_training(cfg, *, build_cache: bool = True, progress: bool = False):
    """Model, laid-out training examples and the pad id."""
    model = load_trainable_model(cfg)
    m = cfg.model
    if build_cache:
        samples, cache, line, _ = dataset_with_features(cfg.dataset, cfg.cache_dir, model, min_pixels=m.min_pixels,
                                                        max_pixels=m.max_pixels, progress=progress)
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
    return model, training_examples(samples, cache, template, tok), tok.pad_token_id


def train_local(cfg, *, progress: bool = True) -> Trainer:
    """Train in this process; resumes from the newest checkpoint in `out_dir` (or `resume` path)."""
    model, examples, pad_id = load_for_training(cfg, progress=progress)
    settings = TrainSettings(**cfg.train.model_dump())
    trainer = Trainer(model.thinker, settings, out_dir=cfg.out_dir)
    resume = latest_checkpoint(cfg.out_dir) if cfg.resume is True else (cfg.resume or None)
    if resume:
        trainer.resume(resume)
        print(f"resumed from {resume} at step {trainer.optimizer_step}", flush=True)
    stream = batch_stream(examples, settings.batch_size, pad_id, seed=settings.seed)
    for _ in range(trainer.micro_step):  # the data order continues where it stopped
        next(stream)
    trainer.run(stream, progress=progress)
    return trainer
