"""The live system around the method: one folder per job, imports flowing one way (docs/architecture.md).

    session/  one live Qwen2.5-Omni context over one stream (KV cache, positions, prompt, window,
              questions); plain PyTorch, no Ray
    config.py the validated pipeline config; messages.py the typed messages between actors, driver and
              network faces (no torch, no Ray)
    serve/    the network faces of a running pipeline: ZeroMQ PUB/REP, Prometheus; no Ray
    ray/      the distributed system: thin actors around plain workers, the driver's per-stream loops and
              state, and `OmniStream`, the async API that owns the actors and the network faces
    offline/  work on datasets and files: feature cache, selector training (local, Ray Train),
              evaluation, compressor comparison, the synthetic task, file inference
    viz.py    pictures of what a compressor kept
    cli/      `omnisift`: one thin module per command; nothing imports it

session imports no Ray and of pipeline only messages; serve imports config and messages only; ray
imports session, serve, config and messages; offline imports session; cli imports anything. Benchmarks
live in the top-level `benchmarks/` folder, and nothing here imports them.
"""
