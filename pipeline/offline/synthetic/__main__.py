"""`python -m pipeline.offline.synthetic`: run the synthetic task (see the package docstring)."""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import torch

from omnisift.training import GATES
from pipeline.offline.presets import TRAIN_PRESETS
from pipeline.offline.synthetic import __doc__ as DOC
from pipeline.offline.synthetic.backbone import tiny_model
from pipeline.offline.synthetic.clips import make_dataset
from pipeline.offline.synthetic.experiment import _seed_job, run_seed
from pipeline.offline.synthetic.report import plot_all, summary_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DOC.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="run seeds 0 .. N-1")
    parser.add_argument("--seed-ids", type=int, nargs="+", help="run these seeds instead")
    parser.add_argument("--train", type=int, default=640)
    parser.add_argument("--test", type=int, default=160)
    parser.add_argument("--train-seed", type=int, default=1, help="seed of the generated training clips")
    parser.add_argument("--test-seed", type=int, default=2, help="seed of the generated test clips")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone-steps", type=int, default=1000, help="at most this many backbone steps")
    parser.add_argument("--val", type=int, default=128,
                        help="training clips held out from backbone training to decide when it stops")
    parser.add_argument("--target", type=float, default=0.95,
                        help="stop backbone training at this full-token accuracy on the held-out training clips")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--min-backbone-steps", type=int, default=200)
    parser.add_argument("--random-draws", type=int, default=5)
    parser.add_argument("--selector-warmup", type=int, default=60,
                        help="first selector steps at --warmup-rho-audio (training only)")
    parser.add_argument("--warmup-rho-audio", type=float, default=0.0)
    parser.add_argument("--backbone-lr", type=float, default=1e-3)
    parser.add_argument("--proj-lr", type=float, default=1e-3)
    parser.add_argument("--selector-steps", type=int, default=200)
    parser.add_argument("--selector-lr", type=float, default=None,
                        help="selector-stage lr (default: 1e-3, or the preset's)")
    parser.add_argument("--preset", choices=sorted(TRAIN_PRESETS), default=None,
                        help="take what trains, lr, warm-up fraction, final lr and precision from this "
                             "`omnisift train` preset (experiment.selector_settings)")
    parser.add_argument("--gate", choices=GATES, default="embedding",
                        help="how the straight-through mask reaches the selector "
                             "(omnisift.training.compressed_forward)")
    parser.add_argument("--inits", type=int, default=3,
                        help="selector initialisations per seed; the best on the held-out training clips is kept")
    parser.add_argument("--work", type=Path, default=Path("/tmp/omnisift-synthetic"))
    parser.add_argument("--out", type=Path, default=Path("docs/training-results"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run in parallel (processes)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.train_seed == args.test_seed:
        parser.error("--train-seed and --test-seed must differ (the test clips would be the training clips)")
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from operators import Encoder, Preprocessor
    from pipeline.offline.features import FeatureCache, cache_features

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_samples = make_dataset(args.work / f"train-seed{args.train_seed}", args.train, seed=args.train_seed)
    test_samples = make_dataset(args.work / f"test-seed{args.test_seed}", args.test, seed=args.test_seed)
    t_media = time.perf_counter() - started
    ref = tiny_model(args.work, 0)
    cache = FeatureCache(args.work / "cache", shard_size=64)
    pre = Preprocessor(ref.processor.video_processor, "cpu")
    enc = Encoder(ref.thinker)
    train_samples, s1 = cache_features(train_samples, cache, pre, enc, progress=args.progress)
    test_samples, s2 = cache_features(test_samples, cache, pre, enc, progress=args.progress)
    t_cache = time.perf_counter() - started - t_media
    print(s1.line(), "|", s2.line(), flush=True)
    seeds = list(args.seed_ids if args.seed_ids is not None else range(args.seeds))
    if args.jobs > 1:  # seeds are independent: one process per core, one torch thread each
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_seed_job, seeds, [args] * len(seeds), [train_samples] * len(seeds),
                                    [test_samples] * len(seeds)))
    else:
        results = [run_seed(seed, args.work, args.out, ref, cache, train_samples, test_samples, args)
                   for seed in seeds]
    table = summary_table(results)
    plot_all(results, args.out / "curves.png")
    total = time.perf_counter() - started
    (args.out / "results.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "media_seconds": t_media, "cache_seconds": t_cache,
         "total_seconds": total, "seeds": [copy.deepcopy(r.__dict__) for r in results]}, indent=1))
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    print(f"media {t_media:.0f} s, feature cache {t_cache:.0f} s, total {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
