"""Many streams through the model actor: one worker with batching off, one with batching on, and two
replicas (two model workers in two Ray actors, streams split), side by side in one run.

    python -m benchmarks.scale [--streams 1 2 4 8] [--chunks 4] [--width 1024] [--layers 2] [--out results.json]
    python -m benchmarks.scale --device cuda --dtype bfloat16 --width 3584 --layers 28 --streams 1 4 16

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

On CUDA every timed region starts and ends with `torch.cuda.synchronize()` (kernels run asynchronously: the
clock would otherwise read launch times), and the forward-level part runs each batch size once untimed first
(kernel selection, allocator warm-up). Its contexts are of realistic length: `--context-tokens` (default
3,000, about 14 chunks at 209 kept tokens) give or take a chunk per stream, so the KV cache a forward reads is
what a stream a minute into a camera holds. Replicas: two model actors; with `--gpus` N (default: the GPUs
torch sees) each asks `min(1, N / 2)` GPUs, so on one GPU the two share it (half each) instead of each asking
for a whole one and waiting for ever; a placement the Ray cluster cannot give is refused in one line.

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
from pipeline.ray.encoder_worker import CompressedChunkReply
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


def encoded(stream: str, index: int, width: int) -> tuple[ChunkMeta, CompressedChunkReply]:
    meta = ChunkMeta(ChunkKind.CHUNK, stream, index, 2.0 * index, 2.0, time.time(), pid=1)
    chunk = synthetic_chunk(index, width, seed=hash((stream, index)) % 2**31)
    return meta, CompressedChunkReply(stream, index, chunk, StageTimes(0.0, 0.0, 0.0), 0)


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


def clock(device: str) -> float:
    """`time.perf_counter()` after the device's queued work is done (CUDA kernels run asynchronously)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter()


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


def replica_gpus(device: str, gpus: int | None, replicas: int) -> float:
    """GPUs each model replica asks Ray for: none on the CPU; one each when there are enough, else an equal
    share of the GPUs there are (one GPU: half each), so two replicas never wait for a second GPU."""
    if not device.startswith("cuda"):
        return 0.0
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if gpus < 1:
        raise SystemExit(f"--device {device}: no GPU to place {replicas} replicas on (torch sees "
                         f"{torch.cuda.device_count()}, --gpus {gpus})")
    return min(1.0, gpus / replicas)


def check_placement(per_replica: float, replicas: int) -> None:
    """One line, at once, when the Ray cluster has fewer GPUs than the replicas ask for (Ray would wait)."""
    import ray

    have = ray.cluster_resources().get("GPU", 0.0)
    if per_replica * replicas > have:
        raise SystemExit(f"{replicas} replicas x {per_replica:g} GPU = {per_replica * replicas:g} GPUs asked; "
                         f"the Ray cluster has {have:g}")


def local_worker(path: Path, batch: bool, threads: int) -> ModelWorker:
    from pipeline.ray.models import load_omni

    torch.set_num_threads(threads)
    return ModelWorker(spec(path), model=load_omni(spec(path), part="language"), batch_prefill=batch)


def run_local(worker: ModelWorker, n: int, chunks: int, width: int) -> dict:
    settings = GenerationSettings(max_new_tokens=QUESTION_TOKENS)
    device = DEVICE["device"]

    def append(meta, enc):  # a chunk is in when its kernels are done, not when they are queued
        worker.append(meta, enc)
        clock(device)
    figures = run_streams(n, chunks, width, append, lambda s, q: worker.ask(s, q, settings))
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


CHUNK_TOKENS = 2 * VIDEO_KEPT + AUDIO_KEPT  # 209 kept tokens per synthetic chunk


def context_chunks(stream: int, context_tokens: int) -> int:
    """Chunks in stream `stream`'s context before the timed forwards: `context_tokens` worth, give or take
    one chunk by stream (contexts of different lengths), at least one."""
    return max(1, round(context_tokens / CHUNK_TOKENS) + stream % 3 - 1)


