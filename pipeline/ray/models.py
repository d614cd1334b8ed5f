"""The model a pipeline's actors load, from its typed `ModelSpec`: the whole thinker for the model actor,
towers and selector for the encoder, and the compression every stream of the pipeline uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import ModelSpec


def model_spec(spec: ModelSpec | Mapping[str, Any]) -> ModelSpec:
    """The typed spec (a mapping is validated into one, for callers outside the driver)."""
    return spec if isinstance(spec, ModelSpec) else ModelSpec.model_validate(dict(spec))


def compression(spec: ModelSpec):
    """The spec's `operators.Compression`; a one-line ValueError for a bad compressor or option, raised
    by the actors' constructors so that a bad config fails when the pipeline starts."""
    from operators import Compression

    return Compression.of(spec.compressor, spec.retention, spec.rho_video, spec.rho_audio, spec.compressor_options)


def load_omni(spec: ModelSpec | Mapping[str, Any], *, towers_only: bool = False):
    """Load the `OmniModel` a model spec names; `towers_only` for the encoder."""
    from omnisift.loading import load_model

    spec = model_spec(spec)
    return load_model(spec.path, selector=spec.selector, device=spec.device, dtype=spec.dtype,
                      compress=compression(spec).needs_selector, local_files_only=spec.local_files_only,
                      towers_only=towers_only)
