"""Shared by the batched-prefill tests (tiny model and real widths): streams of different context lengths
and chunk sizes, each fed to a session one chunk at a time and to a twin session whose last chunks go in
one batched forward with the other streams'."""

from __future__ import annotations

import torch

from pipeline.session.session import OmniSession, append_compressed_batch
from tests.pipeline.conftest import moving_square_chunks

QUESTION, ANSWER = "What colour is the moving shape?", "red"


def next_token_logits(session: OmniSession, question: str) -> torch.Tensor:
    """Logits [V] of the answer's first token, the context left as it was."""
    mark = session.context.fork()
    try:
        logits, _ = session._question_logits(question)
        return logits[-1].float()
    finally:
        session.context.rollback(mark)


def sequential_and_batched(make, plans: list[tuple[int, float, int]], size: int = 112,
                           rounds: int = 1) -> list[tuple[OmniSession, OmniSession]]:
    """For each (chunks before, retention, seed) in `plans`: a session fed every chunk one by one and a twin
    fed the same compressed chunks, the last `rounds` of each stream in batched forwards across streams."""
    pairs = []
    for before, retention, seed in plans:
        alone, twin = make(retention), make(retention)
        chunks = moving_square_chunks(before + rounds, size=size, seed=seed)
        compressed = [alone.append(c) for c in chunks]
        for c in compressed[:before]:
            twin.append_compressed(c)
        pairs.append((alone, twin, compressed[before:]))
    for r in range(rounds):
        append_compressed_batch([twin for _, twin, _ in pairs], [rest[r] for _, _, rest in pairs])
    return [(alone, twin) for alone, twin, _ in pairs]
