"""Rotary frequencies stay float32 when the model runs in bf16, on every load path.

The independent reference is `transformers`' own `Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained`
in bf16, which builds the rotary `inv_freq` buffers (and the audio tower's sinusoids) in float32 and never
casts them. Our loads (the whole thinker, the towers part, the language part, the training load) must give
buffers equal to its buffers, and hidden states equal to its hidden states, bit for bit.

The hidden states are taken at TMRoPE positions past 20,000 spread over 4,000 (a 160-second window late in a
stream). The tiny model here is initialised with a wide spread (`initializer_range` 0.3) so that its
attention depends on position the way a trained model's does; at the default 0.02 it attends almost
uniformly and would not see a phase error. Against float32 (the same weights), bf16 with float32 frequencies
stays within 0.1 of the output's norm (measured 0.038); bf16 frequencies move it by 0.26.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from omnisift.device import cast_module, computed_buffers
from omnisift.loading import load_model
from omnisift.tiny import build_processor, build_tokenizer, tiny_config, write_omni

START, SPAN, LENGTH = 20_000, 4_000, 96
BF16 = "bfloat16"
SDPA = "sdpa"  # as the reference: on CUDA with flash-attn installed, FlashAttention-2 would be chosen


@pytest.fixture(scope="module")
def sharp_dir(tmp_path_factory):
    """A tiny Qwen2.5-Omni whose attention depends on position (wide weight init), with a selector."""
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, overrides={"text_config": {"initializer_range": 0.3}})
    return write_omni(tmp_path_factory.mktemp("sharp"), config, build_processor(tokenizer))


@pytest.fixture(scope="module")
def reference(sharp_dir, target):
    """`transformers`' own bf16 load of the thinker (the selector's keys are unexpected to it: ignored)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        str(sharp_dir), dtype=torch.bfloat16, attn_implementation=SDPA)
    return thinker.to(target.torch_device).eval()  # a device move only: dtypes stay as loaded


def our_load(folder, target, dtype: str, part: str):
    """Our load of `part` on the target device in `dtype`, with the reference's attention (SDPA)."""
    return load_model(folder, device=target.device, dtype=dtype, part=part, attn_implementation=SDPA).thinker


def positions(device) -> torch.Tensor:
    """TMRoPE ids [3, 1, L]: times from 20,000 over 4,000, rows and columns varying beside them."""
    t = START + torch.arange(LENGTH) * (SPAN // LENGTH)
    i = torch.arange(LENGTH)
    return torch.stack([t, t + i % 7, t + i % 5])[:, None, :].to(device)


def hidden(language_model, dtype, device) -> torch.Tensor:
    """The language model's last hidden states [1, L, D] (float32) on fixed random inputs."""
    width = language_model.config.hidden_size
    x = torch.randn(1, LENGTH, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = language_model(inputs_embeds=x.to(device, dtype), position_ids=positions(device))
    return out.last_hidden_state.float()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def assert_buffers_match(thinker, reference) -> None:
    """Every buffer our load has equals the reference's: same dtype, same values."""
    ours = dict(thinker.named_buffers())
    theirs = dict(reference.named_buffers())
    assert ours, "no buffers to compare"
    for name, buf in ours.items():
        assert buf.dtype == theirs[name].dtype, f"{name}: {buf.dtype}, transformers has {theirs[name].dtype}"
        assert torch.equal(buf, theirs[name]), f"{name} differs from transformers' own"


@pytest.mark.parametrize("part", ["all", "language", "towers"])
def test_buffers_are_transformers_own_on_every_load_path(sharp_dir, reference, target, part):
    thinker = our_load(sharp_dir, target, BF16, part)
    assert_buffers_match(thinker, reference)
    rotary = [n for n, _ in thinker.named_buffers() if "inv_freq" in n]
    assert rotary and all(dict(thinker.named_buffers())[n].dtype == torch.float32 for n in rotary)
    assert {p.dtype for p in thinker.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("part", ["all", "language"])
def test_hidden_states_past_20000_equal_transformers_in_bf16(sharp_dir, reference, target, part):
    thinker = our_load(sharp_dir, target, BF16, part)
    ours = hidden(thinker.model.language_model, torch.bfloat16, target.torch_device)
    theirs = hidden(reference.model.language_model, torch.bfloat16, target.torch_device)
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


def test_hidden_states_past_20000_stay_near_float32(sharp_dir, target):
    fp32 = our_load(sharp_dir, target, "float32", "language")
    bf16 = our_load(sharp_dir, target, BF16, "language")
    exact = hidden(fp32.model.language_model, torch.float32, target.torch_device)
    ours = relative(hidden(bf16.model.language_model, torch.bfloat16, target.torch_device), exact)
    # the same model with its frequencies rounded to bf16: what a plain `.to(bf16)` gives
    for owner, name in computed_buffers(bf16):
        owner._buffers[name] = owner._buffers[name].to(torch.bfloat16)
    rounded = relative(hidden(bf16.model.language_model, torch.bfloat16, target.torch_device), exact)
    assert ours < 0.1, f"bf16 with float32 frequencies is {ours:.3f} of the output's norm from float32"
    assert rounded > 2 * ours, f"bf16 frequencies ({rounded:.3f}) should be visibly worse than fp32 ({ours:.3f})"


def test_vision_tower_equals_transformers_in_bf16(sharp_dir, reference, target):
    towers = our_load(sharp_dir, target, BF16, "towers")
    config = towers.config.vision_config
    grid = torch.tensor([[2, 16, 16]], device=target.torch_device)  # 2 grid steps of 16 x 16 patches
    width = config.in_channels * config.temporal_patch_size * config.patch_size ** 2
    pixels = torch.randn(int(grid.prod()), width, generator=torch.Generator().manual_seed(1))
    pixels = pixels.to(target.torch_device, torch.bfloat16)
    with torch.no_grad():
        ours = towers.model.visual(pixels, grid_thw=grid).last_hidden_state
        theirs = reference.model.visual(pixels, grid_thw=grid).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


def test_training_load_keeps_float32_frequencies(sharp_dir, reference, target):
    from pipeline.offline.config import ModelConfig
    from pipeline.offline.train_local import load_trainable_model

    model = ModelConfig(path=str(sharp_dir), device=target.device, dtype=BF16, local_files_only=True)
    cfg = SimpleNamespace(model=model, train=SimpleNamespace(trainable="full"))
    thinker = load_trainable_model(cfg).thinker
    for name, buf in thinker.named_buffers():
        assert torch.equal(buf, dict(reference.named_buffers())[name]), f"{name} differs from transformers' own"


def test_cast_module_keeps_computed_buffers_and_casts_the_rest(sharp_dir, target):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(str(sharp_dir), dtype=torch.float32)
    before = {n: b.clone() for n, b in model.named_buffers()}
    cast_module(model, target.device, torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert len(before) >= 5  # LM rotary x2, vision rotary x2, audio sinusoids
    for name, buf in model.named_buffers():
        assert buf.device.type == target.torch_device.type
        torch.testing.assert_close(buf.cpu(), before[name], atol=0, rtol=0)
