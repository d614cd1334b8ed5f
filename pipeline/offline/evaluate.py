"""Evaluation over a dataset through the streaming session: every method sees the same cached tower
outputs, compressed by its `operators` compressor and appended chunk by chunk to an `OmniSession`.

Multiple choice is answered twice: by generation (the letter parsed robustly) and by `score` over the
option letters (the highest log-likelihood wins). Open questions are answered by generation and
written to `open_answers.jsonl` for an external judge. Per method: accuracy, the tokens actually
kept, prefill time; `comparison.md` and `comparison.csv` hold the table.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from omnisift.counts import TokenCounts
from omnisift.data import LETTERS, Sample
from omnisift.evaluation import MethodMetrics, comparison_rows, csv_table, markdown_table, parse_letter
from omnisift.ratios import Ratios, ratios_for_retention
from omnisift.training import ClipFeatures
from operators import make_compressor
from operators.chunks import EncodedChunk
from pipeline.offline.features import FeatureCache

log = logging.getLogger(__name__)


def encoded_chunks(features: ClipFeatures) -> list[EncodedChunk]:
    """The cached features of a clip as the per-chunk `EncodedChunk`s the encoder produced."""
    chunks, g, a = [], 0, 0
    for i, (steps, n_audio) in enumerate(zip(features.chunk_steps, features.chunk_audio, strict=True)):
        video = features.video[g:g + steps] if steps else None
        audio = features.audio[a:a + n_audio] if n_audio else None
        chunks.append(EncodedChunk(i, video, audio, features.grid_hw if steps else None))
        g, a = g + steps, a + n_audio
    return chunks


def method_ratios(method: str, retention: float, tokens_per_frame: int) -> Ratios:
    if method == "full":
        return Ratios(rho_video=0.0, rho_audio=0.0)
    return ratios_for_retention(retention, tokens_per_frame)


@dataclass
class EvalResult:
    metrics: list[MethodMetrics]
    table_md: str
    table_csv: str
    out_dir: Path


def method_options(method: str, seed: int, saliency_dtype: str) -> dict:
    """The compressor options of one evaluated method."""
    if method == "random":
        return {"seed": seed}
    if method == "omnisift":
        return {"saliency_dtype": saliency_dtype}
    return {}


def evaluate_samples(session, samples: Sequence[Sample], cache: FeatureCache, methods: Sequence[str],
                     retention: float, out_dir: str | Path, *, generate: bool = True, score_options: bool = True,
                     max_new_tokens: int = 16, do_sample: bool = False, seed: int = 0, progress: bool = False,
                     failed: int = 0, saliency_dtype: str = "float32") -> EvalResult:
    """Run every method on every (cached) sample; write predictions, open answers and the tables.
    Answers are generated greedily unless `do_sample` (then seeded by `seed`). `saliency_dtype` is the
    omnisift method's STVP arithmetic ("input": the release's)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {m: MethodMetrics(m, None if m == "full" else retention, failed=failed) for m in methods}
    selector = session.model.thinker.compressor
    predictions = (out_dir / "predictions.jsonl").open("w")
    open_answers = (out_dir / "open_answers.jsonl").open("w")
    try:
        for sample in tqdm(samples, desc="eval", unit="sample", disable=not progress):
            chunks = encoded_chunks(cache.get(sample.media))
            n_p = chunks[0].video.shape[1]
            for method in methods:
                compressor = make_compressor(method, method_ratios(method, retention, n_p), selector,
                                             **method_options(method, seed, saliency_dtype))
                session.reset()
                counts = TokenCounts()
                prefill = 0.0
                for chunk in chunks:
                    compressed = compressor.process(chunk)
                    start = time.perf_counter()
                    session.append_compressed(compressed)
                    prefill += time.perf_counter() - start
                    counts += compressed.counts
                prompt = sample.prompt()
                text = (session.ask(prompt, max_new_tokens=max_new_tokens, do_sample=do_sample, seed=seed)
                        if generate or not sample.options else None)
                generated = parse_letter(text, sample.options) if (text is not None and sample.options) else None
                scored = None
                if sample.options and score_options:
                    with torch.inference_mode():
                        scores = [session.score(prompt, LETTERS[i]) for i in range(len(sample.options))]
                    scored = LETTERS[max(range(len(scores)), key=scores.__getitem__)]
                metrics[method].add(generated=generated, scored=scored, answer=sample.answer,
                                    multiple_choice=sample.is_multiple_choice, counts=counts, prefill=prefill)
                record = {"id": sample.id, "method": method, "media": str(sample.media), "answer": sample.answer,
                          "generated": text, "parsed": generated, "scored": scored,
                          "kept": [counts.video_before, counts.video_after, counts.audio_before, counts.audio_after]}
                predictions.write(json.dumps(record) + "\n")
                if not sample.options:
                    open_answers.write(json.dumps({"id": sample.id, "method": method, "question": sample.question,
                                                   "reference": sample.answer, "prediction": text}) + "\n")
    finally:
        predictions.close()
        open_answers.close()
    rows = comparison_rows(metrics.values())
    md, csv_text = markdown_table(rows), csv_table(rows)
    (out_dir / "comparison.md").write_text(md)
    (out_dir / "comparison.csv").write_text(csv_text)
    return EvalResult(list(metrics.values()), md, csv_text, out_dir)
