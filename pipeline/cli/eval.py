"""`omnisift eval CONFIG`: accuracy and kept tokens of compression methods on a benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "evaluate compression methods on a dataset (configs/eval.yaml)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path)
    parser.add_argument("--limit", type=int, help="evaluate only the first N samples (a smoke run)")
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def first_line(args: argparse.Namespace) -> str:
    return f"omnisift eval {args.config}: loading the model and the dataset's tower features, then each method"


def run(args: argparse.Namespace) -> int:
    from omnisift.loading import DEFAULT_SYSTEM_PROMPT
    from pipeline.offline.config import EvalConfig, load_config
    from pipeline.offline.evaluate import evaluate_samples
    from pipeline.offline.features import dataset_with_features
    from pipeline.session import OmniSession

    overrides = {}
    if args.limit is not None:
        overrides["dataset.limit"] = args.limit
    if args.out_dir is not None:
        overrides["out_dir"] = str(args.out_dir)
    cfg: EvalConfig = load_config(args.config, EvalConfig, overrides)
    m = cfg.model
    session = OmniSession.from_pretrained(
        m.path, compressor="omnisift" if "omnisift" in cfg.methods else "full", selector=m.selector,
        device=m.device, dtype=m.dtype, system_prompt=m.system_prompt or DEFAULT_SYSTEM_PROMPT,
        min_pixels=m.min_pixels, max_pixels=m.max_pixels, local_files_only=m.local_files_only,
    )
    samples, cache, line, failed = dataset_with_features(cfg.dataset, cfg.cache_dir, session.model,
                                                         min_pixels=m.min_pixels, max_pixels=m.max_pixels,
                                                         max_frames=m.max_frames,
                                                         progress=args.progress)
    print(line, flush=True)
    result = evaluate_samples(session, samples, cache, cfg.methods, cfg.retention, cfg.out_dir,
                              generate=cfg.generate, score_options=cfg.score_options,
                              max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, seed=cfg.seed,
                              progress=args.progress,
                              failed=failed, saliency_dtype=cfg.saliency_dtype)
    print(result.table_md)
    print(f"written: {result.out_dir / 'comparison.md'}, comparison.csv, predictions.jsonl, open_answers.jsonl")
    return 0
