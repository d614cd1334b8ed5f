"""The tiny Qwen2.5-Omni on disk, shared with the streaming engine's tests."""

from tests.pipeline.conftest import tiny_model_path  # noqa: F401 - shared fixture
