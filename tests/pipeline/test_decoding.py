"""The GPU-friendly decode: greedy answers equal an independent recomputation with the model's own forward
(no cache), whatever the host-sync interval; sampling runs on the device and is deterministic under a
seed; text is decoded incrementally; a deadline stops generation in the model."""

from __future__ import annotations

import pytest
import torch

from pipeline.messages import GenerationSettings
from pipeline.session import OmniSession
from pipeline.session.answer import AnswerEnd, AnswerTimeout
from pipeline.session.decoding import IncrementalText, next_token
from tests.pipeline.conftest import moving_square_chunks

QUESTION = "What colour is the moving shape?"


@pytest.fixture(scope="module")
def session(tiny_model_path, target):
    s = OmniSession.from_pretrained(str(tiny_model_path), **target.load())
    for chunk in moving_square_chunks(2):
        s.append(chunk)
    return s


def greedy_without_cache(session: OmniSession, question: str, n: int) -> list[int]:
    """Greedy tokens recomputed from scratch at every step: the whole sequence (prefix, kept chunk tokens,
    question, tokens so far) through the language model with no cache."""
    ctx, thinker = session.context, session.model.thinker
    ids, positions = session.layout.question(question, ctx.segment_end)
    embeds = torch.cat([ctx.embed(ctx.prefix_ids)] + [c.chunk.tokens for c in ctx.chunks] + [ctx.embed(ids)])
    pos = torch.cat([ctx.positions(), positions], dim=1)
    tokens: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            out = thinker.model.language_model(inputs_embeds=embeds.unsqueeze(0), position_ids=pos.unsqueeze(1))
            token = int(thinker.lm_head(out.last_hidden_state[0, -1]).argmax())
            tokens.append(token)
            embeds = torch.cat([embeds, ctx.embed(torch.tensor([token], device=pos.device))])
            pos = torch.cat([pos, torch.full((3, 1), int(pos[0, -1]) + 1, device=pos.device)], dim=1)
    return tokens


@pytest.mark.parametrize("sync_every", [1, 5])
def test_greedy_tokens_equal_a_recomputation_without_cache_for_any_sync_interval(session, sync_every):
    expected = greedy_without_cache(session, QUESTION, 12)
    settings = GenerationSettings(max_new_tokens=12)
    answer = session.start_answer(QUESTION, settings, sync_every=sync_every)
    try:
        while not answer.done:
            answer.step()
    finally:
        answer.close()
    stop = next((i for i, t in enumerate(expected) if t in answer.stop), len(expected))
    assert answer.text.ids == expected[:stop]


def test_the_streamed_text_is_the_decoded_greedy_answer_and_the_context_is_restored(session):
    before = len(session.context)
    tokens = greedy_without_cache(session, QUESTION, 10)
    stop = session.start_answer(QUESTION, GenerationSettings(max_new_tokens=1))
    stop.close()
    kept = tokens[:next((i for i, t in enumerate(tokens) if t in stop.stop), len(tokens))]
    text = "".join(session.ask_stream(QUESTION, max_new_tokens=10))
    assert text == session.model.processor.tokenizer.decode(kept, skip_special_tokens=True)
    assert len(session.context) == before


def test_seeded_sampling_gives_the_same_answer_twice(session):
    settings = dict(max_new_tokens=8, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    assert session.ask(QUESTION, **settings) == session.ask(QUESTION, **settings)


def test_sampling_draws_each_token_with_its_probability():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    settings = GenerationSettings(do_sample=True)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([next_token(logits, settings, generator) for _ in range(4000)])
    freq = torch.bincount(draws, minlength=3).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.03, rtol=0)


def test_top_p_keeps_the_smallest_set_reaching_p_and_top_k_the_k_largest():
    logits = torch.log(torch.tensor([0.1, 0.6, 0.25, 0.05]))
    generator = torch.Generator().manual_seed(1)
    top_p = GenerationSettings(do_sample=True, top_p=0.8)  # 0.6 + 0.25 reach 0.8: tokens 1 and 2 only
    top_k = GenerationSettings(do_sample=True, top_k=1)
    assert {int(next_token(logits, top_p, generator)) for _ in range(300)} == {1, 2}
    assert {int(next_token(logits, top_k, generator)) for _ in range(50)} == {1}


def test_next_token_stays_on_the_logits_device_as_a_0d_tensor():
    token = next_token(torch.tensor([0.0, 2.0, 1.0]), GenerationSettings(), None)
    assert token.shape == () and token.device == torch.device("cpu") and int(token) == 1


def test_incremental_text_joins_to_the_whole_decode_without_broken_characters(session):
    tokenizer = session.model.processor.tokenizer
    text = "Un carré rouge 走过 the frame 🙂 twice."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    inc = IncrementalText(tokenizer)
    pieces = [inc.push(i) for i in ids]
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)
    assert not any(p.endswith("\ufffd") for p in pieces)


def test_a_deadline_stops_generation_in_the_model_after_the_steps_before_it(session):
    now = [0.0]
    settings = GenerationSettings(max_new_tokens=4096, timeout=1.0)
    answer = session.start_answer(QUESTION, settings, deadline=1.0)
    answer.clock = lambda: now[0]
    answer.stop = set()  # the tiny model may pick a stop token: this test is about the deadline
    try:
        for _ in range(3):
            answer.step()
        now[0] = 1.0
        answer.step()
        answer.step()
    finally:
        answer.close()
    assert answer.end is AnswerEnd.TIMEOUT and answer.steps == 3 and answer.forwards == 3
    with pytest.raises(AnswerTimeout):
        answer.raise_if_late()


def test_ask_with_a_timeout_raises_a_timeout_error_and_restores_the_context(session):
    before = len(session.context)
    with pytest.raises(TimeoutError):
        session.ask(QUESTION, max_new_tokens=4096, timeout=1e-9)
    assert len(session.context) == before


def test_a_timeout_that_is_not_a_positive_number_is_refused_in_one_line():
    for bad in (0, -1, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="timeout"):
            GenerationSettings(timeout=bad)
