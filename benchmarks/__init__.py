"""Benchmarks: scripts that measure and print figures, one module per layer, run from the repository root
(`python -m benchmarks.<name>`). Each builds its own inputs, reports medians of several runs after a warm-up,
and prints a markdown table; BENCHMARKS.md records every figure with the command that made it.

    ingest             decode + chunk speed and CPU use of the sources (streams)
    method             STVP + VGAS per chunk and `compress_sequence` over long videos at 7B width (omnisift)
    compress_sequence  `compress_sequence` against a loop written from the release's rules, same decisions
    saliency_dtype     how many keep decisions bf16 saliency changes against fp32 (omnisift)
    key_gate           the attention-gate training estimator against the embedding gate (omnisift.training)
    session            per-chunk stage times of the live session, question latency, KV-cache size
    real_sizes         memory per actor, per stream and per GPU at the real 7B sizes, and stage times there
    ray_pipeline       1 to 4 streams through the Ray pipeline (pipeline.ray)
    soak               memory of every process, lag and question latency over a long run (pipeline.ray)
    live_accuracy      answer accuracy per question type and compressor on the synthetic world (pipeline.session)

Library code never imports a benchmark; benchmarks import the library.
"""
