"""Many streams through the model actor: one worker with batching off, one with batching on, and two
replicas (two model workers in two Ray actors, streams split), side by side in one run.

    python -m benchmarks.scale [--streams 1 2 4 8] [--chunks 4] [--width 1024] [--layers 2] [--out results.json]

Model: a random Qwen2.5-Omni language model, fp32 on the CPU. `--width 3584` is the real 7B widths (28
heads, 4 KV heads, MLP 18944) with `--layers` layers; the default is a mid-size one (hidden 1024, 8 heads,
2 KV heads, head_dim 128 as the 7B's, MLP 5504 (the 7B's ratio), 2 layers): on this shared 2-core CPU one
chunk at the real widths takes seconds, so not even one stream is live there and the point where batching
lets more streams keep up is out of reach; the mid size puts that point inside 1 to 8 streams.
Chunks: what the encoder actor would send for a 640x480 chunk at retention 0.25 (174 video + 35 audio
kept tokens, the issue's measurement), as random embeddings at the real TMRoPE positions; the encoder is
not part of this benchmark (batched encoding is measured on its own).

Each configuration runs `S` live streams in real time: stream `s` offers chunk `k` at `t0 + 2k` seconds
(its capture time) and waits for the model worker's `append` (as the driver's loop does). Stream 0 also
asks a 16-token question when its second chunk is in, while the others keep appending.

Figures per configuration: model chunks/s (chunks / seconds from the first offer to the last chunk in);
per-stream real-time factor (seconds until the stream's last chunk is in / its media seconds; <= 1 keeps
up with live, a little above 1 means the last chunk's own processing); lag p50/p95 (chunk in minus its
capture time); the question's latency.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from operators.chunk_encoder import StageTimes
from operators.chunks import CompressedChunk
from pipeline.messages import ChunkKind, ChunkMeta, GenerationSettings
from pipeline.ray.encoder_worker import EncodedChunkResult
from pipeline.ray.model_worker import ModelWorker

GRID = (17, 23)  # a 640x480 frame after smart_resize: 476 x 644 pixels, 391 merged tokens
VIDEO_KEPT, AUDIO_KEPT = 87, 35  # per frame (two per chunk) and per chunk: 174 + 35 at retention 0.25
QUESTION = "What happened on the left camera?"
QUESTION_TOKENS = 16


def synthetic_chunk(index: int, width: int, seed: int) -> CompressedChunk:
    """A compressed 640x480 chunk: kept video tokens of both grid steps, then kept audio tokens, at the
    positions the real layout gives them (relative to the stream's first audio-video position)."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = GRID
    video = []
    for step in range(2):
        kept = torch.randperm(rows * cols, generator=g)[:VIDEO_KEPT].sort().values
        t = torch.full_like(kept, 25 * (2 * index + step))
        video.append(torch.stack([t, kept // cols, kept % cols]))
    audio = (50 * index + torch.randperm(50, generator=g)[:AUDIO_KEPT].sort().values).expand(3, -1)
    positions = torch.cat(video + [audio], dim=1)
    n = positions.shape[1]
    return CompressedChunk(index, torch.randn(n, width, generator=g) * 0.02, positions,
                           torch.arange(n) < 2 * VIDEO_KEPT, 2 * rows * cols, 50, 50 * (index + 1))


def encoded(stream: str, index: int, width: int) -> tuple[ChunkMeta, EncodedChunkResult]:
    meta = ChunkMeta(ChunkKind.CHUNK, stream, index, 2.0 * index, 2.0, time.time(), pid=1)
    chunk = synthetic_chunk(index, width, seed=hash((stream, index)) % 2**31)
    return meta, EncodedChunkResult(stream, index, chunk, StageTimes(0.0, 0.0, 0.0), 0)


@dataclass
class RunResult:
    config: str
    streams: int
    chunks_per_s: float
    rtf_worst: float
    rtf_median: float
    lag_p50: float
    lag_p95: float
    question_s: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_streams(n_streams: int, n_chunks: int, width: int, append: Callable, ask: Callable) -> dict:
    """Offer n_chunks per stream in real time from one thread per stream; the figures above."""
    lags: list[float] = []
    finish: dict[int, float] = {}
    question: list[float] = []
    inputs = {s: [encoded(f"s{s}", k, width) for k in range(n_chunks)] for s in range(n_streams)}
    t0 = time.monotonic() + 0.2

    def feed(s: int) -> None:
        for k, (meta, enc) in enumerate(inputs[s]):
            due = t0 + 2.0 * k
            time.sleep(max(0.0, due - time.monotonic()))
            append(meta, enc)
            done = time.monotonic()
            lags.append(done - due)
            if s == 0 and k == min(1, n_chunks - 1):
                threading.Thread(target=ask_once, daemon=True).start()
        finish[s] = time.monotonic()

    def ask_once() -> None:
        start = time.monotonic()
        try:
            ask("s0", QUESTION)
        finally:
            question.append(time.monotonic() - start)

    threads = [threading.Thread(target=feed, args=(s,)) for s in range(n_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.monotonic() + 600
    while not question and time.monotonic() < end:
        time.sleep(0.05)
    media = 2.0 * n_chunks
    rtf = [(finish[s] - t0) / media for s in range(n_streams)]
    return {"chunks_per_s": n_streams * n_chunks / (max(finish.values()) - t0), "rtf_worst": max(rtf),
            "rtf_median": statistics.median(rtf), "lag_p50": percentile(lags, 0.5), "lag_p95": percentile(lags, 0.95),
            "question_s": question[0] if question else float("nan")}


def make_model(folder: Path, width: int, layers: int) -> Path:
    """A random Qwen2.5-Omni written to `folder`: the real widths (3584) or a mid-size one of `width`."""
    from omnisift.tiny import build_processor, build_tokenizer, make_real_width_omni, tiny_config, write_omni

    if width == 3584:
        return make_real_width_omni(folder, layers=layers)
    tokenizer = build_tokenizer()
    text = {"num_attention_heads": width // 128, "num_key_value_heads": max(1, width // 512),
            "intermediate_size": round(width * 18944 / 3584 / 32) * 32,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}}
    config = tiny_config(tokenizer, hidden_size=width, text_layers=layers, overrides={"text_config": text})
    return write_omni(folder, config, build_processor(tokenizer, 3136, 640 * 480))


DEVICE = {"device": "cpu", "dtype": "float32"}  # --device / --dtype


def spec(path: Path) -> dict:
    return {"path": str(path), "retention": 0.25, "max_pixels": 640 * 480, "window_seconds": None,
            "max_new_tokens": QUESTION_TOKENS, **DEVICE}


def local_worker(path: Path, batch: bool, threads: int) -> ModelWorker:
    from pipeline.ray.models import load_omni

    torch.set_num_threads(threads)
    return ModelWorker(spec(path), model=load_omni(spec(path), part="language"), batch_prefill=batch)


def run_local(worker: ModelWorker, n: int, chunks: int, width: int) -> dict:
    settings = GenerationSettings(max_new_tokens=QUESTION_TOKENS)
    figures = run_streams(n, chunks, width, worker.append, lambda s, q: worker.ask(s, q, settings))
    for s in range(n):
        worker.remove(f"s{s}")
    return figures


def run_replicas(actors: list, n: int, chunks: int, width: int) -> dict:
    import ray

    settings = GenerationSettings(max_new_tokens=QUESTION_TOKENS)

    def owner(stream: str):
        return actors[int(stream[1:]) % len(actors)]

    figures = run_streams(n, chunks, width, lambda m, e: ray.get(owner(m.stream).append.remote(m, e)),
                          lambda s, q: ray.get(owner(s).ask.remote(s, q, settings)))
    ray.get([a.remove.remote(f"s{s}") for a in actors for s in range(n)])
    return figures


def forward_ratios(path: Path, batches: list[int], width: int, repeats: int = 5) -> list[dict]:
    """The model work alone, without threads or pacing: B streams' chunks prefilled one forward each vs in
    one batched forward, and one decode token of B answers one forward each vs batched; sequential and
    batched alternate, `repeats` times, medians (the shared machine's load drifts between runs)."""
    from pipeline.ray.models import load_omni
    from pipeline.session import OmniSession
    from pipeline.session.batch import forward_batch
    from pipeline.session.session import append_compressed_batch

    model = load_omni(spec(path), part="language")
    rows = []
    for b in batches:
        sessions = [OmniSession.from_model(model, retention=0.25, max_pixels=640 * 480) for _ in range(b)]
        for s, session in enumerate(sessions):  # contexts of different lengths: 1 to 3 chunks
            for k in range(1 + s % 3):
                session.append_compressed(synthetic_chunk(k, width, seed=100 * s + k))
        seq, bat, dseq, dbat = [], [], [], []
        for r in range(repeats):
            chunks = [synthetic_chunk(3 + r, width, seed=7 * s + r) for s in range(b)]
            marks = [s.context.fork() for s in sessions]
            start = time.perf_counter()
            for session, chunk in zip(sessions, chunks, strict=True):
                session.context.forward_embeds(chunk.tokens, session.context.place(chunk))
            seq.append(time.perf_counter() - start)
            for session, mark in zip(sessions, marks, strict=True):
                session.context.rollback(mark)
            bat.append(append_compressed_batch(sessions, chunks))
            contexts = [s.context for s in sessions]
            token = [c.embed(torch.tensor([5])) for c in contexts]
            pos = [torch.full((3, 1), 10_000) for _ in contexts]
            start = time.perf_counter()
            for c, e, p in zip(contexts, token, pos, strict=True):
                c.forward_embeds(e, p, logits=1)
            dseq.append(time.perf_counter() - start)
            for c in contexts:
                c.rollback(len(c) - 1)
            start = time.perf_counter()
            forward_batch(contexts, token, pos, logits=True)
            dbat.append(time.perf_counter() - start)
            for c in contexts:
                c.rollback(len(c) - 1)
        med = statistics.median
        rows.append({"streams": b, "prefill_seq_ms": 1000 * med(seq), "prefill_batched_ms": 1000 * med(bat),
                     "decode_seq_ms": 1000 * med(dseq), "decode_batched_ms": 1000 * med(dbat)})
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--chunks", type=int, default=4, help="chunks per stream (2 s of media each)")
    ap.add_argument("--width", type=int, default=1024, help="hidden size: 3584 = the real 7B widths")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the one worker (replicas: half each)")
    ap.add_argument("--no-replicas", action="store_true")
    ap.add_argument("--forward-only", action="store_true", help="only the forward-level comparison")
    ap.add_argument("--repeats", type=int, default=5, help="of the forward-level comparison")
    ap.add_argument("--model", type=Path, help="a model folder (e.g. Qwen2.5-Omni-7B) instead of a random one")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    DEVICE.update(device=args.device, dtype=args.dtype)
    if args.model is not None:
        from transformers import AutoConfig

        path = args.model
        args.width = AutoConfig.from_pretrained(path).thinker_config.text_config.hidden_size
    else:
        path = make_model(Path(tempfile.mkdtemp(prefix="scale-bench-")) / "omni", args.width, args.layers)
    width = args.width
    torch.set_num_threads(args.threads)
    forwards = forward_ratios(path, args.streams, width, args.repeats)
    print_forwards(forwards)
    if args.forward_only:
        return
    workers = {"1 worker, batching off": local_worker(path, False, args.threads),
               "1 worker, batching on": local_worker(path, True, args.threads)}
    runners = {name: (lambda n, c, w=w: run_local(w, n, c, width)) for name, w in workers.items()}
    if not args.no_replicas:
        import ray

        from pipeline.ray.local import start_local_ray

        start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        gpus = {"num_gpus": 1} if args.device.startswith("cuda") else {}  # one GPU per replica
        cls = ray.remote(num_cpus=1, max_concurrency=8, **gpus)(ModelWorker)
        actors = [cls.remote(spec(path), num_cpus=max(1, args.threads // 2)) for _ in range(2)]
        ray.get([a.where.remote() for a in actors])
        runners["2 replicas, batching on"] = lambda n, c: run_replicas(actors, n, c, width)
    rows: list[RunResult] = []
    try:
        for run in runners.values():
            run(2, 1)  # warm-up
        for n in args.streams:  # configurations side by side at each stream count (the machine's load drifts)
            for name, run in runners.items():
                rows.append(RunResult(name, n, **run(n, args.chunks)))
                print(rows[-1], flush=True)
    finally:
        for w in workers.values():
            w.close()
        if not args.no_replicas:
            ray.shutdown()
    print_table(rows, args)
    if args.out:
        args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                        "rows": [vars(r) for r in rows], "forwards": forwards}, indent=2))


def print_forwards(rows: list[dict]) -> None:
    print("\n| streams | prefill: one forward each (ms) | batched (ms) | ratio | decode token: each (ms) | "
          "batched (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['streams']} | {r['prefill_seq_ms']:.0f} | {r['prefill_batched_ms']:.0f} | "
              f"{r['prefill_seq_ms'] / r['prefill_batched_ms']:.2f}x | {r['decode_seq_ms']:.1f} | "
              f"{r['decode_batched_ms']:.1f} | {r['decode_seq_ms'] / r['decode_batched_ms']:.2f}x |")


def print_table(rows: list[RunResult], args) -> None:
    model = "real 7B widths" if args.width == 3584 else f"mid-size (hidden {args.width})"
    print(f"\n{model}, {args.layers} layer(s), {args.dtype} on {args.device}, {args.threads} torch threads, "
          f"{args.chunks} chunks per stream (174 + 35 kept tokens each), a {QUESTION_TOKENS}-token question "
          "on stream 0\n")
    print("| configuration | streams | model chunks/s | RTF median / worst | lag p50 / p95 (s) | question (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.config} | {r.streams} | {r.chunks_per_s:.2f} | {r.rtf_median:.2f} / {r.rtf_worst:.2f} | "
              f"{r.lag_p50:.2f} / {r.lag_p95:.2f} | {r.question_s:.2f} |")


if __name__ == "__main__":
    main()
