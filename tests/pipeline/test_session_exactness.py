"""The live session computes what the offline thinker computes on the equivalent whole sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnisift.inputs import processor_inputs
from omnisift.sequence import compress_sequence
from operators.preprocess import log_mel
from pipeline.session import OmniSession
from tests.pipeline.conftest import moving_square_chunks

QUESTION = "What colour is the moving shape?"
ANSWER = "red"


@pytest.fixture(scope="module")
def session_factory(tiny_model_path, target):
    def make(**kwargs) -> OmniSession:
        return OmniSession.from_pretrained(str(tiny_model_path), **target.load(), **kwargs)
    return make


def offline_reference(session: OmniSession, chunks, rho_video: float, rho_audio: float, compress: bool = True):
    """Score and positions of the whole clip through the processor, get_rope_index and compress_sequence.

    Audio features are the per-chunk log-mel frames concatenated: a live stream normalises each chunk
    on its own (see operators/preprocess.py), and this test checks everything after that.
    """
    model, thinker, device = session.model, session.model.thinker, session.model.device
    frames = np.concatenate([c.frames for c in chunks])
    audio = np.concatenate([c.audio for c in chunks])
    inputs = processor_inputs(model, frames, audio, QUESTION).to(device)
    answer_ids = model.processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    input_ids = torch.cat([inputs["input_ids"], torch.tensor([answer_ids], device=device)], dim=1)
    attention = torch.ones_like(input_ids)
    features = torch.cat([log_mel(torch.from_numpy(c.audio), session.preprocessor.mel_filters) for c in chunks], 1)
    features = features.to(device)
    feature_mask = torch.ones(1, features.shape[1], dtype=torch.long, device=device)
    positions, _ = thinker.get_rope_index(input_ids, None, inputs["video_grid_thw"], attention, True,
                                          feature_mask.sum(-1), inputs["video_second_per_grid"])
    with torch.no_grad():
        embeds = thinker.embed_multimodal(input_ids, features.unsqueeze(0), feature_mask,
                                          inputs["pixel_values_videos"], inputs["video_grid_thw"])
        keep = torch.ones_like(input_ids, dtype=torch.bool)
        if compress:
            keep = compress_sequence(embeds, input_ids, positions, video_token_id=thinker.config.video_token_id,
                                     audio_token_id=thinker.config.audio_token_id, selector=thinker.compressor,
                                     rho_video=rho_video, rho_audio=rho_audio)
        kept = keep[0]
        out = thinker.model.language_model(inputs_embeds=embeds[:, kept], position_ids=positions[:, :, kept])
        logits = thinker.lm_head(out.last_hidden_state)[0].float().log_softmax(-1)
    n = len(answer_ids)
    score = float(logits[-n - 1:-1].gather(1, torch.tensor(answer_ids, device=device).unsqueeze(1)).sum())
    return score, positions[:, 0, kept].cpu()


def test_score_equals_offline_thinker_log_likelihood_under_omnisift(session_factory, target):
    session = session_factory(rho_video=0.7, rho_audio=0.3)
    chunks = moving_square_chunks(3)
    for chunk in chunks:
        session.append(chunk)
    expected, _ = offline_reference(session, chunks, 0.7, 0.3)
    assert session.score(QUESTION, ANSWER) == pytest.approx(expected, abs=target.atol(float32=1e-4, bfloat16=0.1))


def test_positions_equal_get_rope_index_of_the_offline_sequence(session_factory):
    session = session_factory(rho_video=0.7, rho_audio=0.3)
    chunks = moving_square_chunks(3, last_seconds=1.0)  # ends with a partial chunk
    for chunk in chunks:
        session.append(chunk)
    _, offline_positions = offline_reference(session, chunks, 0.7, 0.3)
    live = session.context_positions().cpu()
    assert torch.equal(live, offline_positions[:, : live.shape[1]])


def test_full_compressor_reproduces_the_uncompressed_thinker(session_factory, target):
    session = session_factory(compressor="full")
    chunks = moving_square_chunks(2)
    for chunk in chunks:
        session.append(chunk)
    expected, positions = offline_reference(session, chunks, 0.0, 0.0, compress=False)
    assert session.score(QUESTION, ANSWER) == pytest.approx(expected, abs=target.atol(float32=1e-4, bfloat16=0.1))
    live = session.context_positions().cpu()
    assert torch.equal(live, positions[:, : live.shape[1]])


def test_chunk_by_chunk_towers_equal_whole_clip_towers(session_factory, target):
    session = session_factory()
    thinker = session.model.thinker
    chunks = moving_square_chunks(3)
    pre = [session.preprocessor.process(c.index, c.frames, c.audio) for c in chunks]
    encoded = [session.encoder.process(p) for p in pre]
    device = session.model.device
    pixels = torch.cat([p.pixel_values for p in pre]).to(device)
    grid = torch.tensor([[sum(p.grid_thw[0] for p in pre), *pre[0].grid_thw[1:]]], device=device)
    features = torch.cat([p.features for p in pre], dim=1).unsqueeze(0).to(device)
    with torch.no_grad():
        whole_video = thinker.model.get_video_features(pixels, grid, return_dict=True).pooler_output[0]
        whole_audio = thinker.model.get_audio_features(
            features, torch.ones(1, features.shape[-1], dtype=torch.long, device=device),
            return_dict=True).last_hidden_state
    tol = target.tol(float32=(1e-5, 1e-4), bfloat16=(0.05, 0.02))
    torch.testing.assert_close(torch.cat([e.video.reshape(-1, e.video.shape[-1]) for e in encoded]).to(device),
                               whole_video, **tol)
    torch.testing.assert_close(torch.cat([e.audio for e in encoded]).to(device), whole_audio, **tol)


def test_a_question_leaves_the_live_context_unchanged(session_factory, target):
    session = session_factory()
    chunks = moving_square_chunks(3)
    for chunk in chunks[:2]:
        session.append(chunk)
    before = session.score(QUESTION, ANSWER)
    length = len(session.context)
    session.ask("Is someone there?", max_new_tokens=5)
    assert len(session.context) == length
    assert session.score(QUESTION, ANSWER) == pytest.approx(before, abs=target.atol(float32=1e-6, bfloat16=1e-6))
