"""Answer accuracy of the live session on the synthetic monitoring world, per question type and compressor.

    python -m benchmarks.live_accuracy [--model PATH_OR_ID] [--minutes 3] [--seed 101] [--scenario standard]
        [--settings full omnisift@0.25 omnisift@0.35 random@0.25 random@0.35] [--per-type 8] [--size 112]
        [--window 64] [--generate] [--out results.json]

The world (`streams.world`, a seed no training uses) is read through the real source (`type: world`,
unpaced) and appended chunk by chunk to an `OmniSession` per setting, in lockstep (the towers run once per
chunk, each session compresses with its own compressor: `pipeline.offline.world.live`); every question type
(`pipeline.offline.world`) is asked at `--per-type` random quiet chunk ends, the same questions for every
setting, and answered by the options' likelihood (`--generate` also scores free text). After each chunk the
standing question "Is the alarm sounding?" gives p(Yes); its alerts are scored against the alarm's episodes.

Without --model it runs the TINY RANDOM model: its accuracy is chance (the `chance` column) up to noise,
and that is the honest figure for random weights; the table is then a check of the harness, not of the
method. Settings a compressor cannot take are reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from omnisift.tiny import TINY_BANNER
from pipeline.offline.world import QUESTION_TYPES, Log, draw_questions
from pipeline.offline.world.live import LiveResult, Setting, alert_scores, quiet_moments, run_live
from streams import read_chunks
from streams.world import World

DEFAULT_SETTINGS = ["full", "omnisift@0.25", "omnisift@0.35", "random@0.25", "random@0.35"]


def _pct(correct: int, n: int) -> str:
    return f"{correct / n:.0%} ({n})" if n else "-"


def table(results: list[LiveResult], questions: list, log: Log) -> str:
    """One markdown table: accuracy per question type and setting, then retention and the alarm's alerts."""
    head = "| question type | chance | " + " | ".join(r.setting.label for r in results) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(results)]
    for kind in list(QUESTION_TYPES) + [None]:
        asked = [q for q in questions if kind is None or q.kind == kind]
        chance = sum(1 / len(q.options) for q in asked) / len(asked) if asked else 0.0
        cells = [_pct(*r.accuracy(kind)) for r in results]
        lines.append(f"| {kind or '**all**'} | {chance:.0%} | " + " | ".join(cells) + " |")
    lines.append("| tokens kept | | " + " | ".join(f"{r.retention:.0%}" for r in results) + " |")
    if results and results[0].p_yes:
        scores = [alert_scores(r.p_yes, log) for r in results]

        def fmt(x, spec):
            return "-" if x is None else format(x, spec)

        lines.append("| alarm alerts: precision | | " + " | ".join(f"{fmt(s.precision, '.0%')} ({s.alerts})"
                                                                  for s in scores) + " |")
        lines.append("| alarm alerts: recall | | " + " | ".join(f"{fmt(s.recall, '.0%')} ({s.episodes})"
                                                               for s in scores) + " |")
        lines.append("| alarm alerts: delay s | | " + " | ".join(fmt(s.delay, '.1f') for s in scores) + " |")
    if any(o.text is not None for r in results for o in r.outcomes):
        cells = [_pct(sum(bool(o.text_correct) for o in r.outcomes), len(r.outcomes)) for r in results]
        lines.append("| all, free text | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or hub id (default: the tiny random model)")
    parser.add_argument("--selector", help="OmniSIFT selector checkpoint for a base Qwen2.5-Omni model")
    parser.add_argument("--dtype")
    parser.add_argument("--device")
    parser.add_argument("--minutes", type=float, default=3.0, help="media minutes of the world")
    parser.add_argument("--seed", type=int, default=101, help="world seed (keep it apart from training seeds)")
    parser.add_argument("--scenario", default="standard", choices=["quiet", "standard", "busy"])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS,
                        help="compressor or compressor@retention, e.g. full omnisift@0.25 random@0.35 dycoke@0.25")
    parser.add_argument("--per-type", type=int, default=8, help="questions of each type")
    parser.add_argument("--size", type=int, default=112, help="frame side in pixels (and the session's max_pixels)")
    parser.add_argument("--window", type=float, default=64.0, help="the session's window in media seconds")
    parser.add_argument("--generate", action="store_true", help="also generate free-text answers and score them")
    parser.add_argument("--question-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    from transformers.utils import logging as hf_logging

    from omnisift.loading import load_model
    from omnisift.tiny import resolve_model
    from operators import Compression
    from pipeline.session import OmniSession

    hf_logging.set_verbosity_error()
    path, tiny = resolve_model(args.model)
    if tiny:
        print(TINY_BANNER.format(model=args.model or "No model was given; the real"))
    model = load_model(path, selector=args.selector, dtype=args.dtype, device=args.device)
    seconds = args.minutes * 60.0
    source = {"type": "world", "seed": args.seed, "scenario": args.scenario, "duration": seconds,
              "width": args.size, "height": args.size}
    log = Log(World(args.seed, args.scenario, width=args.size, height=args.size, duration=seconds).events(seconds))
    ends = [2.0 * (k + 1) for k in range(int(seconds // 2))]
    questions = draw_questions(log, quiet_moments(log, ends), args.per_type, random.Random(args.question_seed))
    settings, sessions = [], []
    for text in args.settings:
        setting = Setting.parse(text)
        try:
            compression = Compression.of(setting.compressor, setting.retention)
        except ValueError as e:
            print(f"skipped {text}: {e}")
            continue
        settings.append(setting)
        sessions.append(OmniSession.with_compression(model, compression, args.window,
                                                     max_pixels=args.size * args.size))
    results = run_live(sessions, settings, read_chunks(source), questions, generate=args.generate)
    print(f"{results[0].chunks} chunks, {len(questions)} questions, {len(results)} settings in lockstep: "
          f"{results[0].seconds:.0f} s", flush=True)
    what = "TINY RANDOM model: chance-level by construction" if tiny else args.model
    print(f"\nLive accuracy on the world (seed {args.seed}, {args.scenario}, {args.minutes:g} min unpaced, "
          f"{args.size}x{args.size}, window {args.window:g} s; {what}; {time.strftime('%Y-%m-%d')})\n")
    print(table(results, questions, log))
    if args.out:
        args.out.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "tiny": tiny,
            "results": [{"setting": r.setting.label, "retention": r.retention, "seconds": r.seconds,
                         "outcomes": [{"kind": o.question.kind, "t": o.question.t, "gold": o.question.gold,
                                       "chosen": o.chosen, "text": o.text} for o in r.outcomes],
                         "p_yes": r.p_yes} for r in results]}, indent=1))


if __name__ == "__main__":
    main()