def forward_ratios(path: Path, batches: list[int], width: int, repeats: int = 5,
                   context_tokens: int = 3000) -> list[dict]:
    """The model work alone, without threads or pacing: B streams' chunks prefilled one forward each vs in
    one batched forward, and one decode token of B answers one forward each vs batched, over contexts of
    about `context_tokens`; one untimed round first, then sequential and batched alternate, `repeats`
    times, medians (the shared machine's load drifts between runs). The clock is synchronised on CUDA."""
    from pipeline.ray.models import load_omni

    return forward_ratios_of(load_omni(spec(path), part="language"), batches, width, repeats, context_tokens)


def forward_ratios_of(model, batches: list[int], width: int, repeats: int = 5, context_tokens: int = 3000,
                      log=print) -> list[dict]:
    """`forward_ratios` on a loaded `OmniModel` (its language model is what runs)."""
    from pipeline.session import OmniSession
    from pipeline.session.batch import forward_batch
    from pipeline.session.session import append_compressed_batch

    device = str(model.device)
    rows = []
    for b in batches:
        sessions = [OmniSession.from_model(model, retention=0.25, max_pixels=640 * 480, window_seconds=None)
                    for _ in range(b)]
        start_at = []
        for s, session in enumerate(sessions):
            start_at.append(context_chunks(s, context_tokens))
            for k in range(start_at[-1]):
                session.append_compressed(synthetic_chunk(k, width, seed=100 * s + k))
        context = round(statistics.mean(len(s.context) for s in sessions))  # prompt prefix included
        seq, bat, dseq, dbat = [], [], [], []
        for r in range(repeats + 1):  # round 0 is the warm-up, not counted
            chunks = [synthetic_chunk(start_at[s] + r, width, seed=7 * s + r) for s in range(b)]
            marks = [s.context.fork() for s in sessions]
            start = clock(device)
            for session, chunk in zip(sessions, chunks, strict=True):
                session.context.forward_embeds(chunk.tokens, session.context.place(chunk))
            seq.append(clock(device) - start)
            for session, mark in zip(sessions, marks, strict=True):
                session.context.rollback(mark)
            start = clock(device)
            append_compressed_batch(sessions, chunks)
            bat.append(clock(device) - start)
            contexts = [s.context for s in sessions]
            token = [c.embed(torch.tensor([5], device=model.device)) for c in contexts]
            pos = [torch.full((3, 1), 10_000, device=model.device) for _ in contexts]
            start = clock(device)
            for c, e, p in zip(contexts, token, pos, strict=True):
                c.forward_embeds(e, p, logits=1)
            dseq.append(clock(device) - start)
            for c in contexts:
                c.rollback(len(c) - 1)
            start = clock(device)
            forward_batch(contexts, token, pos, logits=True)
            dbat.append(clock(device) - start)
            for c in contexts:
                c.rollback(len(c) - 1)
        med = statistics.median
        rows.append({"streams": b, "context_tokens": context,
                     "prefill_seq_ms": 1000 * med(seq[1:]), "prefill_batched_ms": 1000 * med(bat[1:]),
                     "decode_seq_ms": 1000 * med(dseq[1:]), "decode_batched_ms": 1000 * med(dbat[1:])})
        log(rows[-1])
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
    ap.add_argument("--repeats", type=int, default=5, help="of the forward-level comparison (after one warm-up)")
    ap.add_argument("--context-tokens", type=int, default=3000,
                    help="tokens in each stream's context before the forward-level comparison")
    ap.add_argument("--gpus", type=int, help="GPUs the two replicas share (default: the GPUs torch sees)")
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
    forwards = forward_ratios(path, args.streams, width, args.repeats, args.context_tokens)
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
        per_replica = replica_gpus(args.device, args.gpus, 2)
        check_placement(per_replica, 2)
        cls = ray.remote(num_cpus=1, max_concurrency=8, num_gpus=per_replica)(ModelWorker)
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
    print("\n| streams | context (tokens) | prefill: one forward each (ms) | batched (ms) | ratio | "
          "decode token: each (ms) | batched (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['streams']} | {r['context_tokens']} | {r['prefill_seq_ms']:.0f} | {r['prefill_batched_ms']:.0f} | "
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
