"""The model a pipeline's actors load, from its typed `ModelConfig`: the whole thinker for the model actor,
towers and selector for the encoder, and the compression every stream of the pipeline uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import ModelConfig


def model_spec(spec: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    """The typed spec (a mapping is validated into one, for callers outside the driver)."""
    return spec if isinstance(spec, ModelConfig) else ModelConfig.model_validate(dict(spec))


def compression(spec: ModelConfig):
    """The spec's `operators.Compression`; a one-line ValueError for a bad compressor or option, raised
    by the actors' constructors so that a bad config fails when the pipeline starts."""
    from operators import Compression

    return Compression.of(spec.compressor, spec.retention, spec.rho_video, spec.rho_audio, spec.compressor_options)


def load_omni(spec: ModelConfig | Mapping[str, Any], *, part: str = "all"):
    """Load the `OmniModel` a model spec names: `part="towers"` for the encoder, "language" for the model
    actor (`omnisift.parts`), "all" for everything."""
    from omnisift.loading import load_model

    spec = model_spec(spec)
    return load_model(spec.path, selector=spec.selector, device=spec.device, dtype=spec.dtype,
                      compress=compression(spec).needs_selector, local_files_only=spec.local_files_only,
                      part=part)


def frame_cap(source: Mapping[str, Any]) -> tuple[int, int] | None:
    """(width, height) a source config caps its frames at, when it sets both (`max_width`, `max_height`)."""
    width, height = source.get("max_width"), source.get("max_height")
    return (int(width), int(height)) if width and height else None


def stream_budget(spec: ModelConfig, source: Mapping[str, Any], processor, config):
    """The worst-case context of one stream (`pipeline.session.budget`) from the model's `processor` and
    thinker `config` (no weights needed) and the stream's source config."""
    from pipeline.session.budget import context_budget, effective_max_pixels

    size = processor.video_processor.size
    return context_budget(
        config, processor, compression(spec), window_seconds=spec.window_seconds,
        max_pixels=effective_max_pixels(spec.max_pixels, size["longest_edge"]),
        min_pixels=spec.min_pixels or size["shortest_edge"], frame_size=frame_cap(source),
        max_question_tokens=spec.max_question_tokens, max_new_tokens=spec.max_new_tokens)


def model_files(spec: ModelConfig):
    """The model's processor and thinker config, read without the weights (for budgets in the driver)."""
    from transformers import AutoConfig, Qwen2_5OmniProcessor

    from omnisift.loading import model_folder

    folder = model_folder(spec.path, spec.local_files_only)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    return Qwen2_5OmniProcessor.from_pretrained(str(folder), local_files_only=True), \
        getattr(config, "thinker_config", config)
