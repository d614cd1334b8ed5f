"""A Qwen2.5-Omni at the real 7B widths and head counts (text 3584 wide, 28 heads, 4 KV heads; towers 1280
wide; 128 mel bins) with one layer per stack, random weights, written with `save_pretrained` in four shards
and loaded through the real code, once per test session. Its vocabulary is the small test tokenizer's: no
test here depends on the 152,064-row embedding (the memory benchmark counts it).

These tests are marked `real_width` (CI runs them; about two minutes here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnisift.tiny import make_real_width_omni


def pytest_collection_modifyitems(items):
    for item in items:
        if "real_width" in str(item.fspath):
            item.add_marker(pytest.mark.real_width)


@pytest.fixture(scope="session")
def real_width_path(tmp_path_factory) -> Path:
    return make_real_width_omni(tmp_path_factory.mktemp("real-width") / "omni", layers=1, max_shard_size="400MB")


@pytest.fixture(scope="session")
def real_processor(real_width_path):
    from transformers import Qwen2_5OmniProcessor

    return Qwen2_5OmniProcessor.from_pretrained(str(real_width_path))


@pytest.fixture(scope="session")
def real_full(real_width_path, target):
    from omnisift.loading import load_model

    return load_model(real_width_path, **target.load())
