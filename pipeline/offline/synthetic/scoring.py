"""How the synthetic task is scored: accuracy by the options' scores, the kept fraction, and whether the
beep survived compression."""

from __future__ import annotations

import torch

from omnisift.data import Sample
from omnisift.ratios import Ratios
from omnisift.training import Example, collate, compressed_forward, option_logits
from pipeline.offline.synthetic.clips import beep_tokens


@torch.no_grad()
def evaluate(thinker, examples: list[Example], samples: list[Sample], option_ids: list[int], pad_id: int,
             ratios: Ratios | None, selector=None, batch_size: int = 32) -> dict:
    """Accuracy by score over the options, kept fraction of audio+video tokens, and how often a beep
    token (an audio token at least half covered by the beep) was kept."""
    correct, total, kept, before, beep_kept = 0, 0, 0, 0, 0
    audio_id = thinker.config.audio_token_id
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i:i + batch_size], pad_id)
        result = compressed_forward(thinker, batch, ratios, selector)
        pred = option_logits(result, batch, option_ids).argmax(1)
        for row, s in enumerate(samples[i:i + batch_size]):
            correct += int(pred[row]) == s.answer_index
            total += 1
            kept_idx = result.index[row][result.kept_mask[row].bool()]
            ids = batch.input_ids[row, kept_idx]
            audio_pos = batch.positions[0, row, kept_idx][ids == audio_id]
            first_audio = int(batch.positions[0, row][batch.input_ids[row] == audio_id].min())
            k = (audio_pos - first_audio).double()
            b0, b1 = beep_tokens(s)
            overlap = (torch.minimum(k + 1, torch.tensor(b1)) - torch.maximum(k, torch.tensor(b0))).clamp(min=0)
            beep_kept += bool((overlap >= 0.5).any())
        kept += result.video[1] + result.audio[1]
        before += result.video[0] + result.audio[0]
    return {"accuracy": correct / total, "retention": kept / before, "beep_kept": beep_kept / total, "n": total}
