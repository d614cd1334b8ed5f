"""Benchmarks: scripts that measure and print figures, one module per layer, run from the repository root
(`python -m benchmarks.<name>`). BENCHMARKS.md records every figure with the command that made it.

    ingest        decode + chunk speed and CPU use of the sources (streams)
    method        STVP + VGAS per chunk and `compress_sequence` over long videos at 7B width (omnisift)
    key_gate      the attention-gate training estimator against the embedding gate (omnisift.training)
    session       per-chunk stage times of the live session, question latency, KV-cache size (pipeline.session)
    ray_pipeline  1 to 4 streams through the Ray pipeline (pipeline.ray)
    soak          memory of every process, lag and question latency over a long run (pipeline.ray)

Library code never imports a benchmark; benchmarks import the library.
"""
